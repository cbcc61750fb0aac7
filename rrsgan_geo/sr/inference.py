"""Running the generator on batches of tiles: device, precision, out-of-memory."""

import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from rrsgan_geo.devices import PRECISIONS, to_device
from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.deform import SeparateOffsetDeformConv
from rrsgan_geo.model.degradation import upsample_4x
from rrsgan_geo.model.generator import relevance_kept
from rrsgan_geo.model.self_ensemble import check_views, ensembled
from rrsgan_geo.model.sensor import BICUBIC, SensorModel, reference_dux4
from rrsgan_geo.sr.contrast import stretched, stretched_views
from rrsgan_geo.sr.sources import Strip
from rrsgan_geo.upscaling import SCALE

AUTO_PRECISION = "auto"
FLAT_LEVELS = 11
"""Levels (0, 0.1, ..., 1 of the model's range) the flat-field pattern is measured at."""
_FLAT_TILE = 24
"""LR pixels a side of the flat images it is measured on (the inner 16 are averaged)."""


def resolve_precision(precision: str, device: torch.device, output_dtype: str) -> str:
    """`auto` (what `sr` and `batch` use unless told): bf16 autocast for an 8-bit output
    where the hardware computes in bf16 (a CUDA GPU that supports it, a CPU with
    AVX512-BF16 or AMX), fp32 otherwise; any other precision as given.

    bf16 moves the output by about 1/255 of the range the scene is scaled by: within
    the 1 DN of an 8-bit output, but tens of DN of a 16-bit one (34 DN at most, 1.9 DN
    on average, on a Landsat crop scaled to 0-8549), so 16-bit and float outputs keep
    fp32. Measured for 8-bit outputs: GPU, the full weights, `sr` of a 1024^2 LR scene,
    within 1 DN of fp32 on 100.000 % of pixels (max 2 DN) on an H100 and an H200, 1.3x
    faster (the whole run 4.2 -> 3.2 s on the H200); CPU (a 2-core AMD EPYC with
    AVX512-BF16), the compact weights within 1 DN on 100.000 % of a 256^2 LR scene's
    pixels (max 2 DN), `sr` 1.32x faster end to end (compact, 256^2 LR) and 1.45x (full
    size, 128^2), and on the 16 held-out RRSSRD images every `evaluate` row within
    0.004 dB of fp32. CPUs without bf16 arithmetic would emulate it, slower than fp32,
    so they keep fp32 (and fp16 is refused on CPUs: TileModel)."""
    if precision != AUTO_PRECISION:
        return precision
    if np.dtype(output_dtype).itemsize != 1:
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_bf16_arithmetic() else "fp32"


def cpu_has_bf16_arithmetic() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), as torch's own
    CPU checks report it (private functions, hence the fallback: absent, it says no)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def model_inputs(
    strip: Strip, device: torch.device, sensor: SensorModel = BICUBIC
) -> tuple[torch.Tensor, ...]:
    """(LR, LR_UX4, Ref, Ref_DUX4) on `device` for the strip's tiles that have valid LR.

    The degradations run once over the whole strip, on the device, and each tile is a
    view of the result. LR_UX4 stands in where the reference is missing, which is what
    the relevance attention was trained to cope with. Ref_DUX4 is the reference
    blurred as the scene is (`sensor`, from `scene_blur`), back on the 4x grid."""
    lr = _on_device(strip.lr, device)[None]
    lr_ux4 = upsample_4x(lr)
    if strip.ref is None:
        ref = lr_ux4
    elif strip.ref_valid.all():
        ref = _on_device(strip.ref, device)[None]
    else:
        valid = _on_device(strip.ref_valid, device)
        ref = torch.where(valid, _on_device(strip.ref, device)[None], lr_ux4)
    ref_dux4 = reference_dux4(ref, sensor)
    return tuple(
        _tiles(images, strip, strip.kept, scale)
        for images, scale in ((lr, 1), (lr_ux4, SCALE), (ref, SCALE), (ref_dux4, SCALE))
    )


def _tiles(images: torch.Tensor, strip: Strip, kept: list[int], scale: int) -> torch.Tensor:
    """The strip's tiles as one N x C x H x H tensor. All tiles being kept, it is a view
    (tile i starts `i * step` columns in): no copy of the overlaps."""
    _, channels, height, _ = images.shape
    step = strip.step * scale
    if len(kept) == len(strip.tiles):
        batch, channel, row, column = images.stride()
        return images.as_strided(
            (len(kept), channels, height, strip.size * scale),
            (step * column, channel, row, column),
        )
    return torch.cat([images[..., i * step : i * step + strip.size * scale] for i in kept])


