"""Opening the scene and the reference, and reading the inputs of one tile.

The LR is read from a scene virtually padded by reflection at its edges, so every tile
sees the same context a whole-scene pass would. The reference is never loaded whole:
a WarpedVRT brings it onto the (padded) SR grid by coordinates and each tile reads its
window of it, with a validity mask.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.fill import fillnodata
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from rrsgan_geo.errors import InputError
from rrsgan_geo.grids import RasterGrid
from rrsgan_geo.model import SCALE
from rrsgan_geo.scaling import ValueScaling
from rrsgan_geo.tiling import Tile, TileLayout

MODEL_BANDS = 3


def open_raster(path: str | Path, what: str) -> rasterio.io.DatasetReader:
    """Open any GDAL raster, turning GDAL's errors into a one-line InputError."""
    if not Path(path).exists():
        raise InputError(f"{what} not found: {path}")
    try:
        with warnings.catch_warnings():
            # Missing georeference is reported by georeferenced_grid, in one line.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as error:
        raise InputError(f"cannot read {what} {path}: {error}") from None


def georeferenced_grid(dataset: rasterio.io.DatasetReader, what: str) -> RasterGrid:
    if dataset.crs is None:
        raise InputError(f"{what} {dataset.name} has no CRS: it must be georeferenced")
    if dataset.transform.is_identity:
        raise InputError(f"{what} {dataset.name} has no geotransform: it must be georeferenced")
    return RasterGrid(dataset.crs, dataset.transform, dataset.width, dataset.height)


def select_bands(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...] | None, what: str
) -> tuple[int, ...]:
    """1 or 3 bands: the model is RGB; a single band is repeated to three.

    Without a choice, a 1-band raster, a 3-band one, or one whose first three bands
    GDAL calls red, green and blue (RGB + alpha, say) need none; any other (a 7-band
    Landsat file) must say which bands, rather than silently getting 1, 2, 3."""
    if bands is None:
        rgb = tuple(dataset.colorinterp[:MODEL_BANDS]) == (
            ColorInterp.red,
            ColorInterp.green,
            ColorInterp.blue,
        )
        if dataset.count == MODEL_BANDS or (dataset.count > MODEL_BANDS and rgb):
            return (1, 2, 3)
        if dataset.count == 1:
            return (1,)
        flag = "--bands" if what == "scene" else "--ref-bands"
        names = ", ".join(f"{i}={d}" for i, d in enumerate(dataset.descriptions, start=1) if d)
        raise InputError(
            f"{what} {dataset.name} has {dataset.count} bands"
            + (f" ({names})" if names else "")
            + f": choose 3 (red, green, blue) or 1 with {flag}, e.g. {flag} 3,2,1"
        )
    if len(bands) not in (1, MODEL_BANDS):
        raise InputError(f"{what} bands {bands}: give 1 or 3 band numbers")
    wrong = [band for band in bands if not 1 <= band <= dataset.count]
    if wrong:
        raise InputError(
            f"{what} {dataset.name} has {dataset.count} bands; band {wrong[0]} does not exist"
        )
    return bands


def band_validity(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], window: Window
) -> np.ndarray | None:
    """bands x H x W: where each band is valid, as GDAL's mask of that band says
    (nodata value, alpha or mask band); None, without reading anything, when the
    dataset declares no mask for these bands. Bands can differ: in a Landsat 7 scene
    water is nodata in two bands and valid in the third."""
    if all(MaskFlags.all_valid in dataset.mask_flag_enums[band - 1] for band in bands):
        return None
    return dataset.read_masks(bands, window=window) > 0


