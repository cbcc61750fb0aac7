"""Co-registering a reference to the scene: one translation, found by phase correlation.

A reference placed by coordinates is rarely where the scene is to the pixel: Google
Earth mosaics, older surveys and satellite scenes disagree by metres. The generator's
deformable alignment (GAFA) has to learn to absorb such shifts, and a small model
trained briefly does not: measured on RRSSRD, a compact model copies the texture of a
reference that is aligned with the HR within a hundred training steps, but not that
of one shifted by 2-8 px after thousands. So the reference is moved onto the scene
first, by the translation that phase correlation finds between LR_UX4 and Ref_DUX4
(both at the LR's detail on the 4x grid, so only geometry and colour differ), and the
model is left the residual, local misalignment.

The translation is applied only when its correlation peak stands out
(`MIN_PEAK_STRENGTH`); a reference of changed land cover, or no reference at all,
shows no clear peak and is left where its coordinates put it. Shifts are whole pixels
of the 4x grid: applied to an image they move pixels, never resample them.
"""

from dataclasses import dataclass

import torch

from rrsgan_geo.model.degradation import down_up_4x
from rrsgan_geo.upscaling import SCALE

MAX_SHIFT = 32
"""The largest translation looked for, in pixels of the 4x grid, along each axis."""
MIN_PEAK_STRENGTH = 7.0
"""Peak-to-sidelobe ratio from which a correlation peak is trusted. Measured on the 80
RRSSRD area-A images (480 x 480 output px): an LR against another place's Google Earth
reference or HR gives at most 5.8 (3,200 pairs); the HR itself shifted and
recoloured 35-49; the same place on the other date 3.6-50 (66 of 80 from 7, 56 from
10); the Google Earth reference 2.9-21 (42 of 80 from 7, 21 from 10). Moving the 21
more references that 7 admits raised the reference's gain on the 16 held-out images
from 0.128 to 0.137 dB (a compact model from the shipped one's training)."""
_SIDELOBE_EXCLUSION = 5
"""Half width of the window around the peak left out of the sidelobe statistics."""


@dataclass(frozen=True)
class Shift:
    """Move the reference `rows` down and `cols` right (pixels of the 4x grid) to lie on
    the scene; `strength` is the correlation peak's peak-to-sidelobe ratio."""

    rows: int
    cols: int
    strength: float

    @property
    def reliable(self) -> bool:
        return self.strength >= MIN_PEAK_STRENGTH

    @property
    def applied(self) -> tuple[int, int]:
        """(rows, cols) to move the reference by: the shift if reliable, else none."""
        return (self.rows, self.cols) if self.reliable else (0, 0)


def _prepared(image: torch.Tensor) -> torch.Tensor:
    """C x H x W -> H x W: grey, mean removed, Hann-windowed (so that the image edges,
    which the FFT wraps, make no peak of their own)."""
    grey = image.double().mean(dim=0)
    grey = grey - grey.mean()
    height, width = grey.shape
    window = torch.outer(
        torch.hann_window(height, periodic=False, dtype=grey.dtype, device=grey.device),
        torch.hann_window(width, periodic=False, dtype=grey.dtype, device=grey.device),
    )
    return grey * window


def estimate_shift(
    scene: torch.Tensor, reference: torch.Tensor, max_shift: int = MAX_SHIFT
) -> Shift:
    """The translation that puts `reference` on `scene` (C x H x W each, on the same grid
    and at the same detail: LR_UX4 and Ref_DUX4).

    Phase correlation keeps only the cross-power spectrum's phase, so a reference of
    another colour or brightness still peaks where the geometry agrees. Frequencies above
    the LR's Nyquist are left out: LR_UX4 has none, and whitening would turn their noise
    into false peaks."""
    if scene.shape != reference.shape:
        raise ValueError(
            f"scene {tuple(scene.shape)} and reference {tuple(reference.shape)} differ"
        )
    height, width = scene.shape[-2:]
    cross = torch.fft.rfft2(_prepared(scene)) * torch.fft.rfft2(_prepared(reference)).conj()
    fy = torch.fft.fftfreq(height, dtype=torch.float64, device=scene.device).abs()[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64, device=scene.device)[None, :]
    low = (fy <= 0.5 / SCALE) & (fx <= 0.5 / SCALE)
    magnitude = cross.abs()
    cross = torch.where(low & (magnitude > 0), cross / magnitude.clamp_min(1e-30), 0)
    surface = torch.fft.fftshift(torch.fft.irfft2(cross, s=(height, width)))
    centre_y, centre_x = height // 2, width // 2
    reach_y, reach_x = min(max_shift, centre_y - 1), min(max_shift, centre_x - 1)
    searched = surface[
        centre_y - reach_y : centre_y + reach_y + 1, centre_x - reach_x : centre_x + reach_x + 1
    ]
    index = int(searched.argmax())
    peak_y, peak_x = divmod(index, searched.shape[1])
    peak = float(searched[peak_y, peak_x])
    outside = torch.ones_like(searched, dtype=torch.bool)
    e = _SIDELOBE_EXCLUSION
    outside[max(peak_y - e, 0) : peak_y + e + 1, max(peak_x - e, 0) : peak_x + e + 1] = False
    sidelobes = searched[outside]
    spread = float(sidelobes.std())
    strength = (peak - float(sidelobes.mean())) / spread if spread > 0 else 0.0
    return Shift(peak_y - reach_y, peak_x - reach_x, strength)


def shifted(image: torch.Tensor, rows: int, cols: int, fill: torch.Tensor) -> torch.Tensor:
    """`image` (... x H x W) moved `rows` down and `cols` right; the pixels it uncovers
    are taken from `fill` (same shape): LR_UX4, which stands in for a missing reference."""
    if rows == 0 and cols == 0:
        return image
    height, width = image.shape[-2:]
    out = fill.clone()
    src_rows = slice(max(-rows, 0), height - max(rows, 0))
    dst_rows = slice(max(rows, 0), height - max(-rows, 0))
    src_cols = slice(max(-cols, 0), width - max(cols, 0))
    dst_cols = slice(max(cols, 0), width - max(-cols, 0))
    out[..., dst_rows, dst_cols] = image[..., src_rows, src_cols]
    return out


def degraded_for_matching(image: torch.Tensor) -> torch.Tensor:
    """A reference brought to the LR's detail (Ref_DUX4) for `estimate_shift`."""
    return down_up_4x(image[None])[0]


def co_registered(
    lr_ux4: torch.Tensor, reference: torch.Tensor, max_shift: int = MAX_SHIFT
) -> tuple[torch.Tensor, Shift]:
    """`reference` (C x H x W, on LR_UX4's grid) moved onto the scene when phase
    correlation finds a reliable translation, with the translation found."""
    shift = estimate_shift(lr_ux4, degraded_for_matching(reference), max_shift)
    rows, cols = shift.applied
    return shifted(reference, rows, cols, lr_ux4), shift
