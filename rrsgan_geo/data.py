"""RRSSRD-style training data: five aligned images per sample.

A folder holds `HR/`, `LR/` and `Ref/` (or the authors' `google_Ref/`) with the same
file names. LR_UX4 and Ref_DUX4 are not read from disk: they are made here with the
same degradation helper `sr` uses, so training sees exactly what inference will.
Samples are drawn as a pure function of (seed, step), which makes resuming exact.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rrsgan_geo.degradation import down_up_4x, upsample_4x
from rrsgan_geo.errors import InputError
from rrsgan_geo.model import SCALE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
REF_FOLDERS = ("Ref", "google_Ref")
# RRSSRD names a zoom-18 web-map tile and a sub-crop: L18_<x>_<y>_s<k>.
_L18 = re.compile(r"L18_(\d+)_(\d+)_s\d+")


def _read_rgb(path: Path) -> np.ndarray:
    """H x W x 3 uint8."""
    if path.suffix.lower() in {".tif", ".tiff"}:
        import rasterio

        with rasterio.open(path) as dataset:
            return np.moveaxis(dataset.read((1, 2, 3)), 0, -1)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float() / 255.0


@dataclass(frozen=True)
class Sample:
    name: str
    folder: Path
    hr: Path
    lr: Path
    ref: Path


def find_samples(folder: Path) -> list[Sample]:
    folder = Path(folder)
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


class RefSRDataset(torch.utils.data.Dataset):
    """Five-tuples (LR, LR_UX4, Ref, Ref_DUX4, HR) in [0, 1], decoded once and kept."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples
        self.images = [(_read_rgb(s.lr), _read_rgb(s.ref), _read_rgb(s.hr)) for s in samples]
        for sample, (lr, ref, hr) in zip(samples, self.images, strict=True):
            if hr.shape != ref.shape or hr.shape[:2] != (SCALE * lr.shape[0], SCALE * lr.shape[1]):
                raise InputError(
                    f"{sample.folder}/*/{sample.hr.name}: HR, Ref and 4x LR sizes differ"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """The whole sample, unaugmented (validation, evaluation)."""
        lr, ref, hr = (_to_tensor(a)[None] for a in self.images[index])
        return {
            "LR": lr[0],
            "LR_UX4": upsample_4x(lr)[0],
            "Ref": ref[0],
            "Ref_DUX4": down_up_4x(ref)[0],
            "HR": hr[0],
        }

    def random_crop(
        self, index: int, lr_crop: int, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """An aligned random crop with the same flips and 90-degree rotation on all five.

        LR_UX4 and Ref_DUX4 are made from the whole images before cropping, so a crop's
        borders hold the same values as inside a larger image."""
        whole = self[index]
        lr_h, lr_w = whole["LR"].shape[-2:]
        top = int(torch.randint(0, lr_h - lr_crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, lr_w - lr_crop + 1, (1,), generator=generator))
        flip_h, flip_v, rotate = (torch.rand(3, generator=generator) < 0.5).tolist()
        crop = {}
        for key, image in whole.items():
            s = 1 if key == "LR" else SCALE
            image = image[:, s * top : s * (top + lr_crop), s * left : s * (left + lr_crop)]
            if flip_h:
                image = image.flip(-1)
            if flip_v:
                image = image.flip(-2)
            if rotate:
                image = image.transpose(-1, -2)
            crop[key] = image
        return crop

    def batch(self, size: int, lr_crop: int, seed: int, step: int) -> dict[str, torch.Tensor]:
        """The training batch of `step`: a pure function of (seed, step)."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        indices = torch.randint(0, len(self), (size,), generator=generator).tolist()
        crops = [self.random_crop(i, lr_crop, generator) for i in indices]
        return {key: torch.stack([c[key] for c in crops]) for key in crops[0]}