def _read_reflected(
    dataset: rasterio.io.DatasetReader,
    bands: tuple[int, ...],
    row_off: int,
    col_off: int,
    size: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a square window that may stick out of the scene, reflecting at its edges.
    Returns (bands x size x size values, their validity per band or None if all valid)."""
    r0, r1 = max(row_off, 0), min(row_off + size, dataset.height)
    c0, c1 = max(col_off, 0), min(col_off + size, dataset.width)
    window = Window(c0, r0, c1 - c0, r1 - r0)
    pads = ((r0 - row_off, row_off + size - r1), (c0 - col_off, col_off + size - c1))
    values = np.pad(dataset.read(bands, window=window), ((0, 0), *pads), mode="symmetric")
    valid = band_validity(dataset, bands, window)
    return values, None if valid is None else np.pad(valid, ((0, 0), *pads), mode="symmetric")


@dataclass
class TileInputs:
    """One tile's model inputs before the degradations, all float32 in [0, 1]."""

    tile: Tile
    lr: np.ndarray
    """3 x n x n, masked pixels filled from their valid neighbours."""
    lr_valid: np.ndarray | None
    """n x n, where any band is valid (rasterio's dataset_mask); None when all are."""
    ref: np.ndarray | None
    """3 x 4n x 4n, None when the tile has no valid reference pixel."""
    ref_valid: np.ndarray | None
    """4n x 4n."""

    @property
    def empty(self) -> bool:
        return self.lr_valid is not None and not self.lr_valid.any()


def to_model_bands(unit: np.ndarray) -> np.ndarray:
    """bands x H x W with 1 or 3 bands -> 3 bands: the model is RGB."""
    return np.repeat(unit, MODEL_BANDS, axis=0) if unit.shape[0] == 1 else unit


class TileReader:
    """Reads tiles' inputs. Holds its own dataset handles: use one per thread."""

    def __init__(
        self,
        scene_path: str | Path,
        scene_bands: tuple[int, ...],
        scene_scaling: ValueScaling,
        layout: TileLayout,
        references: "tuple[ReferenceSpec, ...]" = (),
    ) -> None:
        self.scene = rasterio.open(scene_path)
        self.scene_bands = scene_bands
        self.scaling = scene_scaling
        self.layout = layout
        scene_grid = georeferenced_grid(self.scene, "scene")
        self.references = []  # (spec, source, warped view on the padded SR grid)
        for spec in references:
            source = rasterio.open(spec.path)
            self.references.append((spec, source, spec.warped(source, scene_grid, layout)))

    def read(self, tile: Tile) -> TileInputs:
        size = self.layout.lr_tile_size
        values, valid = _read_reflected(
            self.scene, self.scene_bands, tile.lr_row_off, tile.lr_col_off, size
        )
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
        ref, ref_valid = self._read_references(tile)
        return TileInputs(tile, lr, valid, ref, ref_valid)

    def _read_references(self, tile: Tile) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The tile's window of each reference, composited: the first valid pixel wins
        (references are listed best-covering first)."""
        n = self.layout.lr_tile_size * SCALE
        # The VRT grid starts one margin before the scene: tile offsets shift by it.
        window = Window(
            (tile.lr_col_off + self.layout.margin) * SCALE,
            (tile.lr_row_off + self.layout.margin) * SCALE,
            n,
            n,
        )
        ref, ref_valid = None, None
        for spec, _, vrt in self.references:
            valid = vrt.dataset_mask(window=window) > 0
            if ref_valid is not None:
                valid &= ~ref_valid
            if not valid.any():
                continue
            values = to_model_bands(spec.scaling.to_unit(vrt.read(spec.bands, window=window)))
            if ref is None:
                ref, ref_valid = values, valid
            else:
                ref[:, valid] = values[:, valid]
                ref_valid |= valid
        return ref, ref_valid

    def close(self) -> None:
        for _, source, vrt in self.references:
            vrt.close()
            source.close()
        self.scene.close()


@dataclass(frozen=True)
class ReferenceSpec:
    """One reference source: which file, which bands, how its values scale, how it is
    resampled. A scene may have several (a folder of tiles, mixed CRSs)."""

    path: Path
    bands: tuple[int, ...]
    scaling: ValueScaling
    resampling: Resampling

    def warped(
        self, source: rasterio.io.DatasetReader, scene: RasterGrid, layout: TileLayout
    ) -> WarpedVRT:
        """The reference on the SR grid padded to every tile's extent."""
        margin_sr = layout.margin * SCALE
        padded = scene.scaled_up().shifted(
            -margin_sr,
            -margin_sr,
            (layout.cols * layout.tile + 2 * layout.margin) * SCALE,
            (layout.rows * layout.tile + 2 * layout.margin) * SCALE,
        )
        return warp_to_grid(source, padded, self.resampling)


def warp_to_grid(
    source: rasterio.io.DatasetReader, grid: RasterGrid, resampling: Resampling
) -> WarpedVRT:
    """`source` seen through `grid` (any CRS, resolution, rotation), read window by window.

    Without a nodata value or an alpha band an alpha band is added, so that the areas
    outside the source read as invalid in `dataset_mask`.
    """
    has_alpha = any(MaskFlags.alpha in flags for flags in source.mask_flag_enums)
    return WarpedVRT(
        source,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=resampling,
        add_alpha=source.nodata is None and not has_alpha,
    )
