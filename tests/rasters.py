"""Small real GeoTIFFs for the tests, written with rasterio from the CC0 NEON image
shipped in examples/data (so the suite runs in full on a fresh clone)."""

from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from tests.conftest import REPO

# NEON OSBS_029 (CC0): 400 x 400 RGB uint8, 0.1 m, EPSG:32617, nodata 255.
NEON = REPO / "examples" / "data" / "osbs_029_0.1m_utm17n.tif"


def neon_path() -> Path:
    return NEON


def read_unit(path: Path) -> torch.Tensor:
    """An 8-bit raster as a bands x H x W float tensor in [0, 1]."""
    with rasterio.open(path) as src:
        return torch.from_numpy(src.read().astype(np.float32) / 255)


def write_raster(path: Path, data: np.ndarray, crs, transform: Affine | None, **extra) -> Path:
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype,
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)
    return path


def lr_scene(path: Path, factor: int = 4, window_px: int | None = None) -> Path:
    """The NEON image averaged down `factor`x: a real LR scene on a real UTM grid."""
    with rasterio.open(neon_path()) as src:
        size = window_px or src.width
        data = src.read(
            window=rasterio.windows.Window(0, 0, size, size),
            out_shape=(3, size // factor, size // factor),
            resampling=Resampling.average,
        )
        transform = src.transform @ Affine.scale(factor)
        return write_raster(path, data, src.crs, transform, nodata=src.nodata)


def reprojected(src: rasterio.io.DatasetReader, dst_crs) -> tuple[np.ndarray, Affine]:
    """The whole raster warped (bilinear) onto a default grid in `dst_crs`."""
    transform, width, height = calculate_default_transform(
        src.crs, dst_crs, src.width, src.height, *src.bounds
    )
    data = np.zeros((src.count, height, width), dtype=src.dtypes[0])
    reproject(
        src.read(),
        data,
        src_transform=src.transform,
        src_crs=src.crs,
        dst_transform=transform,
        dst_crs=dst_crs,
        resampling=Resampling.bilinear,
    )
    return data, transform


def mercator_reference(path: Path, shift_east_m: float = 0.0, crop_right: float = 0.0) -> Path:
    """The NEON image warped to EPSG:3857 and shifted east by a known distance; the
    right `crop_right` fraction of it is dropped (for partial-coverage tests)."""
    with rasterio.open(neon_path()) as src:
        data, transform = reprojected(src, CRS.from_epsg(3857))
    height, width = data.shape[1:]
    # Mercator metres are stretched by 1/cos(latitude) against ground metres.
    lat = 29.68
    shifted = Affine.translation(shift_east_m / np.cos(np.radians(lat)), 0) @ transform
    keep = int(round(width * (1 - crop_right)))
    return write_raster(path, data[:, :, :keep], "EPSG:3857", shifted)
