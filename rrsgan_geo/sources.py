"""Reading the model's inputs: the scene's LR window and the references' windows.

Tiles are read a strip at a time (consecutive tiles of one tile row, as one window), so
the overlap that neighbouring tiles share is read and warped once rather than per tile.
The LR is read from a scene virtually padded by reflection at its edges, so every tile
sees the same context a whole-scene pass would. The reference is never loaded whole:
a WarpedVRT brings it onto the (padded) SR grid by coordinates and each strip reads its
window of it, with a validity mask.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.fill import fillnodata
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from rrsgan_geo.errors import InputError
from rrsgan_geo.grids import RasterGrid
from rrsgan_geo.locations import HttpOptions, display_name, gdal_path
from rrsgan_geo.model import SCALE
from rrsgan_geo.rasters import (
    GDAL_ERRORS,
    band_validity,
    gdal_message,
    georeferenced_grid,
    to_model_bands,
    warp_to_grid,
)
from rrsgan_geo.scaling import ValueScaling
from rrsgan_geo.tile_services import retried, tolerating_server_errors
from rrsgan_geo.tiling import Tile, TileLayout


def _read_reflected(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], window: Window
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a window that may stick out of the raster, reflecting at its edges.
    Returns (bands x H x W values, their validity per band or None if all valid)."""
    row_off, col_off = int(window.row_off), int(window.col_off)
    height, width = int(window.height), int(window.width)
    r0, r1 = max(row_off, 0), min(row_off + height, dataset.height)
    c0, c1 = max(col_off, 0), min(col_off + width, dataset.width)
    inside = Window(c0, r0, c1 - c0, r1 - r0)
    pads = ((r0 - row_off, row_off + height - r1), (c0 - col_off, col_off + width - c1))
    values = np.pad(dataset.read(bands, window=inside), ((0, 0), *pads), mode="symmetric")
    valid = band_validity(dataset, bands, inside)
    return values, None if valid is None else np.pad(valid, ((0, 0), *pads), mode="symmetric")


@contextmanager
def _naming_failures(what: str, location: str) -> Iterator[None]:
    try:
        yield
    except GDAL_ERRORS as error:
        message = gdal_message(error)
        raise InputError(f"reading {what} {display_name(location)} failed: {message}") from None


@dataclass
class Strip:
    """Consecutive tiles of one tile row with their inputs, read as one window, before
    the degradations. Arrays are float32 in [0, 1]; tile i's LR columns start at
    i * step (its SR columns at 4 * i * step)."""

    tiles: list[Tile]
    step: int
    size: int
    """LR pixels a tile reads along each axis (tile + 2 margins)."""
    lr: np.ndarray
    """3 x size x W, masked pixels filled from their valid neighbours."""
    lr_valid: np.ndarray | None
    """size x W, where any band is valid (rasterio's dataset_mask); None when all are."""
    ref: np.ndarray | None
    """3 x 4 size x 4 W, None when the strip has no valid reference pixel."""
    ref_valid: np.ndarray | None
    """4 size x 4 W."""

    def lr_columns(self, index: int) -> slice:
        return slice(index * self.step, index * self.step + self.size)

    def sr_columns(self, index: int) -> slice:
        return slice(index * self.step * SCALE, (index * self.step + self.size) * SCALE)

    def is_empty(self, index: int) -> bool:
        """Whether tile `index` has no valid LR pixel (it is not run through the model)."""
        return self.lr_valid is not None and not self.lr_valid[:, self.lr_columns(index)].any()

    @cached_property
    def kept(self) -> list[int]:
        """The tiles that have valid LR pixels, which the model runs, in order."""
        return [index for index in range(len(self.tiles)) if not self.is_empty(index)]


