"""How blurred the scene is: given by the user, or estimated from its reference.

The generator is told the scene's blur (`sensor.SensorModel.blur_code`) and compares the
reference with the scene only after blurring the reference the same way
(`sensor.reference_dux4`), so `sr` must know it. A sensor's blur is rarely published in
a form one can use, and resampling during a product's processing changes it, so by
default (`auto`) it is measured on a few windows where the co-registered reference and
the scene are both valid: the reference is blurred (a Gaussian PSF with area
integration) until its octave ratio equals the scene's, the octave ratio being the
gradient energy at full resolution over that of the 2 x 2 means (`_Detail`), with the
scene's noise set apart. The ratio says how detail falls off from one scale to the next,
which imagery of one kind does much alike whatever it shows: another date's reference
(other crops, shadows, contrast), even another place's, gives the scene's blur, where a
pixel-by-pixel fit, or matching gradient energy over variance, was pulled off by such
changes (by up to a whole LR pixel on RRSSRD's Google Earth references;
`docs/performance.md`). A reference with less fine detail than the scene has (a cloud, a
coarser image) can only make the scene look sharp, which errs towards sharpening less.
The blurred reference's pixel fit (R^2, with a gain and offset per band) is reported
beside the estimate, saying how much of the scene the reference shows. An estimate
below `BICUBIC_LIKE_BELOW` is taken as bicubic-like. The estimate errs (most on sharp
LR, by the reference's content), so the model is trained told an erring blur
(`sensor.TrainingDraws.told_error`). Without a reference, the documented default
(`DEFAULT_SIGMA`) is used: a scene's own detail depends too much on what it shows
(Landsat fields at 120 m look as sharp as Google Earth at 0.6 m blurred half as much) to
tell its blur. JPEG softens an LR a little.
"""

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model.sensor import (
    BICUBIC,
    BICUBIC_LIKE_BELOW,
    SensorModel,
    optics,
    sigma_from_mtf,
)
from rrsgan_geo.upscaling import SCALE

AUTO = "auto"
NONE = "none"
DEFAULT_SIGMA = 0.5
"""The blur assumed where there is no reference to measure against (or the scene is flat or
too small): a Gaussian PSF of 0.5 LR px with area integration, about what a system MTF
of 0.24 at Nyquist gives (`sensor.sigma_from_mtf`), a middle value for optical satellite
imagery and the middle of the range the shipped model was trained on."""
MAX_SIGMA = 2.0
"""The largest sigma (LR px) the estimate reports: a scene blurrier than that is
reported at it."""
_SEARCH_STEPS = 12
"""Bisections of the sigma range: 2 / 2^12 LR px apart at the end."""
_BORDER = 3
"""LR pixels left out at each window's edges, where the PSF reads past the window."""


@dataclass(frozen=True)
class SceneBlur:
    """The blur `sr` assumes for a scene, and where it comes from."""

    sensor: SensorModel
    source: str
    """`estimated` (from the reference), `given`, `none` (the user said the LR is
    bicubic-like) or `default` (no reference, or nothing to measure on: see `reason`)."""
    fit_r2: float | None = None
    windows: int = 0
    reason: str = ""

    @property
    def sigma(self) -> float:
        return self.sensor.blur_code

    def describe(self) -> str:
        """One line for people: 'scene blur: PSF sigma 0.62 LR px (estimated from the
        reference on 2 windows, fit R^2 0.97)'."""
        kind = (
            "bicubic-like (no PSF)"
            if self.sensor.is_bicubic
            else f"PSF sigma {self.sigma:.2f} LR px ({self.sensor.integration} integration)"
        )
        if self.source == "estimated":
            return (
                f"scene blur: {kind}, estimated from the reference on {self.windows} "
                f"window(s), fit R^2 {self.fit_r2:.2f}"
            )
        if self.source == "default":
            return f"scene blur: {kind}, the default ({self.reason})"
        return f"scene blur: {kind}, as given"

    def record(self) -> dict[str, object]:
        """What --json and the output's tags say."""
        return {
            "sigma_lr_px": round(self.sigma, 3),
            "model": "bicubic" if self.sensor.is_bicubic else f"gaussian+{self.sensor.integration}",
            "source": self.source,
            "fit_r2": None if self.fit_r2 is None else round(self.fit_r2, 4),
            "windows": self.windows,
            **({"reason": self.reason} if self.reason else {}),
        }


def area_sensor(sigma: float) -> SensorModel:
    """A Gaussian PSF of `sigma` LR px with area integration (what `sr` assumes)."""
    return SensorModel(psf_sigma=sigma, integration="area")


def check_scene_blur(text: str) -> str:
    """Refuse a --scene-blur that `given_scene_blur` cannot read, before any work."""
    given_scene_blur(text)
    return text


