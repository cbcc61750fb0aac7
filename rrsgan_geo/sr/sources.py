"""Reading the model's inputs: the scene's LR window and the references' windows.

Tiles are read a strip at a time (consecutive tiles of one tile row, as one window), so
the overlap that neighbouring tiles share is read and warped once rather than per tile.
The LR is read from a scene virtually padded by reflection at its edges, so every tile
sees the same context a whole-scene pass would. The reference is never loaded whole:
a WarpedVRT brings it onto the (padded) SR grid by coordinates and each strip reads its
window of it, with a validity mask, always block by block (`BLOCKWISE_WARPING`), and on
machines with few cores in column parts warped side by side (`ColumnSplitView`).
"""

import concurrent.futures
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.fill import fillnodata
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.geo.locations import HttpOptions, gdal_path, local_file
from rrsgan_geo.geo.rasters import (
    band_validity,
    georeferenced_grid,
    naming_read_failures,
    to_model_bands,
    warp_to_grid,
)
from rrsgan_geo.geo.scaling import ValueScaling
from rrsgan_geo.geo.tile_services import retried, tolerating_server_errors
from rrsgan_geo.sr.tiling import Tile, TileLayout
from rrsgan_geo.upscaling import SCALE

MAX_SPLIT_REFERENCES = 4
"""References a reader warps in column parts at most: a mosaic of many reference tiles
keeps one VRT each, so that open files stay one per tile (a folder of hundreds of
tiles would otherwise double them towards the process's limit)."""

BLOCKWISE_WARPING = {"GDAL_VRT_WARP_USE_DATASET_RASTERIO": "NO"}
"""GDAL configuration for reading the reference views: every window warped block by
block. Since GDAL 3.9 a WarpedVRT serves a request that spans its whole width through a
dataset-level warp, whose pixels differ from the block-by-block warp (the bundled
example: 15 % of pixels, up to 18 DN): a strip that happens to span the view, or a view
read in column parts (`ColumnSplitView`), would change the output, with the tiling
and with the machine's core count. Block by block, a pixel is what its block warps to."""


PREFETCH_BATCHES = 2
STRIP_TILES = 4
"""Tiles read, warped and degraded as one window at least, whatever the batch: fewer
repeat the overlaps neighbours share (pipeline-only, 512^2 LR, tiles of 128: 2.25-2.6x
the I/O floor one tile at a time, 1.9-2.1x four at a time)."""


