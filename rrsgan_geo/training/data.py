"""RRSSRD-style training data: five aligned images per sample.

A folder holds `HR/`, `LR/` and `Ref/` (or the authors' `google_Ref/`) with the same
file names. LR_UX4 and Ref_DUX4 are not read from disk: they are made here with the
same degradation helper `sr` uses, so training sees exactly what inference will.

Each training sample's reference is drawn from `ReferenceConfig`'s sources: the real
reference, the same place's HR on another date, a synthetic reference made from the
HR (`reference_synthesis`), or none (LR_UX4 stands in, as in `sr` where no reference
covers a tile). Batches are a pure function of (seed, step, sample index): resuming is
exact, and ranks of a distributed run draw disjoint slices of the same global batch.
Crops are cut with context first and degraded afterwards, batched on the training
device, so no step re-runs a resize over a whole image.
"""

import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from rrsgan_geo.config_numbers import check_numbers
from rrsgan_geo.errors import ConfigError, InputError
from rrsgan_geo.model.degradation import upsample_4x
from rrsgan_geo.model.sensor import BICUBIC, SensorModel, TrainingDraws, degrade, reference_dux4
from rrsgan_geo.sr.registration import co_registered, shifted
from rrsgan_geo.sr.scene_blur import assumed_sensor
from rrsgan_geo.training.reference_synthesis import (
    Distortion,
    SyntheticReferenceConfig,
    config_from_dict,
    draw_distortion,
    replaced_share,
    synthesize,
)
from rrsgan_geo.upscaling import SCALE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
SOURCES = ("real", "other_date", "synthetic", "none")
# Context cut around every crop (LR px; 4x that on the HR grid): the bicubic resizes
# reach 2 LR px past a pixel, and a synthetic reference moves pixels by up to
# `SyntheticReferenceConfig.displacement_bound`, which is sampled with reflection
# beyond this context.
CONTEXT_LR = 8
REF_FOLDERS = ("Ref", "google_Ref")
MANIFEST = "manifest.jsonl"
"""What `build-dataset` writes beside its train/ and val/ folders."""
# RRSSRD names a zoom-18 web-map tile and a sub-crop: L18_<x>_<y>_s<k>.
_L18 = re.compile(r"L18_(\d+)_(\d+)_s\d+")


def _read_rgb(path: Path) -> np.ndarray:
    """H x W x 3 uint8. A file that cannot be decoded (cut short, not an image) is an
    InputError naming it: PIL's 'image file is truncated' alone does not say which of
    a data set's files it is."""
    try:
        if path.suffix.lower() in {".tif", ".tiff"}:
            import rasterio

            with rasterio.open(path) as dataset:
                return np.moveaxis(dataset.read((1, 2, 3)), 0, -1)
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:  # PIL's decoding errors, rasterio's (GDAL's words in the cause)
        from rrsgan_geo.geo.rasters import gdal_message  # only now: train loads no GDAL

        raise InputError(f"reading image {path} failed: {gdal_message(error)}") from None


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float() / 255.0


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """3 x H x W in [0, 1] -> H x W x 3 uint8, the form images are kept in."""
    return (image * 255).round().clamp(0, 255).byte().numpy().transpose(1, 2, 0)


@dataclass(frozen=True)
class Sample:
    name: str
    folder: Path
    hr: Path
    lr: Path
    ref: Path


def find_samples(folder: Path) -> list[Sample]:
    folder = Path(folder)
    if is_built_dataset(folder):
        raise InputError(
            f"{folder} is a build-dataset output: give its val/ or train/ folder (a training "
            "config, or evaluate --held-out, may name the folder itself: its split is kept)"
        )
    ref_folder = next((folder / name for name in REF_FOLDERS if (folder / name).is_dir()), None)
    if not (folder / "HR").is_dir() or not (folder / "LR").is_dir() or ref_folder is None:
        raise InputError(f"{folder}: expected HR/, LR/ and Ref/ (or google_Ref/) folders")
    samples = []
    for hr in sorted((folder / "HR").iterdir()):
        if hr.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        lr, ref = folder / "LR" / hr.name, ref_folder / hr.name
        if lr.is_file() and ref.is_file():
            samples.append(Sample(hr.stem, folder, hr, lr, ref))
    if not samples:
        raise InputError(f"{folder}: no sample has HR, LR and Ref images of the same name")
    return samples


