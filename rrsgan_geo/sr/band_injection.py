"""4x detail for the bands the model does not see: injected from the visible ones.

The model super-resolves the scene's visible bands (`band_roles`). Each other band
(NIR, SWIR, coastal, thermal...) gets its 4x image as component-substitution
pansharpening makes one: its own bicubic upsample plus the detail the model added to
the visible intensity (the mean of the visible bands), times a gain fitted on the LR,
window by window, where both are known:

    out_b = bicubic(LR_b) + up(g_b * r2_b) * (SR_I - bicubic(LR_I))

with g_b the local regression slope of the band on the intensity and r2_b their
squared correlation, over 5 x 5 LR pixels. Where the band follows the visible ones
(fields, roads, shores) it gets their detail at its own contrast, inverted where it
runs opposite (NIR over vegetation); where it does not (water in NIR, a thermal band
that is coarser than its pixels), r2 is near 0 and it stays as smooth as bicubic.

Chosen by measurement (the model card's multispectral table): on a 7-band Landsat
scene degraded with the evaluation sensor, running the model on the other bands
packed as RGB gave more on NIR and SWIR but lost on the thermal band, and costs a
model run per three bands; injection never lost to bicubic and costs a few
convolutions per band. A band's 4x4 mean stays close to its LR pixel: the injected
detail is the model's, which keeps the visible bands' means, scaled by a smooth gain.
"""

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from torch.nn import functional as F

from rrsgan_geo.geo.scaling import ValueScaling
from rrsgan_geo.model.degradation import upsample_4x
from rrsgan_geo.sr.sources import read_filled
from rrsgan_geo.upscaling import SCALE

GAIN_WINDOW = 5
"""LR pixels per side of the window the gains are fitted over."""
MAX_GAIN = 3.0
"""Gains are limited to +-3: a window where the intensity barely varies (its
variance at the noise floor) gives no meaningful slope."""
_HALO = 4
"""LR pixels read around the rows: bicubic taps (2) and the gain window (2)."""
_VARIANCE_FLOOR = 1e-5
"""In [0, 1] units squared, about the variance of 1-DN noise in an 8-bit band."""


class DetailInjection:
    """Makes every written band from the model's visible output, row block by row block.

    `written` / `visible`: the scene's bands in the output and those the model saw;
    `scaling` / `visible_scaling`: their maps to [0, 1]; `window`: the part of the
    scene processed."""

    def __init__(
        self,
        scene: rasterio.io.DatasetReader,
        written: tuple[int, ...],
        visible: tuple[int, ...],
        scaling: ValueScaling,
        visible_scaling: ValueScaling,
        window: Window | None,
    ) -> None:
        self.scene = scene
        self.written = written
        self.visible = visible
        self.visible_scaling = visible_scaling
        self.window = window or Window(0, 0, scene.width, scene.height)
        self.injected = [band for band in written if band not in visible]
        self.injected_scaling = scaling.subset(written.index(band) for band in self.injected)

    def rows(self, top: int, visible_sr: np.ndarray) -> np.ndarray:
        """The written bands (in [0, 1] units) of SR rows from `top`, given the model's
        3 visible bands there (3 x rows x width)."""
        if not self.injected:
            return _visible_in_order(visible_sr, self.written, self.visible)
        lr_top, lr_rows = top // SCALE, visible_sr.shape[1] // SCALE
        lr_width = int(self.window.width)
        read = Window(
            int(self.window.col_off) - _HALO,
            int(self.window.row_off) + lr_top - _HALO,
            lr_width + 2 * _HALO,
            lr_rows + 2 * _HALO,
        )
        values, valid = read_filled(self.scene, self.visible + tuple(self.injected), read)
        count = len(self.visible)
        intensity = torch.from_numpy(self.visible_scaling.to_unit(values[:count]).mean(axis=0))
        bands = torch.from_numpy(self.injected_scaling.to_unit(values[count:]))
        weight = torch.ones_like(intensity) if valid is None else torch.from_numpy(valid.all(0))
        crop = (
            slice(_HALO * SCALE, (_HALO + lr_rows) * SCALE),
            slice(_HALO * SCALE, (_HALO + lr_width) * SCALE),
        )
        detail = torch.from_numpy(visible_sr).mean(0) - _bicubic(intensity)[crop]
        gains = _local_gains(bands, intensity, weight.to(intensity.dtype))
        injected = (
            _bicubic(bands)[:, crop[0], crop[1]] + _bilinear(gains)[:, crop[0], crop[1]] * detail
        )
        out = {band: plane for band, plane in zip(self.injected, injected.numpy(), strict=True)}
        model = _visible_in_order(visible_sr, self.visible, self.visible)
        out.update(zip(self.visible, model, strict=True))
        return np.stack([out[band] for band in self.written])


def _visible_in_order(
    visible_sr: np.ndarray, bands: tuple[int, ...], visible: tuple[int, ...]
) -> np.ndarray:
    """The model's output as `bands` (each one of `visible`); a single grey band is
    the mean of the model's three copies of it."""
    if len(visible) == 1:
        return np.repeat(visible_sr.mean(axis=0, keepdims=True), len(bands), axis=0)
    return visible_sr[[visible.index(band) for band in bands]]


def _bicubic(planes: torch.Tensor) -> torch.Tensor:
    """Bicubic 4x of ... x h x w, unclamped (scaled bands may pass [0, 1])."""
    height, width = planes.shape[-2:]
    flat = planes.reshape(1, -1, height, width).float()
    upsampled = upsample_4x(flat, clamp=False)
    return upsampled.reshape(*planes.shape[:-2], height * SCALE, width * SCALE)


def _bilinear(planes: torch.Tensor) -> torch.Tensor:
    return F.interpolate(planes[None], scale_factor=SCALE, mode="bilinear", align_corners=False)[0]


def _local_gains(
    bands: torch.Tensor, intensity: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Per LR pixel, each band's regression slope on the intensity times their squared
    correlation, over `GAIN_WINDOW` pixels where both are valid."""

    def mean(x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x[None] * weight, (GAIN_WINDOW // 2,) * 4, mode="replicate")
        return F.avg_pool2d(padded, GAIN_WINDOW, stride=1)[0]

    pad = GAIN_WINDOW // 2
    count = F.avg_pool2d(F.pad(weight[None, None], (pad,) * 4, mode="replicate"), GAIN_WINDOW, 1)[
        0, 0
    ]
    count = count.clamp(min=1 / GAIN_WINDOW**2)
    m_i = mean(intensity[None])[0] / count
    v_i = (mean(intensity[None] ** 2)[0] / count - m_i**2).clamp(min=0)
    m_b = mean(bands) / count
    v_b = (mean(bands**2) / count - m_b**2).clamp(min=0)
    cov = mean(bands * intensity) / count - m_b * m_i
    gain = (cov / (v_i + _VARIANCE_FLOOR)).clamp(-MAX_GAIN, MAX_GAIN)
    r2 = (cov**2 / ((v_i + _VARIANCE_FLOOR) * (v_b + _VARIANCE_FLOOR))).clamp(0, 1)
    return gain * r2
