"""Wald's protocol for a multispectral scene: degrade it 4x, super-resolve it back,
compare with the original, band by band and over bands.

A real scene has no 4x truth. Wald et al. (1997) score a fusion method by applying it
one scale down: the scene, degraded 4x as the sensor would (here the project's
`EVALUATION_SENSOR`: PSF, area integration, noise, 8 bits, JPEG), is the input, and
the scene itself is the truth. Scores are on the 8-bit scale with a 4-pixel border
left out, as the RRSGAN authors score RGB:

- PSNR per band;
- SAM, the mean spectral angle between the output's and the truth's pixel vectors,
  in degrees (0: every pixel's spectrum has the right shape);
- ERGAS, 100 / 4 * sqrt(mean over bands of (RMSE_b / mean_b)^2): the relative error
  over bands, lower is better.
"""

from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from rrsgan_geo.errors import InputError
from rrsgan_geo.model.degradation import upsample_4x
from rrsgan_geo.model.sensor import EVALUATION_SENSOR, SensorModel, degrade
from rrsgan_geo.upscaling import SCALE

BORDER = 4


def degrade_scene(
    scene_path: Path, lr_path: Path, sensor: SensorModel = EVALUATION_SENSOR
) -> np.ndarray:
    """Write `scene_path` (uint8) degraded 4x by `sensor` to `lr_path`, a GeoTIFF on the
    4x coarser grid with the scene's CRS and band descriptions, and return the truth:
    the scene in [0, 1], bands x H x W, cropped to a multiple of 4. Each band is
    degraded alone (grey JPEG), with its own noise seed."""
    with rasterio.open(scene_path) as scene:
        if any(dtype != "uint8" for dtype in scene.dtypes):
            raise InputError(f"{scene_path.name}: Wald's protocol here takes uint8 scenes")
        height, width = (scene.height // SCALE) * SCALE, (scene.width // SCALE) * SCALE
        if height < 4 * SCALE or width < 4 * SCALE:
            raise InputError(f"{scene_path.name}: too small for a 4x degradation")
        truth = scene.read(window=((0, height), (0, width))).astype(np.float32) / 255
        profile = {
            "driver": "GTiff",
            "count": scene.count,
            "dtype": "uint8",
            "crs": scene.crs,
            "width": width // SCALE,
            "height": height // SCALE,
            "transform": scene.transform @ Affine.scale(SCALE),
        }
        descriptions = scene.descriptions
        colours = scene.colorinterp
    lr = torch.cat(
        [
            degrade(torch.from_numpy(band)[None, None], sensor, seed=index)
            for index, band in enumerate(truth)
        ],
        dim=1,
    )[0]
    with rasterio.open(lr_path, "w", **profile) as out:
        out.write((lr.numpy() * 255).round().astype(np.uint8))
        out.descriptions = descriptions
        out.colorinterp = colours
    return truth


def bicubic_of(lr_path: Path) -> np.ndarray:
    """The LR's bicubic 4x (the baseline), bands x 4h x 4w in [0, 1]."""
    with rasterio.open(lr_path) as lr:
        values = torch.from_numpy(lr.read().astype(np.float32) / 255)
    return upsample_4x(values[None])[0].numpy()


def spectral_scores(output: np.ndarray, truth: np.ndarray) -> dict[str, object]:
    """PSNR per band, SAM (degrees) and ERGAS of `output` against `truth` (both bands x
    H x W in [0, 1]), on 8-bit values with `BORDER` pixels left out."""
    out = _saved(output)
    ref = _saved(truth)
    errors = ((out - ref) ** 2).mean(axis=(1, 2))
    psnrs = [float(10 * np.log10(255**2 / max(error, 1e-12))) for error in errors]
    dot = (out * ref).sum(axis=0)
    norms = np.linalg.norm(out, axis=0) * np.linalg.norm(ref, axis=0)
    cosine = np.clip(dot / np.maximum(norms, 1e-12), -1, 1)
    sam = float(np.degrees(np.arccos(cosine)).mean())
    means = ref.mean(axis=(1, 2))
    ergas = float(100 / SCALE * np.sqrt(np.mean(errors / np.maximum(means, 1e-12) ** 2)))
    return {"psnr": psnrs, "sam_degrees": sam, "ergas": ergas}


def _saved(image: np.ndarray) -> np.ndarray:
    cropped = image[:, BORDER:-BORDER, BORDER:-BORDER]
    return np.round(np.clip(cropped, 0, 1) * 255).astype(np.float64)
