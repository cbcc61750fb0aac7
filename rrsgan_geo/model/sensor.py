"""How a sensor turns a scene into LR pixels: the one home of the sensor model.

Real satellite pixels are not a bicubic downsampling of the ground. The optics blur
the scene (the point spread function, PSF, modelled here as a Gaussian, isotropic or
elongated in any direction), each detector integrates the light over its square
footprint (an area mean over 4 x 4 HR pixels), photon and read noise add up
(Poisson-Gaussian: variance `shot_noise * signal + read_noise**2`), and the values are
quantised to the product's bit depth and often JPEG-compressed. A model trained only
on bicubic LR sees none of this and, on a real scene, gives an image as soft as its
input.

`SensorModel` is one such degradation; `degrade` makes LR from HR with it (training
and evaluation), `optics` applies its deterministic part (PSF and integration), which
is also how the reference is brought to the scene's detail (`reference_dux4`): the
model compares the reference with the LR, so the reference must be blurred the way the
scene was. `TrainingDraws` draws one model per training sample, deterministically
from a torch generator; `EVALUATION_SENSOR` is the fixed degradation that `evaluate
--degradation sensor` scores on.

The model is told how blurred its input is by `blur_code`: the sigma in LR pixels of
the Gaussian PSF that, with area integration, blurs as much (0.11 for the data set's
bicubic LR), the quantity `sr --scene-blur` estimates.
"""

import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from rrsgan_geo.config_numbers import check_numbers
from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model.degradation import downsample_4x, upsample_4x
from rrsgan_geo.upscaling import SCALE

INTEGRATIONS = ("area", "bicubic", "bilinear")
# The detector's square footprint alone passes sinc(1/2) = 2/pi of the contrast at the
# Nyquist frequency; a sensor's quoted system MTF there is that times the optics' MTF.
_AREA_MTF_AT_NYQUIST = 2 / math.pi
# A Gaussian PSF is cut where it has fallen to exp(-4.5) of its peak (3 sigma).
_PSF_RADIUS_SIGMAS = 3.0
INTEGRATION_BLUR = {"area": 0.0, "bicubic": 0.11, "bilinear": 0.31}
"""The Gaussian sigma (LR px) that, added in quadrature to the PSF's with area
integration, makes each integration as sharp: an antialiased bicubic resize of RRSSRD's
HR images is as sharp as area integration after a PSF of 0.114 +- 0.008 LR px (10
images), a bilinear one 0.31 in quadrature with any PSF of 0-0.9 (sharpness: gradient
energy over variance, the statistic `scene_blur` matches)."""


