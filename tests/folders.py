"""A small RRSSRD-style folder generated from the CC0 NEON image (for training tests)."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rrsgan_geo.model.degradation import downsample_4x
from tests.rasters import neon_path


def make_refsr_folder(root: Path, count: int = 4, hr_size: int = 64) -> Path:
    """HR crops of the NEON mosaic, LR = the shared degradation of HR, Ref = the HR crop
    shifted by a few pixels and recoloured (a stand-in for another date)."""
    import rasterio

    with rasterio.open(neon_path()) as src:
        image = src.read()
    for folder in ("HR", "LR", "Ref"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        top, left = 40 + 70 * index, 30 + 50 * index
        hr = image[:, top : top + hr_size, left : left + hr_size]
        ref = image[:, top + 3 : top + 3 + hr_size, left + 2 : left + 2 + hr_size]
        ref = np.clip(ref.astype(np.float32) * 0.9 + 10, 0, 255).astype(np.uint8)
        hr_tensor = torch.from_numpy(hr).float()[None] / 255
        lr = (downsample_4x(hr_tensor)[0].numpy() * 255).round().astype(np.uint8)
        name = f"L18_{112456 + 8 * index * 40}_{217112}_s{index:03d}.png"
        for folder, array in (("HR", hr), ("LR", lr), ("Ref", ref)):
            Image.fromarray(array.transpose(1, 2, 0)).save(root / folder / name)
    return root
