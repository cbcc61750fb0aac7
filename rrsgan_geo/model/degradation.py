"""The 4x degradation, one helper for the data set builder, the loader and `sr`.

LR_UX4 and Ref_DUX4 must be made exactly as during training, or the model sees
inputs it never learnt from. Bicubic with antialiasing when shrinking is the closest
torch has to MATLAB's `imresize`, which the RRSSRD data set was made with.
"""

import functools

import torch
from torch.nn import functional as F

from rrsgan_geo.upscaling import SCALE


def bicubic_resize(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Resize N x C x H x W by `factor` (bicubic, antialiased when shrinking), clamped
    to [0, 1] like the 8-bit images the model was trained on."""
    resized = F.interpolate(
        images, scale_factor=factor, mode="bicubic", align_corners=False, antialias=factor < 1
    )
    return resized.clamp_(0.0, 1.0)


def downsample_4x(images: torch.Tensor) -> torch.Tensor:
    return bicubic_resize(images, 1.0 / SCALE)


def upsample_4x(images: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """4x bicubic upsampling, equal to `bicubic_resize(images, 4)` within float rounding
    (tested) and several times faster on the CPU. Per axis, a 4x bicubic upsample is
    four 4-tap filters, one per output phase, over the edge-replicated input: each
    phase is four shifted, weighted copies of the input added up, and the phases
    interleave. Measured on the 2-core CPU, one thread, a strip of `sr` (3 x 160 x 544
    LR): 4.7 ms, where torch's generic kernel (which recomputes the weights per pixel)
    takes 24 ms and the same filters as convolutions with one input channel 37 ms
    (oneDNN has no fast path for them). The second pass writes each phase straight into
    its rows of the output (5.5-6.1 ms when the phases were stacked afterwards).
    `clamp=False` keeps values outside [0, 1] (a percentile-scaled band's)."""
    n, c, h, w = images.shape
    planes = F.pad(images.reshape(n * c, 1, h, w), (2, 2, 2, 2), mode="replicate")[:, 0]
    across = torch.stack([_phase(planes, -1, taps) for taps in _phase_taps()], dim=-1)
    across = across.flatten(-2)  # n*c x (h + 4) x 4w
    upsampled = images.new_empty(n * c, h, SCALE, SCALE * w)
    for phase, taps in enumerate(_phase_taps()):
        _phase(across, -2, taps, out=upsampled[:, :, phase])
    upsampled = upsampled.reshape(n, c, SCALE * h, SCALE * w)
    return upsampled.clamp_(0.0, 1.0) if clamp else upsampled


def _phase(
    planes: torch.Tensor, dim: int, taps: tuple[float, ...], out: torch.Tensor | None = None
) -> torch.Tensor:
    """Along `dim` (-1 or -2) of `planes`, padded by 2 pixels each side: output i is
    the taps' weighted sum of inputs i-2 .. i+2. The tap that is exactly zero (each
    phase has one) is skipped, which leaves every sum unchanged to the bit."""
    size = planes.shape[dim] - 4
    (first, weight), *rest = [(offset, tap) for offset, tap in enumerate(taps) if tap != 0.0]
    total = torch.mul(planes.narrow(dim, first, size), weight, out=out)
    for offset, tap in rest:
        total.add_(planes.narrow(dim, offset, size), alpha=tap)
    return total


@functools.cache
def _phase_taps() -> tuple[tuple[float, ...], ...]:
    """The weights torch's bicubic (align_corners=False) gives output 4i + p on inputs
    i-2 .. i+2, read off by upsampling unit impulses (so they are torch's own)."""
    impulses = torch.eye(9, dtype=torch.float64)[None, None]
    spread = F.interpolate(impulses, size=(9, 9 * SCALE), mode="bicubic", align_corners=False)
    return tuple(tuple(spread[0, 0, 2:7, SCALE * 4 + phase].tolist()) for phase in range(SCALE))


def down_up_4x(images: torch.Tensor) -> torch.Tensor:
    """Ref_DUX4: the reference blurred to LR detail, on the 4x grid."""
    return upsample_4x(downsample_4x(images))