@dataclass(frozen=True)
class SensorModel:
    """One degradation from HR to LR (4x). Sigmas are in LR pixels."""

    psf_sigma: float = 0.0
    """The Gaussian PSF's sigma along its major axis; 0: no optical blur."""
    psf_sigma_minor: float | None = None
    """Along the minor axis; None: the PSF is isotropic."""
    psf_angle_deg: float = 0.0
    """Direction of the major axis, counter-clockwise from the image's x axis."""
    integration: str = "bicubic"
    """How detectors sum the blurred scene: `area` (a square footprint's mean, as a
    real detector does), or an antialiased `bicubic` or `bilinear` resize (what most
    data sets did)."""
    shot_noise: float = 0.0
    """Photon noise: variance per unit of signal (signal in [0, 1])."""
    read_noise: float = 0.0
    """Read noise: standard deviation in [0, 1] units."""
    bits: int = 8
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        check_numbers(self, "sensor.")
        if self.integration not in INTEGRATIONS:
            raise ConfigError(
                f"sensor integration must be one of {', '.join(INTEGRATIONS)}, "
                f"got {self.integration!r}"
            )
        minor = self.psf_sigma if self.psf_sigma_minor is None else self.psf_sigma_minor
        if not 0 <= minor <= self.psf_sigma <= 4:
            raise ConfigError(
                "sensor PSF sigmas must satisfy 0 <= minor <= major <= 4 LR px, got "
                f"{self.psf_sigma} and {minor}"
            )
        if self.shot_noise < 0 or self.read_noise < 0:
            raise ConfigError("sensor noise levels must be >= 0")
        if not 1 <= self.bits <= 16:
            raise ConfigError(f"sensor bits must be in 1..16, got {self.bits}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"sensor jpeg_quality must be in 1..100, got {self.jpeg_quality}")

    @property
    def is_bicubic(self) -> bool:
        """The data set's degradation: a plain antialiased bicubic resize."""
        return self.psf_sigma == 0 and self.integration == "bicubic"

    @property
    def blur_code(self) -> float:
        """What the model is told of this blur, and what `scene_blur` estimates: the
        sigma (LR px) of the Gaussian PSF that with area integration would blur as
        much; the PSF's own (the geometric mean of its axes when it is elongated) in
        quadrature with its integration's (`INTEGRATION_BLUR`). 0.11 for the data
        set's bicubic LR."""
        minor = self.psf_sigma if self.psf_sigma_minor is None else self.psf_sigma_minor
        return math.hypot(math.sqrt(self.psf_sigma * minor), INTEGRATION_BLUR[self.integration])

    def optics_only(self) -> "SensorModel":
        """The deterministic part (PSF and integration), as references are degraded."""
        return SensorModel(
            self.psf_sigma, self.psf_sigma_minor, self.psf_angle_deg, self.integration
        )


BICUBIC = SensorModel()
"""RRSSRD's degradation (MATLAB's bicubic `imresize`), the one the data set ships."""

BICUBIC_LIKE_BELOW = 0.2
"""A blur (LR px, as `SensorModel.blur_code`) below this is bicubic-like: `sr` takes an
estimate below it as `BICUBIC` (`scene_blur.assumed_sensor`), and a generator with a
bicubic expert hands such LR to it. With a matching reference the data set's bicubic LR
reads 0.15 and a PSF of 0.3 LR px reads 0.3: this is about halfway."""

EVALUATION_SENSOR = SensorModel(
    psf_sigma=0.6,
    integration="area",
    shot_noise=1e-4,
    read_noise=1 / 255,
    bits=8,
    jpeg_quality=85,
)
"""`evaluate --degradation sensor`: a fixed sensor-like LR, never drawn in training
(training draws a continuum of sigmas, noises and qualities): an isotropic Gaussian PSF
of sigma 0.6 LR px, 4 x 4 area mean, shot and read noise (variance 1e-4 x + (1/255)^2),
8-bit, JPEG quality 85."""


def sigma_from_mtf(mtf_at_nyquist: float) -> float:
    """The Gaussian PSF sigma (LR px) that, with area integration, gives a sensor's
    quoted system MTF at the Nyquist frequency (0.5 cycles per pixel). A Gaussian's MTF
    there is exp(-pi^2 sigma^2 / 2); the detector's footprint multiplies it by 2/pi."""
    if not 0 < mtf_at_nyquist < _AREA_MTF_AT_NYQUIST:
        raise ConfigError(
            f"an MTF at Nyquist must be in (0, {_AREA_MTF_AT_NYQUIST:.3f}) (what a square "
            f"detector alone gives), got {mtf_at_nyquist}"
        )
    return math.sqrt(-2 * math.log(mtf_at_nyquist / _AREA_MTF_AT_NYQUIST)) / math.pi


def psf_kernel(sensor: SensorModel) -> torch.Tensor | None:
    """The PSF sampled on the HR grid (2-D, sums to 1), or None without optical blur."""
    if sensor.psf_sigma == 0:
        return None
    major = SCALE * sensor.psf_sigma
    minor = SCALE * (sensor.psf_sigma if sensor.psf_sigma_minor is None else sensor.psf_sigma_minor)
    minor = max(minor, 1e-3)
    radius = max(1, math.ceil(_PSF_RADIUS_SIGMAS * major))
    steps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    y, x = torch.meshgrid(steps, steps, indexing="ij")
    angle = math.radians(sensor.psf_angle_deg)
    # Image rows grow downwards: the major axis at `angle` counter-clockwise on screen.
    along = x * math.cos(angle) - y * math.sin(angle)
    across = x * math.sin(angle) + y * math.cos(angle)
    kernel = torch.exp(-0.5 * ((along / major) ** 2 + (across / minor) ** 2))
    return (kernel / kernel.sum()).float()


def optics(images: torch.Tensor, sensor: SensorModel) -> torch.Tensor:
    """N x C x H x W in [0, 1] on the HR grid -> N x C x H/4 x W/4: the PSF, then the
    detectors' integration. No noise: deterministic, as references are degraded."""
    if _is_isotropic(sensor):
        images = _separable_gaussian(images, SCALE * sensor.psf_sigma)
    elif (kernel := psf_kernel(sensor)) is not None:
        channels, radius = images.shape[1], kernel.shape[-1] // 2
        padded = F.pad(images, (radius,) * 4, mode="replicate")
        weight = kernel.to(images)[None, None].expand(channels, 1, -1, -1)
        images = F.conv2d(padded, weight, groups=channels)
    if sensor.integration == "area":
        return F.avg_pool2d(images, SCALE)
    if sensor.integration == "bilinear":
        shrunk = F.interpolate(
            images, scale_factor=1 / SCALE, mode="bilinear", align_corners=False, antialias=True
        )
        return shrunk.clamp_(0.0, 1.0)
    return downsample_4x(images)


def _is_isotropic(sensor: SensorModel) -> bool:
    minor = sensor.psf_sigma_minor
    return sensor.psf_sigma > 0 and (minor is None or minor == sensor.psf_sigma)


def _separable_gaussian(images: torch.Tensor, sigma_hr: float) -> torch.Tensor:
    """An isotropic Gaussian as two 1-D passes (the same kernel as `psf_kernel`, a
    fraction of its cost: training blurs every sample and the blur estimate tries a
    dozen sigmas per window)."""
    radius = max(1, math.ceil(_PSF_RADIUS_SIGMAS * sigma_hr))
    steps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (steps / sigma_hr) ** 2)
    taps = (taps / taps.sum()).to(images)
    channels = images.shape[1]
    padded = F.pad(images, (radius,) * 4, mode="replicate")
    across = F.conv2d(padded, taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(across, taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def reference_dux4(reference: torch.Tensor, sensor: SensorModel) -> torch.Tensor:
    """Ref_DUX4: the reference brought to the scene's detail (its optics), back on the
    4x grid. With the bicubic model this is the data set's bicubic down-up."""
    return upsample_4x(optics(reference, sensor.optics_only()))


def degrade(hr: torch.Tensor, sensor: SensorModel, seed: int = 0) -> torch.Tensor:
    """LR made from HR (N x C x H x W in [0, 1]) by `sensor`: optics, noise drawn from
    `seed`, quantisation and JPEG. Deterministic for a given seed."""
    lr = optics(hr, sensor)
    if sensor.shot_noise or sensor.read_noise:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(lr.shape, generator=generator, dtype=torch.float32).to(lr)
        lr = lr + noise * (sensor.shot_noise * lr.clamp(min=0) + sensor.read_noise**2).sqrt()
    levels = 2**sensor.bits - 1
    lr = (lr.clamp(0, 1) * levels).round() / levels
    if sensor.jpeg_quality is not None:
        lr = torch.stack([_jpeg(image, sensor.jpeg_quality) for image in lr]).to(lr)
    return lr


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """One C x H x W image (C = 1 or 3) through an 8-bit JPEG of `quality`."""
    pixels = (image.detach().cpu() * 255).round().clamp(0, 255).byte().numpy()
    mode, array = ("L", pixels[0]) if pixels.shape[0] == 1 else ("RGB", pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer).convert(mode), dtype=np.float32) / 255
    decoded = decoded[None] if mode == "L" else decoded.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(decoded))