def given_scene_blur(text: str) -> SceneBlur | None:
    """The blur a --scene-blur value names, or None for `auto` (measure it).

    `none`: the LR is bicubic-like (as the RRSSRD data set is); a number: the PSF's
    sigma in LR px; `mtf:X`: the sensor's system MTF at Nyquist (from its quality
    reports), turned into a sigma (`sensor.sigma_from_mtf`)."""
    value = text.strip().lower()
    if value == AUTO:
        return None
    if value == NONE:
        return SceneBlur(BICUBIC, NONE)
    try:
        sigma = sigma_from_mtf(float(value[4:])) if value.startswith("mtf:") else float(value)
    except ValueError:
        raise ConfigError(
            f"--scene-blur {text!r}: use auto, none, a PSF sigma in LR pixels (e.g. 0.6) "
            "or mtf:X with the sensor's MTF at Nyquist (e.g. mtf:0.25)"
        ) from None
    except ConfigError as error:
        raise ConfigError(f"--scene-blur {text!r}: {error}") from None
    if not 0 <= sigma <= 4 or math.isnan(sigma):
        raise ConfigError(f"--scene-blur: a sigma must be in [0, 4] LR pixels, got {sigma}")
    return SceneBlur(area_sensor(sigma), "given")


def default_scene_blur(reason: str) -> SceneBlur:
    return SceneBlur(area_sensor(DEFAULT_SIGMA), "default", reason=reason)


@dataclass(frozen=True)
class BlurWindow:
    """One window to measure on: LR (C x h x w), the co-registered reference on the 4x
    grid (C x 4h x 4w), both in [0, 1], and where both are valid at LR (h x w)."""

    lr: torch.Tensor
    reference: torch.Tensor
    valid: torch.Tensor