def is_built_dataset(folder: Path) -> bool:
    """Whether `folder` is a `build-dataset` output: train/ and val/ in RRSSRD's layout,
    already split by blocks of neighbouring samples, beside its manifest."""
    return (folder / MANIFEST).is_file() and (folder / "train").is_dir()


def split_samples(
    folders: list[Path], val_fraction: float, block: int, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(training, validation) samples of `folders`. A `build-dataset` output keeps the
    split it was cut with (its train/ and val/): splitting its samples again by name
    would put neighbouring crops on both sides. RRSSRD folders are split by
    `spatial_split` (whole blocks of places held out)."""
    train: list[Sample] = []
    val: list[Sample] = []
    plain: list[Sample] = []
    for folder in folders:
        if not is_built_dataset(folder):
            plain += find_samples(folder)
            continue
        train += find_samples(folder / "train")
        if any((folder / "val" / "HR").glob("*")):  # a small build may hold out nothing
            val += find_samples(folder / "val")
    split_train, split_val = spatial_split(plain, val_fraction, block, seed)
    return train + split_train, val + split_val


def place_key(name: str, block: int) -> str:
    """Samples in the same block of web-map tiles share a key: they are neighbours
    (and the same place on another date), so they must land in the same split."""
    match = _L18.match(name)
    if match is None:
        return name
    return f"{int(match.group(1)) // block}_{int(match.group(2)) // block}"


def spatial_split(
    samples: list[Sample], val_fraction: float, block: int, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Hold out whole blocks of places for validation, never single crops."""
    keys = sorted({place_key(s.name, block) for s in samples})
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed)).tolist()
    count = max(1, round(val_fraction * len(keys))) if val_fraction > 0 else 0
    held_out = {keys[i] for i in order[:count]}
    train = [s for s in samples if place_key(s.name, block) not in held_out]
    val = [s for s in samples if place_key(s.name, block) in held_out]
    return train, val


@dataclass(frozen=True)
class ReferenceConfig:
    """Where each training sample's reference comes from, with what probability.

    `sources` are relative weights of `SOURCES`; with `sources_end` and
    `curriculum_steps` the weights move linearly from one to the other over those
    steps, and synthetic distortions grow from `synthetic_start_strength` of their
    configured size to all of it. The default is the real reference only (the
    authors' recipe)."""

    sources: dict[str, float] = field(default_factory=lambda: {"real": 1.0})
    sources_end: dict[str, float] | None = None
    curriculum_steps: int = 0
    synthetic_start_strength: float = 1.0
    co_register: bool = True
    """Move references onto the sample as `sr` does (see `RefSRDataset`)."""
    synthetic: SyntheticReferenceConfig = field(default_factory=SyntheticReferenceConfig)

    def __post_init__(self) -> None:
        check_numbers(self, "reference.")
        for mix in (self.sources, self.sources_end or {}):
            unknown = sorted(set(mix) - set(SOURCES))
            if unknown:
                raise ConfigError(
                    f"reference sources: unknown {', '.join(unknown)} (known: {', '.join(SOURCES)})"
                )
            if any(w < 0 for w in mix.values()):
                raise ConfigError("reference sources: weights must be >= 0")
        if sum(self.sources.values()) <= 0 or (
            self.sources_end is not None and sum(self.sources_end.values()) <= 0
        ):
            raise ConfigError("reference sources: the weights must not all be zero")
        if self.curriculum_steps < 0:
            raise ConfigError("reference.curriculum_steps must be >= 0")
        if not 0 <= self.synthetic_start_strength <= 1:
            raise ConfigError("reference.synthetic_start_strength must be in [0, 1]")

    @classmethod
    def from_dict(cls, raw: dict) -> "ReferenceConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"reference: unknown key(s) {', '.join(unknown)}")
        return cls(**{**raw, "synthetic": config_from_dict(raw.get("synthetic", {}))})

    def _progress(self, step: int) -> float:
        return min(1.0, step / self.curriculum_steps) if self.curriculum_steps else 1.0

    def probabilities(self, step: int) -> list[float]:
        """Probabilities of `SOURCES` at `step`."""
        start = [self.sources.get(name, 0.0) for name in SOURCES]
        start = [w / sum(start) for w in start]
        if self.sources_end is None:
            return start
        end = [self.sources_end.get(name, 0.0) for name in SOURCES]
        end = [w / sum(end) for w in end]
        t = self._progress(step)
        return [a + (b - a) * t for a, b in zip(start, end, strict=True)]

    def synthetic_at(self, step: int) -> SyntheticReferenceConfig:
        """The synthetic distortion ranges in force at `step`."""
        start = self.synthetic_start_strength
        return self.synthetic.scaled(start + (1 - start) * self._progress(step))