@dataclass(frozen=True)
class TrainingDraws:
    """The mix of degradations training draws from, one per sample.

    `bicubic` of the samples keep the data set's own (bicubic) LR, so scores on it stay
    comparable; the others get a Gaussian PSF with sigma uniform in `sigma` (elongated
    with probability `anisotropic`, minor axis 0.5-1 of the major, any direction),
    integrated by `integrations` (relative weights), with noise up to `max_shot_noise`
    and `max_read_noise`, quantised to 8 bits and JPEG-compressed with probability
    `jpeg` at a quality uniform in `jpeg_quality`. With `told_error`, the blur the model
    is told (and the reference is blurred by) errs as an estimate does."""

    bicubic: float = 0.25
    sigma: tuple[float, float] = (0.3, 1.2)
    anisotropic: float = 0.4
    integrations: dict[str, float] = field(
        default_factory=lambda: {"area": 0.6, "bicubic": 0.2, "bilinear": 0.2}
    )
    max_shot_noise: float = 4e-4
    max_read_noise: float = 3 / 255
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 95)
    told_error: float = 0.0
    """The standard deviation (LR px) of a Gaussian error added to the blur the model is
    told (`told_blur`) of blurred LR (blur code `EVALUATION_SENSOR`'s 0.6 and over).
    `sr --scene-blur auto` tells it an estimate, which errs: a model only ever told the
    truth sharpens a scene read as blurrier than it is into ringing. 0: the truth."""
    told_error_sharp: float | None = None
    """The same for the data set's bicubic LR (blur code 0.11), where the estimate errs
    most; between the two codes the error's deviation is interpolated linearly. None:
    `told_error` at every blur."""

    def __post_init__(self) -> None:
        check_numbers(self, "degradation.")
        low, high = self.sigma
        if not 0 <= self.bicubic <= 1 or not 0 <= self.anisotropic <= 1 or not 0 <= self.jpeg <= 1:
            raise ConfigError("degradation: bicubic, anisotropic and jpeg are probabilities")
        if not 0 < low <= high <= 4:
            raise ConfigError(
                f"degradation.sigma must satisfy 0 < low <= high <= 4, got {low}, {high}"
            )
        for name in ("told_error", "told_error_sharp"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(f"degradation.{name} must be in [0, 1] LR px, got {value}")
        unknown = sorted(set(self.integrations) - set(INTEGRATIONS))
        if unknown or sum(self.integrations.values()) <= 0:
            raise ConfigError(
                f"degradation.integrations: weights over {', '.join(INTEGRATIONS)}, not all zero"
            )
        q_low, q_high = self.jpeg_quality
        if not 1 <= q_low <= q_high <= 100:
            raise ConfigError("degradation.jpeg_quality must satisfy 1 <= low <= high <= 100")

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainingDraws":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"degradation: unknown key(s) {', '.join(unknown)}")
        values = dict(raw)
        for name in ("sigma", "jpeg_quality"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    def draw(self, generator: torch.Generator) -> SensorModel:
        """One sample's degradation (always ten uniform draws, so the stream of
        random numbers after it does not depend on which branch was taken)."""
        u = torch.rand(10, generator=generator, dtype=torch.float64).tolist()
        if u[0] < self.bicubic:
            return BICUBIC
        low, high = self.sigma
        sigma = low + (high - low) * u[1]
        minor = sigma * (0.5 + 0.5 * u[2]) if u[3] < self.anisotropic else None
        names = list(self.integrations)
        weights = np.cumsum([self.integrations[n] for n in names])
        integration = names[int(np.searchsorted(weights, u[4] * weights[-1], side="right"))]
        q_low, q_high = self.jpeg_quality
        quality = round(q_low + (q_high - q_low) * u[7]) if u[6] < self.jpeg else None
        return SensorModel(
            psf_sigma=sigma,
            psf_sigma_minor=minor,
            psf_angle_deg=180 * u[5],
            integration=integration,
            shot_noise=self.max_shot_noise * u[8],
            read_noise=self.max_read_noise * u[9],
            jpeg_quality=quality,
        )

    @property
    def tells_errors(self) -> bool:
        return self.told_error > 0 or bool(self.told_error_sharp)

    def told_blur(self, sensor: SensorModel, generator: torch.Generator) -> float:
        """The blur (LR px, as `SensorModel.blur_code`) the model is told of a sample
        made by `sensor`: its own, off by a Gaussian error of `told_error` (or towards
        `told_error_sharp` for sharper LR; one normal draw)."""
        error = float(torch.randn(1, generator=generator, dtype=torch.float64))
        code = sensor.blur_code
        sharp = self.told_error if self.told_error_sharp is None else self.told_error_sharp
        sharp_code, blurred_code = BICUBIC.blur_code, EVALUATION_SENSOR.blur_code
        share = min(max((code - sharp_code) / (blurred_code - sharp_code), 0.0), 1.0)
        return code + (sharp + share * (self.told_error - sharp)) * error
