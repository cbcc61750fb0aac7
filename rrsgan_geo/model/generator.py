"""The RRSGAN generator (`RRSNet` in the authors' code).

Module and parameter names follow the authors' MMSR code exactly, so that a checkpoint
trained there loads here with `strict=True`; `docs/model.md` describes
it. Width, block count and deformable groups are parameters so that a compact model
can serve CPU users.
"""

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model.alignment import GPCDAlign
from rrsgan_geo.model.blocks import (
    Encoder,
    Modulation,
    RelevanceAttention,
    conv3x3,
    leaky_relu,
    res_blocks,
)
from rrsgan_geo.model.gradient import GradientMagnitude
from rrsgan_geo.model.sensor import BICUBIC_LIKE_BELOW
from rrsgan_geo.upscaling import LR_SIZE_MULTIPLE, SCALE

# Two stride-2 encoder stages on the 4x grid are undone by two 2x upsamplings, so an
# LR tile's height and width must be multiples of LR_SIZE_MULTIPLE.


BLUR_FLAGS = ("blur_input", "blur_modulation", "bicubic_expert")
"""`GeneratorConfig`'s blur conditioning switches, which weight files record only when
set."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of an RRSNet: the authors' default is nf=64, 16 blocks, 8 groups.

    `blur_input`: the model is told how blurred its LR is (`sensor.SensorModel.blur_code`,
    an equivalent PSF sigma in LR px), as SRMD (Zhang et al., CVPR 2018) gives its network a
    degradation map: one model then serves the data set's bicubic LR and real sensors'
    blurrier ones, each as it needs. Not in the authors' architecture.

    `blur_modulation` (with `blur_input`): the code also scales and shifts every residual
    block's features (`BlurModulation`), as SFTMD and IKC (Gu et al., CVPR 2019) condition
    each block on the degradation. With the code as a bias on the first layer only, the
    compact model served blurred LR at the cost of bicubic LR's gain; per-block
    modulation lets it compute differently for each.

    `bicubic_expert` (with `blur_input`): a second network of the same size
    (`RRSNet.bicubic_expert`) takes the LR whose blur code is bicubic-like (below
    `sensor.BICUBIC_LIKE_BELOW`), the rest goes to the first: a mixture of two experts
    gated by the code. Each is trained as a model of its own (`with_bicubic_expert`
    joins them): the compact model trained for sensors kept 0.12 dB less on the data
    set's bicubic LR than one trained for it."""

    nf: int = 64
    n_blocks: int = 16
    groups: int = 8
    blur_input: bool = False
    blur_modulation: bool = False
    bicubic_expert: bool = False

    def __post_init__(self) -> None:
        if self.nf < 8 or self.nf % 4:
            raise ConfigError(f"nf must be a multiple of 4 and at least 8, got {self.nf}")
        if self.n_blocks < 1:
            raise ConfigError(f"n_blocks must be at least 1, got {self.n_blocks}")
        if self.groups < 1 or self.align_channels % self.groups:
            raise ConfigError(
                f"groups={self.groups} must divide the alignment width "
                f"nf + nf/4 = {self.align_channels}"
            )
        for flag in ("blur_modulation", "bicubic_expert"):
            if getattr(self, flag) and not self.blur_input:
                raise ConfigError(f"{flag} needs blur_input: it goes by the blur code")

    @property
    def grad_channels(self) -> int:
        return self.nf // 4

    @property
    def align_channels(self) -> int:
        return self.nf + self.grad_channels

    def to_dict(self) -> dict[str, int | bool]:
        """The architecture as weight files record it; the blur flags only when set, so
        the files of unconditioned models read as they always have."""
        fields = asdict(self)
        for flag in BLUR_FLAGS:
            if not fields[flag]:
                del fields[flag]
        return fields


def _upsample_stage(channels: int) -> list[nn.Module]:
    return [conv3x3(channels, 4 * channels), nn.PixelShuffle(2), leaky_relu()]