@dataclass(frozen=True)
class CropPlan:
    """Everything random about one training sample, drawn before any pixel is touched."""

    index: int
    top: int
    left: int
    flip_h: bool
    flip_v: bool
    rotate: bool
    source: str
    distortion: Distortion | None = None
    donor: tuple[int, int, int] | None = None  # (index, top, left) lending texture
    sensor: SensorModel = BICUBIC
    """How this sample's LR is made: BICUBIC keeps the data set's own LR."""
    noise_seed: int = 0
    told: SensorModel | None = None
    """The blur the model is told and the reference is blurred by, as `sr` would assume
    it from an erring estimate (`TrainingDraws.told_error`); None: `sensor`'s own."""

    @property
    def assumed(self) -> SensorModel:
        return self.sensor if self.told is None else self.told


def _crop(
    image: torch.Tensor, at: tuple[int, int], scale: int, lr_crop: int, device: torch.device
) -> torch.Tensor:
    """A crop with its context, in [0, 1] on `device`, from a padded image `scale` times
    the LR's size, at LR position at = (top, left)."""
    top, left = at
    size = scale * (lr_crop + 2 * CONTEXT_LR)
    crop = image[:, scale * top : scale * top + size, scale * left : scale * left + size]
    return crop.to(device, non_blocking=True).float() / 255


