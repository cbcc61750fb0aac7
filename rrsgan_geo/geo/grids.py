"""Pixel grids: the scene's LR grid and the SR grid derived from it."""

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform
from shapely.geometry import Polygon

from rrsgan_geo.errors import InputError
from rrsgan_geo.upscaling import SCALE

_EDGE_POINTS = 32  # per side, so a reprojected footprint follows curved edges


def transform_coords(source: CRS, target: CRS, xs, ys) -> tuple[list[float], list[float]]:
    """Coordinates moved from one CRS to another; an InputError naming both when they
    cannot be related (a Mars GEOGCS and an Earth one, a LOCAL_CS and anything)."""
    try:
        return transform(source, target, xs, ys)
    except (CPLE_BaseError, CRSError):
        raise InputError(
            f"cannot relate CRS {_crs_name(source)} to {_crs_name(target)}: the scene and "
            "the reference must be in CRSs of the same body that can be transformed"
        ) from None


def _crs_name(crs: CRS) -> str:
    """EPSG:n, else the CRS's name from its WKT ('Mars 2000')."""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else repr(crs.wkt.split('"')[1])


@dataclass(frozen=True)
class RasterGrid:
    """A georeferenced pixel grid: CRS, affine transform, width and height."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    def scaled_up(self, factor: int = SCALE) -> "RasterGrid":
        """The grid `factor` times finer over the same extent.

        T * Affine.scale(1/f) keeps rotation and shear terms right, which scaling the
        pixel sizes alone would not.
        """
        return RasterGrid(
            self.crs,
            self.transform @ Affine.scale(1.0 / factor),
            self.width * factor,
            self.height * factor,
        )

    def shifted(self, col_off: int, row_off: int, width: int, height: int) -> "RasterGrid":
        """The grid of a window (offsets may be negative: a window past the edges)."""
        return RasterGrid(
            self.crs, self.transform @ Affine.translation(col_off, row_off), width, height
        )

    def centre(self) -> tuple[float, float]:
        """The grid's centre, in its CRS."""
        return self.transform @ (self.width / 2, self.height / 2)

    def pixel_size_in(self, crs: CRS, at: tuple[float, float]) -> float:
        """The side of this grid's pixel at point `at` (given in `crs`), measured in
        `crs` units: a reference's pixel as the scene's grid sees it (a Web Mercator
        metre is cos(latitude) ground metres). NaN where `at` has no place in this
        grid's CRS."""
        (x,), (y,) = transform_coords(crs, self.crs, [at[0]], [at[1]])
        t = self.transform
        xs, ys = [x, x + t.a, x + t.b], [y, y + t.d, y + t.e]  # a pixel's two sides
        (x0, x1, x2), (y0, y1, y2) = transform_coords(self.crs, crs, xs, ys)
        return float(np.sqrt(np.hypot(x1 - x0, y1 - y0) * np.hypot(x2 - x0, y2 - y0)))

    def footprint(self, crs: CRS | None = None) -> Polygon:
        """The grid's outline as a polygon, densified, in `crs` (default: its own)."""
        t = np.linspace(0.0, 1.0, _EDGE_POINTS, endpoint=False)
        w, h = self.width, self.height
        cols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
        rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
        xs, ys = self.transform @ (cols, rows)
        if crs is not None and crs != self.crs:
            xs, ys = transform_coords(self.crs, crs, xs, ys)
        return Polygon(zip(xs, ys, strict=True))


def on_sr_pixels(lr_values: np.ndarray) -> np.ndarray:
    """Values per LR pixel (... x H x W, a validity mask, say) on the SR grid: each
    repeated over the SCALE x SCALE SR pixels it covers."""
    return np.repeat(np.repeat(lr_values, SCALE, axis=-2), SCALE, axis=-1)