def reader_threads() -> int:
    """Reader threads for this machine: half the cores (at most 8) read; the others run
    degradation, blending and writing.

    Warping is parallel across readers, each warping with GDAL's default single thread:
    measured on a 2048 x 2048 EPSG:3857 -> UTM warp read in strips, NUM_THREADS=2
    inside a WarpedVRT was slower (0.39 s) than one thread (0.31 s), its 512 x 128
    blocks being too small to share out."""
    cores = os.cpu_count() or 1
    return max(1, min(8, cores // 2))


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
    inside_values = dataset.read(bands, window=inside)
    valid = band_validity(dataset, bands, inside, inside_values)
    values = np.pad(inside_values, ((0, 0), *pads), mode="symmetric")
    return values, None if valid is None else np.pad(valid, ((0, 0), *pads), mode="symmetric")


def read_filled(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], window: Window
) -> tuple[np.ndarray, np.ndarray | None]:
    """`_read_reflected` with each band's holes filled from that band's valid
    neighbours only; what no neighbour reaches (a band without a valid pixel here, a
    hole wider than GDAL's search distance) becomes 0, never a NaN for the model."""
    values, valid = _read_reflected(dataset, bands, window)
    if valid is None:
        return values, None
    values = np.stack(
        [
            fillnodata(band, mask=band_valid.astype(np.uint8))
            if band_valid.any() and not band_valid.all()
            else band
            for band, band_valid in zip(values, valid, strict=True)
        ]
    )
    return np.where(valid | np.isfinite(values), values, 0), valid


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
    """Reads strips of tiles. Holds its own dataset handles: use one per thread. Read
    under GDAL's `BLOCKWISE_WARPING` configuration, as `pipeline.super_resolve` sets it
    with the HTTP options: without it a strip that spans the whole view is warped by
    another path and reads different pixels."""

    def __init__(
        self,
        scene_path: str,
        scene_bands: tuple[int, ...],
        scene_scaling: ValueScaling,
        layout: TileLayout,
        references: "tuple[ReferenceSpec, ...]" = (),
        window: Window | None = None,
        http: HttpOptions | None = None,
        column_parts: int = 1,
    ) -> None:
        """`window`: the part of the scene processed (tile offsets are relative to it;
        context beyond it is read from the scene where the scene has it).
        `column_parts`: threads that warp each reference side by side (`ColumnSplitView`:
        the reader's own and `column_parts - 1` helpers, shared by its references; up to
        `MAX_SPLIT_REFERENCES` local references)."""
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
        split = column_parts > 1 and len(references) <= MAX_SPLIT_REFERENCES
        self.helpers = [
            ThreadPoolExecutor(1, thread_name_prefix="rrsgan-warp")
            for _ in range(column_parts - 1 if split else 0)
        ]
        # Tile services seen tolerating server errors, opened on a first failure.
        self.lenient: dict[int, WarpedView | ColumnSplitView] = {}
        self.server_errors = 0
        """Strip reads of a tile service that still failed after the retries."""
        self.references: list[tuple[ReferenceSpec, WarpedView | ColumnSplitView]] = []
        try:
            for spec in references:
                self.references.append((spec, self._view(spec, spec.path)))
        except BaseException:  # a reference that fails to open leaves nothing open
            self.close()
            raise

    def _view(self, spec: "ReferenceSpec", location: str) -> "WarpedView | ColumnSplitView":
        helpers = self.helpers if spec.reads_in_parallel else None
        return spec.view(location, *self.warp_args, helpers)

    def read(self, tiles: list[Tile]) -> Strip:
        """The inputs of consecutive tiles of one tile row. A read that fails (a server
        gone, a truncated file) is an InputError naming the raster, never a traceback."""
        first, last = tiles[0], tiles[-1]
        size = self.layout.lr_tile_size
        if any(tile.row != first.row for tile in tiles) or len(tiles) != last.col - first.col + 1:
            raise ValueError("a strip is consecutive tiles of one tile row")
        width = last.lr_col_off - first.lr_col_off + size
        window = Window(self.col0 + first.lr_col_off, self.row0 + first.lr_row_off, width, size)
        with naming_read_failures("scene", self.scene_path):
            values, valid = read_filled(self.scene, self.scene_bands, window)
        if valid is not None:
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
            with naming_read_failures("reference", spec.path):
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
        self, index: int, view: "WarpedView | ColumnSplitView", window: Window
    ) -> tuple[np.ndarray, np.ndarray]:
        """A tile service's read is retried on failure (GDAL does not retry its tile
        requests; tiles already fetched are not asked again), then done once more with
        failing tiles as missing reference, and counted in `server_errors`."""
        spec = self.references[index][0]
        lenient = tolerating_server_errors(spec.path)
        if lenient is None:
            return view.read(spec.bands, window)

        def tolerating() -> tuple[np.ndarray, np.ndarray]:
            if index not in self.lenient:
                self.lenient[index] = self._view(spec, lenient)
            self.server_errors += 1
            return self.lenient[index].read(spec.bands, window)

        return retried(lambda: view.read(spec.bands, window), self.http, tolerating)

    def close(self) -> None:
        for view in [*(view for _, view in self.references), *self.lenient.values()]:
            view.close()
        for helper in self.helpers:
            helper.shutdown()
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

    @property
    def reads_in_parallel(self) -> bool:
        """Whether several threads may read this reference at once: a local file. Not
        a tile service or a URL: each thread's GDAL handle would fetch the tiles their
        windows share again (servers' usage policies ask for each tile once)."""
        return local_file(self.path) is not None

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

    def view(
        self,
        location: str,
        scene: RasterGrid,
        layout: TileLayout,
        helpers: list[ThreadPoolExecutor] | None = None,
    ) -> "WarpedView | ColumnSplitView":
        """Open `location` (this reference, or a variant of it) on the padded SR grid, as
        one view, or with `helpers` as views warped side by side (`ColumnSplitView`)."""

        def open_view() -> WarpedView:
            source = rasterio.open(gdal_path(location))
            vrt = self.warped(source, scene, layout)
            return WarpedView(source, vrt, vrt.colorinterp[-1] == ColorInterp.alpha)

        if helpers:
            return ColumnSplitView.open(open_view, helpers)
        return open_view()