def _pad(image: np.ndarray, pad: int) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x (H + 2 pad) x (W + 2 pad) uint8, edges replicated."""
    chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return F.pad(chw[None].float(), (pad,) * 4, mode="replicate")[0].round().byte()


class RefSRDataset(torch.utils.data.Dataset):
    """Five-tuples (LR, LR_UX4, Ref, Ref_DUX4, HR) in [0, 1], decoded once and kept."""

    def __init__(
        self, samples: list[Sample], co_register: bool = True, sensor: SensorModel = BICUBIC
    ) -> None:
        """`co_register`: move each real reference and each other date's HR onto the
        sample by the translation phase correlation finds (`registration`), as `sr`
        does with a reference; synthetic references are moved the same way per crop.
        `sensor`: whole samples' LR (validation, evaluation) is made from the HR by this
        sensor model (noise seeded by the sample's position), not read from LR/; the
        references are then degraded the same way (`sensor.reference_dux4`)."""
        self.samples = samples
        self.sensor = sensor
        self.images = [(_read_rgb(s.lr), _read_rgb(s.ref), _read_rgb(s.hr)) for s in samples]
        for index, (sample, (lr, ref, hr)) in enumerate(zip(samples, self.images, strict=True)):
            if hr.shape != ref.shape or hr.shape[:2] != (SCALE * lr.shape[0], SCALE * lr.shape[1]):
                raise InputError(
                    f"{sample.folder}/*/{sample.hr.name}: HR, Ref and 4x LR sizes differ"
                )
            if not sensor.is_bicubic:
                made = degrade(_to_tensor(hr)[None], sensor, seed=index)[0]
                self.images[index] = (_to_uint8(made), ref, hr)
        # The same place on other dates: same file name, another folder, same size.
        by_name: dict[str, list[int]] = {}
        for index, sample in enumerate(samples):
            by_name.setdefault(sample.name, []).append(index)
        self.other_dates = [
            [
                j
                for j in by_name[sample.name]
                if samples[j].folder != sample.folder
                and self.images[j][2].shape == self.images[index][2].shape
            ]
            for index, sample in enumerate(samples)
        ]
        self.co_register = co_register
        # Each sample's real reference moved onto its LR, as `sr` moves a reference onto
        # the scene (`registration`); other dates' HRs are moved when training needs them.
        if co_register:
            for index, (lr, ref, hr) in enumerate(self.images):
                aligned = co_registered(self._lr_ux4(index), _to_tensor(ref))[0]
                self.images[index] = (lr, _to_uint8(aligned), hr)

    def __len__(self) -> int:
        return len(self.samples)

    @functools.cached_property
    def _padded(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(LR, Ref, HR) with CONTEXT_LR of replicated edge, for training crops only
        (validation and evaluation read whole images and never need it)."""
        context_hr = SCALE * CONTEXT_LR
        return [
            (_pad(lr, CONTEXT_LR), _pad(ref, context_hr), _pad(hr, context_hr))
            for lr, ref, hr in self.images
        ]

    def _lr_ux4(self, index: int) -> torch.Tensor:
        return upsample_4x(_to_tensor(self.images[index][0])[None])[0]

    @functools.cached_property
    def _padded_other_dates(self) -> dict[tuple[int, int], torch.Tensor]:
        """(sample, other date) -> the other date's HR, moved onto the sample when
        co-registering, with the HR's context: for training crops only (validation and
        evaluation never use other dates, so they never pay for the registration)."""
        context_hr = SCALE * CONTEXT_LR
        return {
            (index, other): _pad(_to_uint8(self.other_date_reference(index, other)), context_hr)
            for index, others in enumerate(self.other_dates)
            for other in others
        }

    def other_date_reference(self, index: int, other: int) -> torch.Tensor:
        """Sample `other`'s HR, the same place on another date (`other_dates`), as a
        reference for sample `index`: 3 x H x W in [0, 1], moved onto the sample when
        co-registering, as `sr` moves a reference onto the scene."""
        hr_other = _to_tensor(self.images[other][2])
        if self.co_register:
            hr_other = co_registered(self._lr_ux4(index), hr_other)[0]
        return hr_other

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """The whole sample, unaugmented (validation, evaluation)."""
        lr, ref, hr = (_to_tensor(a)[None] for a in self.images[index])
        return {
            "LR": lr[0],
            "LR_UX4": upsample_4x(lr)[0],
            "Ref": ref[0],
            "Ref_DUX4": reference_dux4(ref, self.sensor)[0],
            "HR": hr[0],
        }

    def _draw_crop(self, lr_crop: int, generator: torch.Generator) -> tuple[int, int, int]:
        """(image index, top, left) of a random LR crop."""
        index = int(torch.randint(0, len(self), (1,), generator=generator))
        lr_h, lr_w = self.images[index][0].shape[:2]
        top = int(torch.randint(0, lr_h - lr_crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, lr_w - lr_crop + 1, (1,), generator=generator))
        return index, top, left

    def plan(
        self,
        lr_crop: int,
        generator: torch.Generator,
        reference: ReferenceConfig,
        step: int,
        degradation: TrainingDraws | None = None,
    ) -> CropPlan:
        """Draw one sample: image, crop, flips, reference source and its distortion,
        and with `degradation` the sensor model that makes its LR and, with a told
        error, the blur the model is told (drawn last, in that order, so that without
        them the draws are those of earlier versions)."""
        index, top, left = self._draw_crop(lr_crop, generator)
        flip_h, flip_v, rotate = (torch.rand(3, generator=generator) < 0.5).tolist()
        probabilities = torch.tensor(reference.probabilities(step), dtype=torch.float64)
        source = SOURCES[int(torch.multinomial(probabilities, 1, generator=generator))]
        if source == "other_date" and not self.other_dates[index]:
            source = "real"
        distortion = donor = None
        if source == "other_date":
            choices = self.other_dates[index]
            index_other = choices[int(torch.randint(0, len(choices), (1,), generator=generator))]
            donor = (index_other, top, left)
        elif source == "synthetic":
            distortion = draw_distortion(reference.synthetic_at(step), generator)
            donor = self._draw_crop(lr_crop, generator)
        sensor, noise_seed, told = BICUBIC, 0, None
        if degradation is not None:
            sensor = degradation.draw(generator)
            noise_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            if degradation.tells_errors:
                told = assumed_sensor(degradation.told_blur(sensor, generator))
        return CropPlan(
            index,
            top,
            left,
            flip_h,
            flip_v,
            rotate,
            source,
            distortion,
            donor,
            sensor,
            noise_seed,
            told,
        )

    def build(
        self, plans: list[CropPlan], lr_crop: int, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """The batch for `plans`: context crops cut on the CPU, degraded on `device`.
        A plan's sensor model makes its LR from the HR crop with its context (BICUBIC
        keeps the data set's LR); its reference is degraded by the blur the model is
        told (`CropPlan.assumed`), `blur` holds that blur's `SensorModel.blur_code`, and
        `Replaced` (N x 1 x H x W) how much of each reference pixel a synthetic
        reference took from another place or a cloud (0 for the other sources), for the
        relevance loss."""
        device = torch.device(device)
        padded = self._padded
        hr = torch.stack(
            [_crop(padded[p.index][2], (p.top, p.left), SCALE, lr_crop, device) for p in plans]
        )
        lr = torch.stack(
            [
                _crop(padded[p.index][0], (p.top, p.left), 1, lr_crop, device)
                if p.sensor.is_bicubic
                else degrade(hr[k : k + 1], p.sensor, p.noise_seed)[0].to(device)
                for k, p in enumerate(plans)
            ]
        )
        lr_ux4 = upsample_4x(lr)
        refs = []
        replaced = torch.zeros_like(hr[:, :1])
        for k, plan in enumerate(plans):
            if plan.source == "real":
                image = padded[plan.index][1]
                refs.append(_crop(image, (plan.top, plan.left), SCALE, lr_crop, device))
            elif plan.source == "other_date":
                image = self._padded_other_dates[plan.index, plan.donor[0]]
                refs.append(_crop(image, (plan.top, plan.left), SCALE, lr_crop, device))
            elif plan.source == "synthetic":
                index, top, left = plan.donor
                donor = _crop(padded[index][2], (top, left), SCALE, lr_crop, device)
                ref = synthesize(hr[k], plan.distortion, donor)
                share = replaced_share(plan.distortion, *hr.shape[-2:], device)
                if self.co_register:
                    ref, shift = co_registered(lr_ux4[k], ref)
                    if share is not None:
                        share = shifted(share, *shift.applied, torch.zeros_like(share))
                if share is not None:
                    replaced[k] = share
                refs.append(ref)
            else:
                refs.append(lr_ux4[k])
        ref = torch.stack(refs)
        ref_dux4 = torch.cat(
            [reference_dux4(ref[k : k + 1], plan.assumed) for k, plan in enumerate(plans)]
        )
        c, s = CONTEXT_LR, SCALE * CONTEXT_LR
        batch = {
            "LR": lr[..., c:-c, c:-c],
            "LR_UX4": lr_ux4[..., s:-s, s:-s],
            "Ref": ref[..., s:-s, s:-s],
            "Ref_DUX4": ref_dux4[..., s:-s, s:-s],
            "HR": hr[..., s:-s, s:-s],
            "Replaced": replaced[..., s:-s, s:-s],
        }
        augmented = {
            key: torch.stack([_augment(image[k], plan) for k, plan in enumerate(plans)])
            for key, image in batch.items()
        }
        blur = torch.tensor([plan.assumed.blur_code for plan in plans], device=device)
        return {**augmented, "blur": blur}

    def batch(
        self,
        size: int,
        lr_crop: int,
        seed: int,
        step: int,
        reference: ReferenceConfig | None = None,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        degradation: TrainingDraws | None = None,
    ) -> dict[str, torch.Tensor]:
        """This rank's share of the global training batch of `step`.

        Sample k of the global batch is a pure function of (seed, step, k); rank r of
        `world_size` takes samples [r * size / world_size, (r + 1) * size / world_size),
        so one process with the global batch computes what all ranks compute together."""
        if size % world_size:
            raise ConfigError(f"batch_size {size} is not divisible by {world_size} processes")
        reference = reference or ReferenceConfig()
        share = size // world_size
        plans = []
        for k in range(rank * share, (rank + 1) * share):
            generator = torch.Generator().manual_seed((seed * 1_000_003 + step) * 65_537 + k)
            plans.append(self.plan(lr_crop, generator, reference, step, degradation))
        return self.build(plans, lr_crop, device)


def _augment(image: torch.Tensor, plan: CropPlan) -> torch.Tensor:
    """The plan's flips and 90-degree transpose (all images of a sample get the same)."""
    if plan.flip_h:
        image = image.flip(-1)
    if plan.flip_v:
        image = image.flip(-2)
    if plan.rotate:
        image = image.transpose(-1, -2)
    return image