class ContentExtractor(nn.Module):
    """LR content features. `tail` (a plain SR head) exists for checkpoint
    compatibility: the authors' training never uses it and neither does `forward`.

    With `blur_input`, `condition` turns the blur code into a bias on each head
    feature before its activation (SRMD's constant degradation map, without the map's
    zero-padded borders). It starts at zero: a model grown from unconditioned weights
    computes exactly what they did until training teaches it the code."""

    def __init__(self, nf: int, n_blocks: int, blur_input: bool = False) -> None:
        super().__init__()
        self.head = nn.Sequential(conv3x3(3, nf), leaky_relu())
        self.condition = nn.Linear(1, nf, bias=False) if blur_input else None
        if self.condition is not None:
            nn.init.zeros_(self.condition.weight)
        self.body = res_blocks(nf, n_blocks)
        self.tail = nn.Sequential(
            *_upsample_stage(nf),
            *_upsample_stage(nf),
            conv3x3(nf, nf),
            leaky_relu(),
            conv3x3(nf, 3),
        )

    def forward(
        self,
        lr: torch.Tensor,
        codes: torch.Tensor,
        modulations: list[Modulation] | None = None,
    ) -> torch.Tensor:
        """`codes`: one blur code per image, on `lr`'s device (`RRSNet.forward`)."""
        features = self.head[0](lr)
        if self.condition is not None:
            bias = self.condition(codes.reshape(-1, 1).to(features.dtype))
            features = features + bias[:, :, None, None]
        head = self.head[1](features)
        return self.body(head, modulations) + head


class BlurModulation(nn.Module):
    """The blur code -> a (scale, shift) per channel for each residual block of the
    content extractor and the three texture-transfer stages, through a small MLP (a
    scalar code, so a hidden layer is what lets the response differ in kind between
    bicubic-like and blurred LR). The last layer starts at zero: a model grown from
    unmodulated weights computes exactly what they did until training moves it."""

    STAGES = ("content", "small", "medium", "large")

    def __init__(self, nf: int, n_blocks: int) -> None:
        super().__init__()
        self.nf, self.n_blocks = nf, n_blocks
        sites = len(self.STAGES) * n_blocks
        self.net = nn.Sequential(
            nn.Linear(1, 2 * nf), leaky_relu(), nn.Linear(2 * nf, 2 * nf * sites)
        )
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, code: torch.Tensor, like: torch.Tensor) -> dict[str, list[Modulation]]:
        """Per stage (`STAGES`), one modulation per block, in `like`'s device and dtype."""
        out = self.net(code.reshape(-1, 1).to(like.device, like.dtype))
        out = out.reshape(len(out), len(self.STAGES), self.n_blocks, 2, self.nf)
        return {
            stage: [(out[:, s, b, 0], out[:, s, b, 1]) for b in range(self.n_blocks)]
            for s, stage in enumerate(self.STAGES)
        }


