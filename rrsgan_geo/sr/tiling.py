"""Tiles and the weights that blend their seams (geometry only: no torch).

A tile is `tile` LR pixels plus `margin` on each side (neighbours overlap by
2 * margin). Of its SR output, margin/2 on each side is cropped (the part that saw
padding), and the remaining overlap of `margin` with each neighbour is feathered with
a cosine ramp (`blend_window`); `blending.RowBandBlender` accumulates them row by row.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.upscaling import LR_SIZE_MULTIPLE


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
