"""Seam blending into row-band accumulators, on the device the tiles come from.

Tiles go row by row into float32 sum and weight accumulators, weighted by
`tiling.blend_window`; only one row band of accumulators is alive, so memory does not
grow with the scene's height.
"""

import torch

from rrsgan_geo.sr.tiling import Tile, TileLayout, blend_window
from rrsgan_geo.upscaling import SCALE


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