def _on_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on `device` (`devices.to_device`: an asynchronous copy on CUDA)."""
    return to_device(torch.from_numpy(array), device)


@dataclass
class TileModel:
    """The generator on a device, run in batches that halve on CUDA out-of-memory."""

    model: RRSNet
    device: torch.device
    precision: str = "fp32"
    batch_size: int = 4
    with_relevance: bool = False
    """Append the x4 relevance attention's weight (`RelevanceAttention.relevance`) to
    each output as a 4th channel, so it is blended across tiles like the image."""
    views: int = 1
    """Rotated/mirrored views of each tile averaged (`self_ensemble`): 1, 2, 4 or 8."""
    blur: float = 0.0
    """The scene's blur code (`sensor.SensorModel.blur_code`), for models that take it."""
    flat_field_correction: bool = True
    """Subtract the model's fixed pattern (`flat_field_pattern`) from its output."""
    stretch_contrast: bool = True
    """Run low-contrast tiles stretched, over `contrast.stretched_views` views, and map
    their output back (`contrast`)."""
    oom_halvings: int = 0
    low_contrast_tiles: int = 0
    """Tiles run stretched (`contrast`): where the model's faint pattern is largest."""
    _flat_patterns: dict[int, torch.Tensor] = field(init=False, default_factory=dict)
    host_seconds: float = 0.0
    """Time in the model measured on the host: all of it on the CPU."""
    cuda_events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = field(default_factory=list)
    """(start, end) of each batch on the CUDA stream, read once the run is over."""
    memory_format: torch.memory_format = field(init=False, default=torch.preserve_format)
    """channels_last for a model with convolutions (see `__post_init__`); otherwise the
    inputs go in as they are, views of the strip included, without a copy."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        check_views(self.views)
        if self.precision == "fp16" and self.device.type == "cpu":
            # Measured: about 16x slower than fp32 on the CPU, which has no fp16 units.
            raise ConfigError(
                "--precision fp16 is for GPUs (on the CPU it runs about 16x slower than "
                "fp32): use fp32, or bf16 on CPUs that support it"
            )
        # channels_last end to end: on the 2-core CPU the compact model ran 1.3-1.4x
        # faster on batches of 4 tiles of 96^2 LR (sr_bench; the full model the same
        # within noise), and cuDNN spends a fifth of its time converting NCHW to it.
        # Inputs are converted only for a model with convolutions to gain from it.
        if any(parameter.ndim == 4 for parameter in self.model.parameters()):
            self.memory_format = torch.channels_last
            self.model = self.model.to(memory_format=self.memory_format)
        self.model = self.model.to(self.device).eval()

    @property
    def model_seconds(self) -> float:
        """Seconds the model ran: on CUDA the batches' time on the GPU (waits for them)."""
        gpu = 0.0
        for start, end in self.cuda_events:
            end.synchronize()
            gpu += start.elapsed_time(end) / 1000
        return self.host_seconds + gpu

    def __call__(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """N tiles in, N x 3 x 4h x 4w float32 out (in [0, 1] for in-range input), on
        the model's device; N x 4 x 4h x 4w with the relevance. On CUDA nothing waits
        for the GPU here: the output is used by further work queued on the device."""
        outputs, start = [], 0
        total = inputs[0].shape[0]
        while start < total:
            stop = min(start + self.batch_size, total)
            try:
                batch = tuple(t[start:stop] for t in inputs)
                if self.stretch_contrast:
                    output = stretched(
                        self._corrected_forward,
                        batch,
                        self._count_stretched,
                        self._stretched_forward
                        if stretched_views(self.views) != self.views
                        else None,
                    )
                else:
                    output = self._corrected_forward(batch)
                outputs.append(output)
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                self.batch_size //= 2
                self.oom_halvings += 1
                continue
            start = stop
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def _count_stretched(self, tiles: int) -> None:
        self.low_contrast_tiles += tiles

    def _stretched_forward(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self._corrected_forward(inputs, stretched_views(self.views))

    def _corrected_forward(
        self, inputs: tuple[torch.Tensor, ...], views: int | None = None
    ) -> torch.Tensor:
        views = views or self.views
        output = self._forward(inputs, views)
        if self.flat_field_correction:
            with torch.inference_mode():
                output[:, :3] -= self._pattern_at(inputs[1], views)
        return output

    def flat_field_pattern(self, views: int | None = None) -> torch.Tensor:
        """FLAT_LEVELS x 3 x 4 x 4: what this model adds to a flat image of each level, at
        each output pixel's place in its 4 x 4 block (a flat scene must come out flat, at
        its own level), with no reference and `views` (this run's where not given),
        precision and blur code, measured once per run and number of views. A few hundredths of an
        8-bit level to half of one, this fixed pattern is invisible in an 8-bit output
        but magnified where the scaling is wide and the scene dark (a quarter-cloud
        Sentinel-2 scene stretched p2-p98: a 4-pixel dot pattern of +-5..7 DN).
        Measured one level at a time: a batch of one never runs out of memory here."""
        views = views or self.views
        if views not in self._flat_patterns:
            side, patterns = _FLAT_TILE, []
            for level in torch.linspace(0, 1, FLAT_LEVELS).tolist():  # one tile at a time
                lr = torch.full((1, 3, side, side), level)
                grid = torch.full((1, 3, SCALE * side, SCALE * side), level)
                output = self._forward((lr, grid, grid, grid), views)[:, :3].float() - level
                core = output[0, :, 4 * SCALE : -4 * SCALE, 4 * SCALE : -4 * SCALE]
                blocks = core.unflatten(-1, (-1, SCALE)).unflatten(-3, (-1, SCALE))
                patterns.append(blocks.mean(dim=(-4, -2)))  # 3 x 4 x 4
            self._flat_patterns[views] = torch.stack(patterns)
        return self._flat_patterns[views]

    def _pattern_at(self, lr_ux4: torch.Tensor, views: int) -> torch.Tensor:
        """The flat-field pattern under each pixel of `lr_ux4` (N x 3 x 4h x 4w), linearly
        interpolated between levels by the pixel's own LR level: the table is indexed
        by (level, band, row and column in the 4 x 4 block) per pixel, never tiled."""
        pattern = self.flat_field_pattern(views)
        position = lr_ux4.to(self.device).float().clamp(0, 1) * (FLAT_LEVELS - 1)
        below = position.floor().long().clamp(max=FLAT_LEVELS - 2)
        fraction = position - below
        band = torch.arange(pattern.shape[1], device=self.device)[:, None, None]
        row = torch.arange(lr_ux4.shape[-2], device=self.device)[:, None] % SCALE
        col = torch.arange(lr_ux4.shape[-1], device=self.device) % SCALE
        lower, upper = (pattern[level, band, row, col] for level in (below, below + 1))
        return lower + fraction * (upper - lower)

    def _forward(self, inputs: tuple[torch.Tensor, ...], views: int) -> torch.Tensor:
        cuda = self.device.type == "cuda"
        started = time.perf_counter()
        if cuda:
            events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            events[0].record()
        dtype = PRECISIONS[self.precision]
        keeping = relevance_kept(self.model) if self.with_relevance else nullcontext([])
        with (
            keeping as relevance,
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None),
        ):

            def run(view: tuple[torch.Tensor, ...]) -> torch.Tensor:
                output = self.model(
                    *(
                        t.to(self.device, non_blocking=True, memory_format=self.memory_format)
                        for t in view
                    ),
                    blur=self.blur,
                )
                if relevance:  # moved back and averaged with the image, as a 4th channel
                    output = torch.cat([output.float(), relevance.pop().float()[:, None]], dim=1)
                return output.float()

            output = ensembled(run, inputs, views)
        if cuda:
            events[1].record()
            self.cuda_events.append(events)
        else:
            self.host_seconds += time.perf_counter() - started
        return output


def count_macs_per_lr_pixel(model: RRSNet) -> float:
    """Multiply-accumulates per LR pixel, counted by hooks on a small dummy forward.

    The generator is fully convolutional, so the count per LR pixel does not depend on
    the tile size; it lets --dry-run estimate the time without touching the scene.
    """
    size = 8
    macs = 0

    def count(module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
        macs += output.numel() * kernel

    # Both layer kinds carry an (out, in, k, k) weight and cost out_pixels * in * k * k.
    layers = (torch.nn.Conv2d, SeparateOffsetDeformConv)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    device = next(model.parameters()).device
    grid = torch.zeros(1, 3, 4 * size, 4 * size, device=device)
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, size, size, device=device), grid, grid, grid)
    finally:
        for hook in hooks:
            hook.remove()
    return macs / (size * size)


# Side of the square LR tile the dry run times: big enough to amortise per-call costs,
# small enough that even the full model answers in seconds on a CPU.
_TIMED_TILE = 48


def measure_gmac_per_second(model: RRSNet, device: torch.device, precision: str = "fp32") -> float:
    """The model's speed on `device` as `sr` runs it (`TileModel`: same memory layout
    and precision), from one warm-up and one timed forward of a 48 x 48 LR tile:
    estimates from a fixed constant were 3-6x off across machines."""
    runner = TileModel(model, device, precision)
    lr = torch.rand(1, 3, _TIMED_TILE, _TIMED_TILE)
    grid = torch.rand(1, 3, 4 * _TIMED_TILE, 4 * _TIMED_TILE)
    runner((lr, grid, grid, grid))
    before = runner.model_seconds
    runner((lr, grid, grid, grid))
    seconds = runner.model_seconds - before
    return count_macs_per_lr_pixel(model) * _TIMED_TILE**2 / 1e9 / seconds
