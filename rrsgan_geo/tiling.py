"""Tiles, seam blending and row-band accumulation.

A tile is `tile` LR pixels plus `margin` on each side (neighbours overlap by
2 * margin). Of its SR output, margin/2 on each side is cropped (the part that saw
padding), and the remaining overlap of `margin` with each neighbour is feathered with
a cosine ramp into float32 sum and weight accumulators. Tiles go row by row, and only
one row band of accumulators is alive, so memory does not grow with scene height.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model import LR_SIZE_MULTIPLE, SCALE


@dataclass(frozen=True)
class Tile:
    row: int
    col: int
    lr_row_off: int
    """First LR row the tile reads, margin included (may be negative: reflected)."""
    lr_col_off: int


def fitted_tile(largest: int, width: int, height: int) -> int:
    """The tile side a `width` x `height` LR scene needs: as many tiles along each axis
    as tiles of `largest` would take, each no larger than that asks. The part of a
    last tile past the scene's edge is computed and thrown away: a 100^2 scene in a
    tile of 128 (+ 2 x 16 margin) ran 160^2 pixels through the model, in a tile of
    100 it runs 132^2 (32 % fewer); a 300-wide one runs 3 tiles of 100 instead of 128."""
    need = max(math.ceil(side / math.ceil(side / largest)) for side in (width, height))
    return min(largest, math.ceil(need / LR_SIZE_MULTIPLE) * LR_SIZE_MULTIPLE)


@dataclass(frozen=True)
class TileLayout:
    """Where tiles go on an LR scene of `width` x `height`."""

    width: int
    height: int
    tile: int
    margin: int

    def __post_init__(self) -> None:
        if self.tile < LR_SIZE_MULTIPLE or self.tile % LR_SIZE_MULTIPLE:
            raise ConfigError(f"tile must be a positive multiple of 4 LR pixels, got {self.tile}")
        if self.margin < 0 or self.margin % 2:
            raise ConfigError(f"margin must be an even number of LR pixels, got {self.margin}")

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.tile)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.tile)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def lr_tile_size(self) -> int:
        """LR pixels a tile reads along each axis (a multiple of 4, as the model needs)."""
        return self.tile + 2 * self.margin

    def tiles_in_row(self, row: int) -> list[Tile]:
        return [
            Tile(row, col, row * self.tile - self.margin, col * self.tile - self.margin)
            for col in range(self.cols)
        ]

    def __iter__(self) -> Iterator[Tile]:
        for row in range(self.rows):
            yield from self.tiles_in_row(row)


def cosine_ramp(length: int) -> np.ndarray:
    """Strictly positive weights rising to 1; ramp(i) + ramp(length-1-i) == 1, so two
    overlapping tiles share each pixel of the overlap with weights summing to one."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)).astype(np.float32)


def blend_window(kept: int, overlap: int) -> np.ndarray:
    """1-D weights over a tile's kept SR extent: ramps over each overlap, 1 between."""
    window = np.ones(kept, dtype=np.float32)
    if overlap:
        ramp = cosine_ramp(overlap)
        window[:overlap] = ramp
        window[-overlap:] = ramp[::-1]
    return window


class RowBandBlender:
    """Blends SR tiles one tile row at a time and hands back finished SR rows.

    The accumulators live on the device the tiles come from, so on a GPU the tiles never
    cross to the host: only finished rows do (a tile with its margins is 2.25x the
    pixels it owns at tile 64 + 16, 1.27x at 256 + 16), and blending does not hold the
    host up between batches."""

    def __init__(self, layout: TileLayout, bands: int, device: torch.device) -> None:
        self.layout = layout
        self.bands = bands
        self.sr_width = layout.width * SCALE
        self.sr_height = layout.height * SCALE
        self.crop = (layout.margin // 2) * SCALE
        self.kept = (layout.tile + layout.margin) * SCALE
        self.overlap = layout.margin * SCALE
        self.window = torch.from_numpy(blend_window(self.kept, self.overlap)).to(device)
        # Accumulators span SR rows [band_top, band_top + kept) of the current tile row,
        # including rows that lie outside the scene (dropped when rows are handed back).
        self.band_top = -self.crop
        self.sums = torch.zeros((bands, self.kept, self.sr_width), device=device)
        self.weights = torch.zeros((self.kept, self.sr_width), device=device)

    def _columns(self, tile: Tile) -> tuple[slice, slice, torch.Tensor]:
        """(SR columns of the band, columns of the kept tile, their blend weights)."""
        left = (tile.lr_col_off + self.layout.margin) * SCALE - self.crop
        first, last = max(left, 0), min(left + self.kept, self.sr_width)
        columns = slice(first - left, last - left)
        weights = self.window[:, None] * self.window[None, columns]
        return slice(first, last), columns, weights

    def add(self, tile: Tile, sr_tile: torch.Tensor) -> None:
        """Add a tile's SR output (bands x 4*lr_tile_size x 4*lr_tile_size)."""
        band, columns, weights = self._columns(tile)
        kept = sr_tile[:, self.crop : self.crop + self.kept, self.crop : self.crop + self.kept]
        self.sums[:, :, band].addcmul_(kept[:, :, columns], weights)
        self.weights[:, band] += weights

    def add_empty(self, tile: Tile) -> None:
        """Add a tile that was not run (no valid LR pixel): zeros, weighted as any tile,
        so that every pixel has a weight (the output masks those pixels anyway)."""
        band, _, weights = self._columns(tile)
        self.weights[:, band] += weights

    def finish_row(self, row: int) -> tuple[int, torch.Tensor]:
        """Close tile row `row`: return (first SR row, bands x n x W) of the rows that no
        later tile touches, and move the overlap to the top of the accumulators."""
        last_row = row == self.layout.rows - 1
        done = self.kept if last_row else self.kept - self.overlap
        top, bottom = max(self.band_top, 0), min(self.band_top + done, self.sr_height)
        rows = slice(top - self.band_top, bottom - self.band_top)
        finished = self.sums[:, rows] / self.weights[rows]
        # Carry the overlap rows to the top (a copy: with tiles smaller than the margin
        # source and destination overlap), clear the rest, advance one tile row.
        carried = self.kept - done
        self.sums[:, :carried] = self.sums[:, done:].clone()
        self.weights[:carried] = self.weights[done:].clone()
        self.sums[:, carried:] = 0.0
        self.weights[carried:] = 0.0
        self.band_top += done
        return top, finished