class TileReader:
    """Reads strips of tiles. Holds its own dataset handles: use one per thread."""

    def __init__(
        self,
        scene_path: str,
        scene_bands: tuple[int, ...],
        scene_scaling: ValueScaling,
        layout: TileLayout,
        references: "tuple[ReferenceSpec, ...]" = (),
        window: Window | None = None,
        http: HttpOptions | None = None,
    ) -> None:
        """`window`: the part of the scene processed (tile offsets are relative to it;
        context beyond it is read from the scene where the scene has it)."""
        self.scene_path = scene_path
        self.scene = rasterio.open(gdal_path(scene_path))
        self.scene_bands = scene_bands
        self.scaling = scene_scaling
        self.layout = layout
        window = window or Window(0, 0, self.scene.width, self.scene.height)
        self.row0, self.col0 = int(window.row_off), int(window.col_off)
        scene_grid = georeferenced_grid(self.scene, "scene").shifted(
            self.col0, self.row0, window.width, window.height
        )
        self.http = http or HttpOptions()
        self.warp_args = (scene_grid, layout)
        self.references = [(spec, spec.view(spec.path, *self.warp_args)) for spec in references]
        # Tile services seen tolerating server errors, opened on a first failure.
        self.lenient: dict[int, WarpedView] = {}
        self.server_errors = 0
        """Strip reads of a tile service that still failed after the retries."""

    def read(self, tiles: list[Tile]) -> Strip:
        """The inputs of consecutive tiles of one tile row. A read that fails (a server
        gone, a truncated file) is an InputError naming the raster, never a traceback."""
        first, last = tiles[0], tiles[-1]
        size = self.layout.lr_tile_size
        if any(tile.row != first.row for tile in tiles) or len(tiles) != last.col - first.col + 1:
            raise ValueError("a strip is consecutive tiles of one tile row")
        width = last.lr_col_off - first.lr_col_off + size
        window = Window(self.col0 + first.lr_col_off, self.row0 + first.lr_row_off, width, size)
        with _naming_failures("scene", self.scene_path):
            values, valid = _read_reflected(self.scene, self.scene_bands, window)
        if valid is not None:
            # Each band's holes are filled from that band's valid neighbours only.
            values = np.stack(
                [
                    fillnodata(band, mask=band_valid.astype(np.uint8))
                    if band_valid.any() and not band_valid.all()
                    else band
                    for band, band_valid in zip(values, valid, strict=True)
                ]
            )
            valid = valid.any(axis=0)
        lr = to_model_bands(self.scaling.to_unit(values))
        ref, ref_valid = self._read_references(first, width)
        return Strip(tiles, self.layout.tile, size, lr, valid, ref, ref_valid)

    def _read_references(
        self, first: Tile, lr_width: int
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The strip's window of each reference, composited: the first valid pixel wins
        (references are listed best-covering first)."""
        # The VRT grid starts one margin before the scene: tile offsets shift by it.
        window = Window(
            (first.lr_col_off + self.layout.margin) * SCALE,
            (first.lr_row_off + self.layout.margin) * SCALE,
            lr_width * SCALE,
            self.layout.lr_tile_size * SCALE,
        )
        ref, ref_valid = None, None
        for index, (spec, view) in enumerate(self.references):
            with _naming_failures("reference", spec.path):
                values, valid = self._read_reference(index, view, window)
            if ref_valid is not None:
                valid &= ~ref_valid
            if not valid.any():
                continue
            values = to_model_bands(spec.scaling.to_unit(values))
            if ref is None:
                ref, ref_valid = values, valid
            else:
                ref[:, valid] = values[:, valid]
                ref_valid |= valid
        return ref, ref_valid

    def _read_reference(
        self, index: int, view: "WarpedView", window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        """A tile service's read is retried on failure (GDAL does not retry its tile
        requests; tiles already fetched are not asked again), then done once more with
        failing tiles as missing reference, and counted in `server_errors`."""
        spec = self.references[index][0]
        lenient = tolerating_server_errors(spec.path)
        if lenient is None:
            return spec.read(view, window)

        def tolerating() -> tuple[np.ndarray, np.ndarray]:
            if index not in self.lenient:
                self.lenient[index] = spec.view(lenient, *self.warp_args)
            self.server_errors += 1
            return spec.read(self.lenient[index], window)

        return retried(lambda: spec.read(view, window), self.http, tolerating)

    def close(self) -> None:
        for view in [*(view for _, view in self.references), *self.lenient.values()]:
            view.close()
        self.scene.close()


@dataclass(frozen=True)
class ReferenceSpec:
    """One reference source: which file, which bands, how its values scale, how it is
    resampled. A scene may have several (a folder of tiles, mixed CRSs)."""

    path: str
    """A file, a GDAL /vsi path or a URL (see `locations`)."""
    bands: tuple[int, ...]
    scaling: ValueScaling
    resampling: Resampling
    offset: tuple[int, int] = (0, 0)
    """(rows, cols) of the SR grid to move the reference by (down, right) so that it lies
    on the scene (`co_registration`)."""

    def warped(
        self, source: rasterio.io.DatasetReader, scene: RasterGrid, layout: TileLayout
    ) -> WarpedVRT:
        """The reference on the SR grid padded to every tile's extent, moved by `offset`:
        pixel (r, c) of the view shows what the reference has at (r - rows, c - cols)."""
        margin_sr = layout.margin * SCALE
        rows, cols = self.offset
        padded = scene.scaled_up().shifted(
            -margin_sr - cols,
            -margin_sr - rows,
            (layout.cols * layout.tile + 2 * layout.margin) * SCALE,
            (layout.rows * layout.tile + 2 * layout.margin) * SCALE,
        )
        return warp_to_grid(source, padded, self.resampling)

    def view(self, location: str, scene: RasterGrid, layout: TileLayout) -> "WarpedView":
        """Open `location` (this reference, or a variant of it) as a WarpedView."""
        source = rasterio.open(gdal_path(location))
        vrt = self.warped(source, scene, layout)
        return WarpedView(source, vrt, vrt.colorinterp[-1] == ColorInterp.alpha)

    def read(self, view: "WarpedView", window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(this reference's bands, where they are valid) in `window` of the view."""
        vrt = view.vrt
        if view.alpha:  # one read: warped once
            data = vrt.read([*self.bands, vrt.count], window=window)
            return data[:-1], data[-1] > 0
        return vrt.read(self.bands, window=window), vrt.dataset_mask(window=window) > 0


@dataclass
class WarpedView:
    """A reference source and its view on the padded SR grid. Whether the view's last
    band is alpha is asked of GDAL once, when it opens: after a read that failed (a
    tile server's error) GDAL's pending error would be raised again by the next
    metadata call, turning one failed fetch into several."""

    source: rasterio.io.DatasetReader
    vrt: WarpedVRT
    alpha: bool

    def close(self) -> None:
        self.vrt.close()
        self.source.close()
