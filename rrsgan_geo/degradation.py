"""The 4x degradation, one helper for the data set builder, the loader and `sr`.

LR_UX4 and Ref_DUX4 must be made exactly as during training, or the model sees
inputs it never learnt from. Bicubic with antialiasing when shrinking is the closest
torch has to MATLAB's `imresize`, which the RRSSRD data set was made with.
"""

import torch
from torch.nn import functional as F

from rrsgan_geo.model import SCALE


def bicubic_resize(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Resize N x C x H x W by `factor` (bicubic, antialiased when shrinking), clamped
    to [0, 1] like the 8-bit images the model was trained on."""
    resized = F.interpolate(
        images, scale_factor=factor, mode="bicubic", align_corners=False, antialias=factor < 1
    )
    return resized.clamp_(0.0, 1.0)


def downsample_4x(images: torch.Tensor) -> torch.Tensor:
    return bicubic_resize(images, 1.0 / SCALE)


def upsample_4x(images: torch.Tensor) -> torch.Tensor:
    """4x bicubic upsampling, equal to `bicubic_resize(images, 4)` within float rounding
    (tested) and about twice as fast on the CPU: a 4x bicubic upsample is, per axis,
    four 5-tap filters (one per output phase) over the edge-replicated input, which two
    small convolutions compute; torch's generic kernel recomputes the weights per pixel."""
    n, c, h, w = images.shape
    taps = _phase_taps(images.dtype, images.device)  # SCALE x 1 x 1 x 5
    planes = F.pad(images.reshape(n * c, 1, h, w), (2, 2, 0, 0), mode="replicate")
    planes = F.conv2d(planes, taps).permute(0, 2, 3, 1).reshape(n * c, 1, h, SCALE * w)
    planes = F.pad(planes, (0, 0, 2, 2), mode="replicate")
    planes = F.conv2d(planes, taps.transpose(2, 3)).permute(0, 2, 1, 3)
    return planes.reshape(n, c, SCALE * h, SCALE * w).clamp_(0.0, 1.0)


def _phase_taps(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The weights torch's bicubic (align_corners=False) gives output 4i + p on inputs
    i-2 .. i+2, read off by upsampling unit impulses (so they are torch's own)."""
    key = (dtype, device)
    if key not in _TAPS:
        impulses = torch.eye(9, dtype=torch.float64)[None, None]
        spread = F.interpolate(impulses, size=(9, 9 * SCALE), mode="bicubic", align_corners=False)
        taps = torch.stack([spread[0, 0, 2:7, SCALE * 4 + phase] for phase in range(SCALE)])
        _TAPS[key] = taps.reshape(SCALE, 1, 1, 5).to(dtype=dtype, device=device)
    return _TAPS[key]


_TAPS: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def down_up_4x(images: torch.Tensor) -> torch.Tensor:
    """Ref_DUX4: the reference blurred to LR detail, on the 4x grid."""
    return upsample_4x(downsample_4x(images))