@dataclass
class WarpedView:
    """A reference source and its view on the padded SR grid. Whether the view's last
    band is alpha is asked of GDAL once, when it opens: after a read that failed (a
    tile server's error) GDAL's pending error would be raised again by the next
    metadata call, turning one failed fetch into several."""

    source: rasterio.io.DatasetReader
    vrt: WarpedVRT
    alpha: bool

    def read(self, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(`bands` of the reference, where they are valid) in `window` of the view."""
        if self.alpha:  # one read: warped once
            data = self.vrt.read([*bands, self.vrt.count], window=window)
            return data[:-1], data[-1] > 0
        return self.vrt.read(bands, window=window), self.vrt.dataset_mask(window=window) > 0

    def close(self) -> None:
        self.vrt.close()
        self.source.close()


@dataclass
class ColumnSplitView:
    """One reference view warped by several threads side by side: each part is a
    WarpedVRT of the same grid that owns a fixed range of its columns, cut at the VRT's
    block edges, and a window is read as the parts it spans, concurrently. The first
    part is read on the calling thread, the others each on a helper thread (the
    reader's, shared by its references).

    Where strips are read one at a time (machines with few cores), this puts every core
    to the warping, the pipeline's largest cost: on 2 cores, a 2176^2 EPSG:3857 -> UTM
    view read in 4 strips took 0.15 s with one VRT and 0.09 s in two column halves.
    Pixels do not change: every window is warped block by block (`BLOCKWISE_WARPING`),
    so what a pixel gets does not depend on which VRT reads it (tested against one
    view). Parts are cut at fixed columns, not per window, so each VRT's block cache
    keeps the rows that the next strip shares with this one, as a single VRT's does."""

    parts: list[WarpedView]
    starts: list[int]
    """First column of each part; the last part runs to the view's right edge."""
    helpers: list[ThreadPoolExecutor]
    """Part i > 0 is only ever used on helpers[i - 1]."""

    @classmethod
    def open(
        cls, open_view: Callable[[], WarpedView], helpers: list[ThreadPoolExecutor]
    ) -> "ColumnSplitView":
        """One part per helper and one more, opened at once, each on the thread that
        will read it (a thread's first GDAL open costs it 5-15 ms); fewer are kept
        where the view is narrower than that many blocks."""
        count = len(helpers) + 1
        view = cls([], [], helpers)
        try:
            opening = [helper.submit(open_view) for helper in helpers]
            try:
                view.parts.append(open_view())
            finally:  # every part opened is closed with the view if any open failed
                concurrent.futures.wait(opening)
                view.parts += [future.result() for future in opening if not future.exception()]
            for future in opening:
                future.result()  # a helper's error, raised
            width, block = view.parts[0].vrt.width, view.parts[0].vrt.block_shapes[0][1]
            view.starts = sorted({round(width * i / count / block) * block for i in range(count)})
            for part in view.parts[len(view.starts) :]:
                part.close()
            del view.parts[len(view.starts) :]
        except BaseException:
            view.close()
            raise
        return view

    def read(self, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
        """As `WarpedView.read`: the parts `window` spans, read at once and joined."""
        left, right = int(window.col_off), int(window.col_off + window.width)
        stops = [*self.starts[1:], right]  # the last part runs to the view's edge
        spans = [
            (index, Window(start, window.row_off, stop - start, window.height))
            for index, (first, last) in enumerate(zip(self.starts, stops, strict=True))
            for start, stop in [(max(left, first), min(right, last))]
            if start < stop
        ]
        reads = [
            self.helpers[index - 1].submit(self.parts[index].read, bands, columns)
            for index, columns in spans
            if index > 0
        ]
        try:
            inline = [self.parts[0].read(bands, spans[0][1])] if spans[0][0] == 0 else []
        finally:
            concurrent.futures.wait(reads)  # all finish before any error is raised
        values, valid = zip(*inline, *(read.result() for read in reads), strict=True)
        return np.concatenate(values, axis=2), np.concatenate(valid, axis=1)

    def close(self) -> None:
        for part in self.parts:
            part.close()