def estimate_scene_blur(windows: list[BlurWindow]) -> SceneBlur:
    """The sigma that gives the blurred reference the scene's octave ratio (module
    docstring), or the default when there is no reference or nothing to measure on."""
    with_reference = [(w, mask) for w in windows if (mask := _fit_mask(w)).sum() >= 64]
    if not with_reference:
        return default_scene_blur("no window where the scene and a reference are both valid")
    scene = _detail([(w.lr.float(), mask) for w, mask in with_reference])
    if math.isnan(scene.octave_ratio):
        return default_scene_blur("the scene is flat where it was measured")
    usable = [w for w, _ in with_reference]

    def blurred(sigma: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sensor = area_sensor(sigma)
        return [(optics(w.reference[None].float(), sensor)[0], m) for w, m in with_reference]

    def too_sharp(sigma: float) -> bool:  # the blurred reference has more fine detail
        return scene.fine_detail_missing(_detail(blurred(sigma))) < 0

    low, high = 0.0, MAX_SIGMA
    if not too_sharp(low):
        sigma = low
    elif too_sharp(high):
        sigma = high
    else:
        for _ in range(_SEARCH_STEPS):  # the blurred reference's fine detail falls with sigma
            middle = (low + high) / 2
            low, high = (middle, high) if too_sharp(middle) else (low, middle)
        sigma = (low + high) / 2
    return SceneBlur(
        assumed_sensor(sigma), "estimated", _fit_r2(blurred(sigma), usable), len(usable)
    )


def assumed_sensor(sigma: float) -> SensorModel:
    """The sensor model assumed for an estimated sigma (LR px), which blurs the
    reference and is told to the model: bicubic-like below `BICUBIC_LIKE_BELOW`, else a
    Gaussian PSF with area integration. Training tells the model an erring estimate
    this way (`sensor.TrainingDraws.told_error`)."""
    return BICUBIC if sigma < BICUBIC_LIKE_BELOW else area_sensor(sigma)


@dataclass(frozen=True)
class _Detail:
    """Per band, pooled over windows and over the pixels inside their masks: the mean
    squared difference of horizontal and vertical neighbours (`fine`), the same of the
    2 x 2 means (`coarse`), and the mean square of a 3 x 3 Laplacian (`laplacian`).
    White noise of variance v adds 2v, v/2 and 36v to them."""

    fine: torch.Tensor
    coarse: torch.Tensor
    laplacian: torch.Tensor

    @property
    def octave_ratio(self) -> float:
        """How much of the detail lies in the finest octave (`fine / coarse`, averaged
        over bands with detail): a blur lowers it, and natural imagery's spectrum falls
        off alike at every scale, so it hardly depends on what the image shows. NaN
        for a flat image."""
        textured = self.coarse > 0
        if not textured.any():
            return math.nan
        return float((self.fine[textured] / self.coarse[textured]).mean())

    def fine_detail_missing(self, blurred: "_Detail") -> float:
        """How much finer detail this scene has than `blurred` (a reference blurred by
        a candidate PSF) would give it, as a share of the scene's, averaged over bands:
        > 0 when the candidate blurs too much. Per band, the reference's contrast (a
        gain g^2) and the scene's noise (variance v) are solved from the coarse and
        Laplacian energies, so that noise, which adds most to the finest detail, is
        not taken for sharpness: coarse = g^2 coarse_ref + v / 2 and laplacian = g^2
        laplacian_ref + 36 v, then fine is compared with g^2 fine_ref + 2 v."""
        denominator = 72 * blurred.coarse - blurred.laplacian
        gain = (72 * self.coarse - self.laplacian) / denominator.where(denominator > 0, 1.0)
        noise = (self.laplacian - gain * blurred.laplacian) / 36
        noiseless = (denominator <= 0) | (noise < 0) | (gain <= 0)
        gain = gain.where(~noiseless, self.coarse / blurred.coarse.clamp(min=1e-30))
        noise = noise.where(~noiseless, 0.0)
        predicted = gain * blurred.fine + 2 * noise
        textured = self.fine > 0
        return float(((self.fine - predicted)[textured] / self.fine[textured]).mean())


_LAPLACIAN = torch.tensor(
    [[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], dtype=torch.float64
)


def _detail(images: list[tuple[torch.Tensor, torch.Tensor]]) -> _Detail:
    """`_Detail` of (C x h x w image, h x w mask) windows."""
    sums = torch.zeros(3, images[0][0].shape[0], dtype=torch.float64)
    counts = torch.zeros(3, dtype=torch.float64)
    for image, mask in images:
        image = image.double()
        height, width = image.shape[-2] // 2 * 2, image.shape[-1] // 2 * 2
        halved = F.avg_pool2d(image[None, :, :height, :width], 2)[0]
        halved_mask = F.avg_pool2d(mask[None, :height, :width].double(), 2)[0] == 1
        inner = F.avg_pool2d(mask[None].double(), 3, stride=1)[0] == 1
        laplacian = F.conv2d(image[:, None], _LAPLACIAN[None, None])[:, 0]
        for row, (energy, count) in enumerate(
            (
                _neighbour_differences(image, mask),
                _neighbour_differences(halved, halved_mask),
                ((laplacian**2)[:, inner].sum(dim=1), inner.sum()),
            )
        ):
            sums[row] += energy
            counts[row] += count
    fine, coarse, laplacian = sums / counts.clamp(min=1)[:, None]
    return _Detail(fine, coarse, laplacian)


def _neighbour_differences(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per band, the sum of squared differences of horizontal and vertical neighbours
    both inside the mask, and how many pairs that is."""
    across = mask[:, 1:] & mask[:, :-1]
    down = mask[1:] & mask[:-1]
    energy = torch.stack(
        [
            ((band[:, 1:] - band[:, :-1])[across] ** 2).sum()
            + ((band[1:] - band[:-1])[down] ** 2).sum()
            for band in image
        ]
    )
    return energy, int(across.sum() + down.sum())


def _fit_r2(blurred: list[tuple[torch.Tensor, torch.Tensor]], windows: list[BlurWindow]) -> float:
    """The share of the LR's variance the blurred reference explains, with a gain and
    an offset per band and window."""
    residual = total = 0.0
    for (prediction, mask), window in zip(blurred, windows, strict=True):
        for predicted, band in zip(prediction, window.lr.float(), strict=True):
            residual += _fit_residual(predicted[mask], band[mask])
            total += _centred_energy(band[mask])
    return 1.0 - residual / total if total > 0 else 0.0


def _fit_mask(window: BlurWindow) -> torch.Tensor:
    mask = window.valid.clone()
    mask[:_BORDER], mask[-_BORDER:], mask[:, :_BORDER], mask[:, -_BORDER:] = (
        False,
        False,
        False,
        False,
    )
    return mask


def _centred_energy(values: torch.Tensor) -> float:
    return float(((values.double() - values.double().mean()) ** 2).sum())


def _fit_residual(predictor: torch.Tensor, target: torch.Tensor) -> float:
    """Sum of squared residuals of target ~ gain * predictor + offset (least squares)."""
    x = predictor.double() - predictor.double().mean()
    y = target.double() - target.double().mean()
    denominator = float((x * x).sum())
    gain = float((x * y).sum()) / denominator if denominator > 0 else 0.0
    return float(((y - gain * x) ** 2).sum())


def lr_validity(reference_valid: torch.Tensor) -> torch.Tensor:
    """Where a whole 4 x 4 block of the SR grid has a valid reference (h x w)."""
    height, width = reference_valid.shape[-2] // SCALE, reference_valid.shape[-1] // SCALE
    blocks = reference_valid[: SCALE * height, : SCALE * width].reshape(height, SCALE, width, SCALE)
    return blocks.all(dim=3).all(dim=1)
