"""How blurred the scene is: given by the user, or estimated from its reference.

The generator is told the scene's blur (`sensor.SensorModel.blur_code`) and compares
the reference with the scene only after blurring the reference the same way
(`sensor.reference_dux4`), so `sr` must know it. A sensor's blur is rarely published
in a form one can use, and resampling during a product's processing changes it, so by
default (`auto`) it is measured on a few windows where the co-registered reference and
the scene are both valid: the reference is blurred (a Gaussian PSF with area
integration) until it is exactly as sharp as the scene, sharpness being the gradient
energy over the variance, per band. That needs a reference of the same place, not of
the same day: fitting the blurred reference to the scene pixel by pixel recovers the
blur exactly when the reference is the truth, but another date's changes pull that
fit towards more blur (less detail to disagree with), by up to a whole LR pixel on
RRSSRD; matched sharpness stays within about 0.1 on average (`docs/performance.md`).
The pixel fit's R^2 (gain and offset per band) still says whether the reference shows
the scene at all: below `MIN_FIT_R2` (another place, clouds) the documented default is
used. Noise sharpens an LR and JPEG softens it, so each moves the estimate a little.
"""

import math
from dataclasses import dataclass

import torch

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model import SCALE
from rrsgan_geo.sensor import BICUBIC, SensorModel, optics, sigma_from_mtf

AUTO = "auto"
NONE = "none"
DEFAULT_SIGMA = 0.5
"""The blur assumed where it cannot be measured (no reference, or a poor fit): a
Gaussian PSF of 0.5 LR px with area integration, about what a system MTF of 0.24 at
Nyquist gives (`sensor.sigma_from_mtf`), a middle value for optical satellite imagery
and the middle of the range the shipped model was trained on."""
MIN_FIT_R2 = 0.1
"""Share of the LR's variance (per band, after gain and offset) the blurred reference
must explain for the estimate to be used: the truth explains 0.98 or more, another
date's HR of the same place 0.5-0.7, RRSSRD's Google Earth references 0.0-0.6 (most
above 0.1, where matched sharpness still centres on the true blur), another place's
texture next to nothing."""
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
    """`estimated`, `given`, `none` (the user said the LR is bicubic-like) or
    `default` (nothing to measure it on, or a poor fit: see `reason`)."""
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
    """The sigma that makes the blurred reference as sharp as the scene (module
    docstring), or the default when there is nothing to measure on or the reference
    does not show the scene."""
    masked = [(w, mask) for w in windows if (mask := _fit_mask(w)).sum() >= 64]
    if not masked:
        return default_scene_blur("no window where the scene and a reference are both valid")
    usable = [w for w, _ in masked]
    target = _sharpness([(w.lr.float(), mask) for w, mask in masked])

    def blurred(sigma: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sensor = area_sensor(sigma)
        return [(optics(w.reference[None].float(), sensor)[0], mask) for w, mask in masked]

    low, high = 0.0, MAX_SIGMA
    if _sharpness(blurred(low)) <= target:
        sigma = low
    elif _sharpness(blurred(high)) >= target:
        sigma = high
    else:
        for _ in range(_SEARCH_STEPS):  # sharpness falls as sigma grows
            middle = (low + high) / 2
            low, high = (middle, high) if _sharpness(blurred(middle)) > target else (low, middle)
        sigma = (low + high) / 2
    r2 = _fit_r2(blurred(sigma), usable)
    if r2 < MIN_FIT_R2:
        return SceneBlur(
            area_sensor(DEFAULT_SIGMA),
            "default",
            r2,
            len(usable),
            f"the reference explains too little of the scene: fit R^2 {r2:.2f} < {MIN_FIT_R2}",
        )
    return SceneBlur(area_sensor(sigma), "estimated", r2, len(usable))


def _sharpness(images: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Gradient energy over variance, pooled over windows, averaged over bands: each
    (C x h x w image, h x w mask) counts the differences of neighbours both inside the
    mask, and the variance of the masked pixels around each window's mean."""
    gradients = variances = None
    for image, mask in images:
        image = image.double()
        across = mask[:, 1:] & mask[:, :-1]
        down = mask[1:] & mask[:-1]
        energy = torch.stack(
            [
                ((band[:, 1:] - band[:, :-1])[across] ** 2).sum()
                + ((band[1:] - band[:-1])[down] ** 2).sum()
                for band in image
            ]
        ) / (across.sum() + down.sum()).clamp(min=1)
        variance = torch.stack([band[mask].var() for band in image])
        gradients = energy if gradients is None else gradients + energy
        variances = variance if variances is None else variances + variance
    ratios = gradients / variances.clamp(min=1e-12)
    return float(ratios.mean())


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
