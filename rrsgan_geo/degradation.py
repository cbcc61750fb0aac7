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
    return bicubic_resize(images, float(SCALE))


def down_up_4x(images: torch.Tensor) -> torch.Tensor:
    """Ref_DUX4: the reference blurred to LR detail, on the 4x grid."""
    return upsample_4x(downsample_4x(images))
