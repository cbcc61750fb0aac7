"""Reading the inputs of one tile: the scene's LR window and the references' windows.

The LR is read from a scene virtually padded by reflection at its edges, so every tile
sees the same context a whole-scene pass would. The reference is never loaded whole:
a WarpedVRT brings it onto the (padded) SR grid by coordinates and each tile reads its
window of it, with a validity mask.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.fill import fillnodata
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from rrsgan_geo.grids import RasterGrid
from rrsgan_geo.model import SCALE
from rrsgan_geo.rasters import band_validity, georeferenced_grid, to_model_bands, warp_to_grid
from rrsgan_geo.scaling import ValueScaling
from rrsgan_geo.tiling import Tile, TileLayout


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


class TileReader:
    """Reads tiles' inputs. Holds its own dataset handles: use one per thread."""

    def __init__(
        self,
        scene_path: str | Path,
        scene_bands: tuple[int, ...],
        scene_scaling: ValueScaling,
        layout: TileLayout,
        references: "tuple[ReferenceSpec, ...]" = (),
        window: Window | None = None,
    ) -> None:
        """`window`: the part of the scene processed (tile offsets are relative to it;
        context beyond it is read from the scene where the scene has it)."""
        self.scene = rasterio.open(scene_path)
        self.scene_bands = scene_bands
        self.scaling = scene_scaling
        self.layout = layout
        window = window or Window(0, 0, self.scene.width, self.scene.height)
        self.row0, self.col0 = int(window.row_off), int(window.col_off)
        scene_grid = georeferenced_grid(self.scene, "scene").shifted(
            self.col0, self.row0, window.width, window.height
        )
        self.references = []  # (spec, source, warped view on the padded SR grid)
        for spec in references:
            source = rasterio.open(spec.path)
            self.references.append((spec, source, spec.warped(source, scene_grid, layout)))

    def read(self, tile: Tile) -> TileInputs:
        size = self.layout.lr_tile_size
        values, valid = _read_reflected(
            self.scene,
            self.scene_bands,
            self.row0 + tile.lr_row_off,
            self.col0 + tile.lr_col_off,
            size,
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