class TextureTransfer(nn.Module):
    """Three stages (LR scale, x2, x4), each fusing RAM-weighted aligned reference
    features into the content features before upsampling."""

    def __init__(self, nf: int, n_blocks: int) -> None:
        super().__init__()
        tails = {
            "small": _upsample_stage(nf),
            "medium": _upsample_stage(nf),
            "large": [conv3x3(nf, nf // 2), leaky_relu(), conv3x3(nf // 2, 3)],
        }
        # Registered stage by stage so state_dict() lists keys in the authors' order.
        for stage, tail in tails.items():
            setattr(self, f"ram_head_{stage}", RelevanceAttention(nf))
            setattr(self, f"head_{stage}", nn.Sequential(conv3x3(2 * nf, nf), leaky_relu()))
            setattr(self, f"body_{stage}", res_blocks(nf, n_blocks))
            setattr(self, f"tail_{stage}", nn.Sequential(*tail))

    def _stage(
        self,
        name: str,
        content: torch.Tensor,
        ref_map: torch.Tensor,
        modulations: dict[str, list[Modulation]] | None,
    ) -> torch.Tensor:
        relevant = getattr(self, f"ram_head_{name}")(ref_map, content)
        fused = getattr(self, f"head_{name}")(torch.cat([content, relevant], dim=1))
        blocks = None if modulations is None else modulations[name]
        fused = getattr(self, f"body_{name}")(fused, blocks) + content
        return getattr(self, f"tail_{name}")(fused)

    def forward(
        self,
        content: torch.Tensor,
        maps: tuple[torch.Tensor, ...],
        modulations: dict[str, list[Modulation]] | None = None,
    ) -> torch.Tensor:
        x = self._stage("small", content, maps[2], modulations)
        x = self._stage("medium", x, maps[1], modulations)
        return self._stage("large", x, maps[0], modulations)


class RRSNet(nn.Module):
    """The generator: (LR, LR_UX4, Ref, Ref_DUX4) in [0, 1] -> 4x image.

    LR is h x w with h, w multiples of 4; the others are 4h x 4w. The output is a
    residual on top of a bilinear 4x upsample of LR. `blur` (a number, or one per
    image) is the LR's blur code for a model with `blur_input` (0 when not given);
    models without it ignore it. With a `bicubic_expert`, the images whose code is
    bicubic-like go to it (`GeneratorConfig.bicubic_expert`).
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        nf, n_blocks = self.config.nf, self.config.n_blocks
        self.get_g_nopadding = GradientMagnitude()
        self.Encoder = Encoder(3, nf)
        self.Encoder_grad = Encoder(3, self.config.grad_channels)
        self.gpcd_align = GPCDAlign(self.config.align_channels, nf, self.config.groups)
        self.content_extractor = ContentExtractor(nf, n_blocks, self.config.blur_input)
        self.texture_transfer = TextureTransfer(nf, n_blocks)
        self.blur_modulation = BlurModulation(nf, n_blocks) if self.config.blur_modulation else None
        self.bicubic_expert = (
            RRSNet(replace(self.config, bicubic_expert=False))
            if self.config.bicubic_expert
            else None
        )

    def _features(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Image features and gradient features, concatenated per scale."""
        image_levels = self.Encoder(image)
        grad_levels = self.Encoder_grad(self.get_g_nopadding(image))
        return tuple(torch.cat(pair, dim=1) for pair in zip(image_levels, grad_levels, strict=True))

    def forward(
        self,
        lr: torch.Tensor,
        lr_ux4: torch.Tensor,
        ref: torch.Tensor,
        ref_dux4: torch.Tensor,
        blur: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        _check_shapes(lr, lr_ux4, ref, ref_dux4)
        # The one place an untold blur becomes code 0, for every part that reads it.
        codes = torch.as_tensor(
            0.0 if blur is None else blur, dtype=torch.float32, device=lr.device
        ).expand(len(lr))
        if self.bicubic_expert is None:
            return self._own_forward(lr, lr_ux4, ref, ref_dux4, codes)
        # The inputs are checked and the codes made: the expert runs its own network.
        expert = self.bicubic_expert._own_forward
        sharp = codes < BICUBIC_LIKE_BELOW
        inputs = (lr, lr_ux4, ref, ref_dux4, codes)
        if bool(sharp.all()):
            return expert(*inputs)
        if not bool(sharp.any()):
            return self._own_forward(*inputs)
        output = lr.new_empty(len(lr), 3, *lr_ux4.shape[-2:])
        output[sharp] = expert(*(x[sharp] for x in inputs))
        output[~sharp] = self._own_forward(*(x[~sharp] for x in inputs))
        return output

    def _own_forward(
        self,
        lr: torch.Tensor,
        lr_ux4: torch.Tensor,
        ref: torch.Tensor,
        ref_dux4: torch.Tensor,
        codes: torch.Tensor,
    ) -> torch.Tensor:
        maps = self.gpcd_align(
            self._features(ref), self._features(ref_dux4), self._features(lr_ux4)
        )
        base = F.interpolate(lr, scale_factor=SCALE, mode="bilinear", align_corners=False)
        modulations = None
        if self.blur_modulation is not None:
            modulations = self.blur_modulation(codes, lr)
        content_modulations = None if modulations is None else modulations["content"]
        content = self.content_extractor(lr, codes, content_modulations)
        return self.texture_transfer(content, maps, modulations) + base


@contextlib.contextmanager
def relevance_kept(model: RRSNet) -> Iterator[list[torch.Tensor]]:
    """While open, each forward of `model` appends its x4 relevance attention's gate
    (N x H x W, `RelevanceAttention.relevance`) to the yielded list: what `sr
    --relevance-map` writes and the relevance ranking loss trains. With a bicubic
    expert, the gate of whichever network ran (one entry per network that ran)."""
    kept: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, _output: object) -> None:
        kept.append(module.relevance(*args))

    networks = [model] if model.bicubic_expert is None else [model, model.bicubic_expert]
    hooks = [
        network.texture_transfer.ram_head_large.register_forward_hook(keep) for network in networks
    ]
    try:
        yield kept
    finally:
        for hook in hooks:
            hook.remove()


def with_blur_conditioning(model: RRSNet, config: GeneratorConfig) -> RRSNet:
    """`model` grown to the blur conditioning `config` asks for (`blur_input`,
    `blur_modulation`), its weights kept: what is new starts at zero, so the grown model
    computes what `model` did for every code until training teaches it otherwise.
    Conditioning `model` already has is kept (dropping it would lose what training
    taught)."""
    wanted = replace(
        model.config,
        blur_input=model.config.blur_input or config.blur_input,
        blur_modulation=model.config.blur_modulation or config.blur_modulation,
    )
    if wanted == model.config:
        return model
    grown = RRSNet(wanted)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    new = [
        key
        for key in missing
        if key == "content_extractor.condition.weight" or key.startswith("blur_modulation.")
    ]
    if unexpected or missing != new:
        raise ConfigError(
            f"cannot grow blur conditioning: missing {missing}, unexpected {unexpected}"
        )
    return grown.train(model.training)


def with_bicubic_expert(model: RRSNet, expert: RRSNet) -> RRSNet:
    """`model` (for blurred LR) and `expert` (trained on bicubic LR) as one generator
    that hands each image to one of them by its blur code
    (`GeneratorConfig.bicubic_expert`), their weights unchanged. Both must be the same
    size and take a blur code; blur modulation either lacks is grown at zero, which
    computes what it did."""
    for name, network in (("the model", model), ("the bicubic expert", expert)):
        if not network.config.blur_input:
            raise ConfigError(f"{name} does not take a blur code (blur_input)")
        if network.config.bicubic_expert:
            raise ConfigError(f"{name} has a bicubic expert already")
    sizes = [(n.config.nf, n.config.n_blocks, n.config.groups) for n in (model, expert)]
    if sizes[0] != sizes[1]:
        raise ConfigError(
            f"the model and the bicubic expert differ in size (nf, n_blocks, groups): "
            f"{sizes[0]} and {sizes[1]}"
        )
    union = replace(
        model.config, blur_modulation=model.config.blur_modulation or expert.config.blur_modulation
    )
    model, expert = (with_blur_conditioning(n, union) for n in (model, expert))
    joined = RRSNet(replace(union, bicubic_expert=True))
    state = {
        **model.state_dict(),
        **{f"bicubic_expert.{key}": value for key, value in expert.state_dict().items()},
    }
    joined.load_state_dict(state, strict=True)
    return joined.train(model.training)


def without_bicubic_expert(model: RRSNet) -> RRSNet:
    """The network of `model` that takes blurred LR, on its own (`model` itself when it
    has no bicubic expert): what training continues from a joined file."""
    if model.bicubic_expert is None:
        return model
    alone = RRSNet(replace(model.config, bicubic_expert=False))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("bicubic_expert.")}
    alone.load_state_dict(state, strict=True)
    return alone.train(model.training)


def _check_shapes(lr: torch.Tensor, *grid_4x: torch.Tensor) -> None:
    if lr.ndim != 4 or lr.shape[1] != 3:
        raise ConfigError(f"LR must be a N x 3 x h x w tensor, got shape {tuple(lr.shape)}")
    height, width = lr.shape[-2:]
    if height % LR_SIZE_MULTIPLE or width % LR_SIZE_MULTIPLE:
        raise ConfigError(
            f"LR height and width must be multiples of {LR_SIZE_MULTIPLE}, got {height}x{width}"
        )
    expected = (lr.shape[0], 3, SCALE * height, SCALE * width)
    for tensor in grid_4x:
        if tuple(tensor.shape) != expected:
            raise ConfigError(
                f"LR_UX4, Ref and Ref_DUX4 must have shape {expected}, got {tuple(tensor.shape)}"
            )
