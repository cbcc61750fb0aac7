"""Synthetic references made from the HR itself, for reference-aware training.

A real reference (Google Earth, another date) differs from the HR in geometry, colour
and content, and in little data that is all the model sees: it never learns that a
reference can pay off. A reference made from the HR, displaced and recoloured,
degraded and partly replaced, is one that pays off where it is intact and misleads where
it was replaced, which is what alignment (GAFA) and relevance attention (RAM) have to
learn. Every random choice is drawn into a `Distortion` first (from a torch Generator,
so a batch stays a pure function of seed and step); applying it is deterministic and
batched on whatever device the images are on.
"""

import dataclasses
import io
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from rrsgan_geo.config_numbers import check_numbers
from rrsgan_geo.errors import ConfigError

# Coarse control points per side of the elastic field and of the replacement masks.
_NOISE_GRID = 4


@dataclass(frozen=True)
class SyntheticReferenceConfig:
    """Ranges the distortions are drawn from (HR pixels, fractions of full scale)."""

    max_shift: float = 8.0
    elastic: float = 2.0
    max_rotation_deg: float = 3.0
    max_scale: float = 0.03
    gamma: tuple[float, float] = (0.75, 1.35)
    gain: float = 0.15
    offset: float = 0.06
    haze: float = 0.25
    max_blur_sigma: float = 1.2
    jpeg_probability: float = 0.5
    jpeg_quality: tuple[int, int] = (35, 90)
    replace_probability: float = 0.5
    cloud_probability: float = 0.25
    max_replaced_fraction: float = 0.5

    def __post_init__(self) -> None:
        check_numbers(self, "reference.synthetic.")
        for name in ("max_shift", "elastic", "max_rotation_deg", "max_scale", "gain"):
            if getattr(self, name) < 0:
                raise ConfigError(f"reference.synthetic.{name} must be >= 0")
        for name in ("jpeg_probability", "replace_probability", "cloud_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"reference.synthetic.{name} must be in [0, 1]")
        if not 0 < self.gamma[0] <= self.gamma[1]:
            raise ConfigError("reference.synthetic.gamma must be [low, high] with 0 < low <= high")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ConfigError("reference.synthetic.jpeg_quality must be [low, high] in 1..100")
        if not 0 <= self.max_replaced_fraction < 1:
            raise ConfigError("reference.synthetic.max_replaced_fraction must be in [0, 1)")

    def scaled(self, strength: float) -> "SyntheticReferenceConfig":
        """The same kinds of change, each `strength` (0..1) as large or as likely: an
        easy start for a curriculum (an aligned reference is learnt to be used within
        a hundred steps; a heavily distorted one teaches little until then)."""
        if strength >= 1:
            return self
        low, high = self.gamma
        return dataclasses.replace(
            self,
            **{
                name: getattr(self, name) * strength
                for name in (
                    "max_shift",
                    "elastic",
                    "max_rotation_deg",
                    "max_scale",
                    "gain",
                    "offset",
                    "haze",
                    "max_blur_sigma",
                    "jpeg_probability",
                    "replace_probability",
                    "cloud_probability",
                    "max_replaced_fraction",
                )
            },
            gamma=(1 + (low - 1) * strength, 1 + (high - 1) * strength),
        )

    def displacement_bound(self, half_size: float) -> float:
        """No pixel within `half_size` of the crop centre moves further than this."""
        angle = math.radians(self.max_rotation_deg)
        # |(s R - I) p| <= (|s - 1| + 2 sin(angle / 2)) |p| with s within 1 +- max_scale
        linear = (self.max_scale + 2 * math.sin(angle / 2) * (1 + self.max_scale)) * half_size
        return self.max_shift + self.elastic + linear * math.sqrt(2)


@dataclass(frozen=True)
class Distortion:
    """One sample's reference distortion; the identity by default."""

    shift: tuple[float, float] = (0.0, 0.0)  # (dx, dy) HR px
    rotation_deg: float = 0.0
    scale: float = 1.0
    elastic: torch.Tensor | None = None  # 2 x g x g control displacements, HR px
    gamma: float = 1.0
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    haze: float = 0.0
    blur_sigma: float = 0.0
    jpeg_quality: int | None = None
    replace_mask: torch.Tensor | None = None  # g x g control values; > threshold replaced
    replace_threshold: float = 1.0
    cloud: bool = False  # replaced by a bright cloud-like blob, else by donor texture


def _uniform(generator: torch.Generator, low: float, high: float, size: int = 1) -> list[float]:
    return (
        low + (high - low) * torch.rand(size, generator=generator, dtype=torch.float64)
    ).tolist()


def draw_distortion(config: SyntheticReferenceConfig, generator: torch.Generator) -> Distortion:
    """A random distortion within `config`."""
    shift_radius, shift_angle = _uniform(generator, 0, 1, 2)
    radius = config.max_shift * math.sqrt(shift_radius)
    shift = (
        radius * math.cos(2 * math.pi * shift_angle),
        radius * math.sin(2 * math.pi * shift_angle),
    )
    (rotation,) = _uniform(generator, -config.max_rotation_deg, config.max_rotation_deg)
    (scale,) = _uniform(generator, 1 - config.max_scale, 1 + config.max_scale)
    elastic = (torch.rand(2, _NOISE_GRID, _NOISE_GRID, generator=generator) * 2 - 1) * (
        config.elastic / math.sqrt(2)
    )
    (gamma,) = _uniform(generator, *config.gamma)
    gain = tuple(_uniform(generator, 1 - config.gain, 1 + config.gain, 3))
    offset = tuple(_uniform(generator, -config.offset, config.offset, 3))
    (haze,) = _uniform(generator, 0, config.haze)
    (blur,) = _uniform(generator, 0, config.max_blur_sigma)
    jpeg_draw, replace_draw, cloud_draw, fraction = _uniform(generator, 0, 1, 4)
    (quality,) = _uniform(generator, config.jpeg_quality[0], config.jpeg_quality[1] + 1)
    mask = torch.rand(_NOISE_GRID, _NOISE_GRID, generator=generator)
    replace = replace_draw < config.replace_probability
    return Distortion(
        shift=shift,
        rotation_deg=rotation,
        scale=scale,
        elastic=elastic,
        gamma=gamma,
        gain=gain,
        offset=offset,
        haze=haze,
        blur_sigma=blur,
        jpeg_quality=int(quality) if jpeg_draw < config.jpeg_probability else None,
        replace_mask=mask if replace else None,
        # A threshold on a smooth field in [0, 1]: roughly that fraction is replaced.
        replace_threshold=1 - fraction * config.max_replaced_fraction,
        cloud=cloud_draw < config.cloud_probability,
    )


def _smooth_field(control: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """C x g x g control values -> C x H x W, bicubic (smooth, no blocky edges)."""
    return F.interpolate(
        control[None].float(), size=(height, width), mode="bicubic", align_corners=True
    )[0]


def source_pixels(
    distortion: Distortion, height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """H x W pixel coordinates (x, y) in the HR that each reference pixel is taken from:
    rotation and scale about the centre, then shift, then the elastic field."""
    ys = torch.arange(height, device=device, dtype=torch.float32) - (height - 1) / 2
    xs = torch.arange(width, device=device, dtype=torch.float32) - (width - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    angle = math.radians(distortion.rotation_deg)
    cos, sin = math.cos(angle) * distortion.scale, math.sin(angle) * distortion.scale
    source_x = cos * x - sin * y + distortion.shift[0] + (width - 1) / 2
    source_y = sin * x + cos * y + distortion.shift[1] + (height - 1) / 2
    if distortion.elastic is not None:
        field = _smooth_field(distortion.elastic.to(device), height, width)
        source_x, source_y = source_x + field[0], source_y + field[1]
    return source_x, source_y


def displacement(distortion: Distortion, height: int, width: int) -> torch.Tensor:
    """2 x H x W: how far (HR px) each reference pixel is taken from its own place."""
    source_x, source_y = source_pixels(distortion, height, width, torch.device("cpu"))
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack((source_x - xs, source_y - ys))


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma < 0.05:
        return image
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(image.shape[0], 1)
    padded = F.pad(image[None], (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel[:, None, None, :], groups=image.shape[0])
    return F.conv2d(rows, kernel[:, None, :, None], groups=image.shape[0])[0]


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    array = (image.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        restored = np.asarray(decoded.convert("RGB")).copy()
    return torch.from_numpy(restored).permute(2, 0, 1).to(image) / 255


def replaced_share(
    distortion: Distortion, height: int, width: int, device: torch.device
) -> torch.Tensor | None:
    """1 x H x W: how much of each reference pixel `synthesize` takes from the donor or
    the cloud (0 intact, 1 replaced, a soft edge between); None where nothing is."""
    if distortion.replace_mask is None:
        return None
    weight = _smooth_field(distortion.replace_mask[None].to(device), height, width)
    return ((weight - distortion.replace_threshold) * 8).clamp(0, 1)


def synthesize(
    hr: torch.Tensor, distortion: Distortion, donor: torch.Tensor | None = None
) -> torch.Tensor:
    """3 x H x W HR in [0, 1] -> its synthetic reference under `distortion`.

    Order: geometry (reflection at the edges), part replacement (by `donor`, another
    place's texture of the same size, or by a cloud when there is none), radiometry
    (gamma, per-channel gain and offset, haze), blur, JPEG. The identity `Distortion()`
    returns the HR unchanged."""
    _, height, width = hr.shape
    source_x, source_y = source_pixels(distortion, height, width, hr.device)
    # Pixel centres -> normalised coordinates of align_corners=False.
    grid = torch.stack(((2 * source_x + 1) / width - 1, (2 * source_y + 1) / height - 1), -1)
    ref = F.grid_sample(
        hr[None], grid[None], mode="bilinear", padding_mode="reflection", align_corners=False
    )[0]
    weight = replaced_share(distortion, height, width, hr.device)
    if weight is not None:
        if distortion.cloud or donor is None:
            cloud = 0.85 + 0.15 * _smooth_field(
                distortion.replace_mask.flip(0)[None].to(hr.device), height, width
            )
            replacement = cloud.clamp(0, 1).expand_as(ref)
        else:
            replacement = donor
        ref = ref * (1 - weight) + replacement * weight
    gain = torch.tensor(distortion.gain, device=hr.device, dtype=hr.dtype)[:, None, None]
    offset = torch.tensor(distortion.offset, device=hr.device, dtype=hr.dtype)[:, None, None]
    if distortion.gamma != 1.0:
        ref = ref.clamp(0, 1) ** distortion.gamma
    ref = ref * gain + offset
    if distortion.haze > 0:
        ref = ref * (1 - distortion.haze) + distortion.haze * 0.8
    ref = _gaussian_blur(ref.clamp(0, 1), distortion.blur_sigma)
    if distortion.jpeg_quality is not None:
        ref = _jpeg(ref, distortion.jpeg_quality)
    return ref


def config_from_dict(raw: dict) -> SyntheticReferenceConfig:
    known = {f.name for f in fields(SyntheticReferenceConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"reference.synthetic: unknown key(s) {', '.join(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return SyntheticReferenceConfig(**values)


# "Truth as reference": the HR itself, 3 px east and 2 px north and recoloured. A model
# whose reference path works recovers much of the HR from it; one that ignores its
# reference gains nothing. Used by `evaluate` and by validation during training.
TRUTH_AS_REFERENCE = Distortion(
    shift=(3.0, -2.0), gamma=1.1, gain=(0.92, 1.0, 1.08), offset=(0.02, 0.0, -0.02)
)
