"""PSNR and SSIM as the RRSGAN authors compute them.

Their released test script (`val.py` with `utils/util.py`) scores the SR image saved
to 8 bits against the HR on **RGB**, after cropping `crop_border` pixels (the scale,
4) from every side; SSIM there uses an 11x11 Gaussian window (sigma 1.5) over the
'valid' region, per channel, averaged. Later RefSR papers report the same on the Y
channel of MATLAB's rgb2ycbcr (BT.601, Y in [16, 235]); `y_channel=True` gives that.
"""

import math

import torch
from torch.nn import functional as F

_Y_WEIGHTS = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64)


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """3 x H x W in [0, 1] -> H x W of Y in [16, 235] (8-bit scale)."""
    return torch.einsum("chw,c->hw", image.double(), _Y_WEIGHTS.to(image.device)) + 16.0


def _crop(image: torch.Tensor, border: int) -> torch.Tensor:
    return image[..., border:-border, border:-border] if border else image


def _as_saved(image: torch.Tensor) -> torch.Tensor:
    """Rounded to 8 bits, as a saved image would be (in float64: no float32 residue)."""
    return torch.round(image.double().clamp(0, 1) * 255) / 255


def _planes(image: torch.Tensor, y_channel: bool) -> torch.Tensor:
    """3 x H x W in [0, 1] -> the planes that are scored, saved to 8 bits and on the
    8-bit scale: 1 x H x W of Y, or the 3 RGB planes."""
    saved = _as_saved(image)
    return rgb_to_y(saved)[None] if y_channel else saved * 255


def psnr(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 4, y_channel: bool = True) -> float:
    """sr, hr: 3 x H x W in [0, 1]."""
    a, b = _planes(sr, y_channel), _planes(hr, y_channel)
    mse = torch.mean((_crop(a, crop_border) - _crop(b, crop_border)) ** 2).item()
    return math.inf if mse == 0 else 20 * math.log10(255.0 / math.sqrt(mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    return (kernel[:, None] * kernel[None, :])[None, None]


def ssim(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 4, y_channel: bool = True) -> float:
    """SSIM on 8-bit values, Gaussian window, valid region; per channel then averaged
    on RGB (the authors' `calculate_ssim`), or on Y."""
    a = _crop(_planes(sr, y_channel)[:, None], crop_border)
    b = _crop(_planes(hr, y_channel)[:, None], crop_border)
    window = _gaussian_window().to(a.device)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return ssim_map.mean().item()
