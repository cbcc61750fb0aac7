"""Where the reference was used, and where detail may have been invented.

Two optional one-band float32 GeoTIFFs, streamed row band by row band beside the
output and finished atomically with it:

- the relevance map, on the output grid: the x4 relevance attention's weight per
  pixel (0..1), blended across tiles like the image. High where the model let the
  aligned reference through, low where it judged the reference irrelevant (changed
  land cover, cloud) or where there was none;
- the consistency map, on the scene's grid: |downsample4x(SR) - LR| per LR pixel, in
  the scene's units, averaged over bands, where downsample4x is the 4 x 4 mean (so
  the map is exact per LR pixel and independent of tiling). Large values are where
  the output disagrees with the scene it was made from: the place to look for
  invented detail.

Pixels where the scene is nodata are NaN (the maps' nodata) in both.
"""

from contextlib import ExitStack
from pathlib import Path

import numpy as np

from rrsgan_geo.geo.grids import RasterGrid, on_sr_pixels
from rrsgan_geo.sr.output import StreamingGeoTIFF, tiled_profile
from rrsgan_geo.upscaling import SCALE


def block_mean(values: np.ndarray) -> np.ndarray:
    """bands x 4h x 4w -> bands x h x w: the mean of each 4 x 4 block."""
    bands, height, width = values.shape
    blocks = values.reshape(bands, height // SCALE, SCALE, width // SCALE, SCALE)
    return blocks.mean(axis=(2, 4))


class DiagnosticMaps:
    """The relevance and consistency maps a run was asked for (either, both or none)."""

    def __init__(
        self,
        relevance_path: Path | None,
        consistency_path: Path | None,
        sr_grid: RasterGrid,
        lr_grid: RasterGrid,
        *,
        overwrite: bool,
        tags: dict[str, str],
    ) -> None:
        self.writers: dict[str, StreamingGeoTIFF] = {}
        for name, path, grid in (
            ("relevance", relevance_path, sr_grid),
            ("consistency", consistency_path, lr_grid),
        ):
            if path is not None:
                self.writers[name] = StreamingGeoTIFF(
                    path,
                    tiled_profile(grid, 1, "float32", float("nan")),
                    overwrite=overwrite,
                    tags=tags,
                    descriptions=(name,),
                )
        self.stack = ExitStack()

    def __enter__(self) -> "DiagnosticMaps":
        for writer in self.writers.values():
            self.stack.enter_context(writer)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stack.__exit__(*exc_info)

    @property
    def with_relevance(self) -> bool:
        return "relevance" in self.writers

    def write(
        self,
        top: int,
        relevance: np.ndarray | None,
        sr_values: np.ndarray,
        lr_values: np.ndarray,
        lr_valid: np.ndarray | None,
    ) -> None:
        """SR rows [top, top + n) of the run: the blended relevance (n x W), the SR in
        the scene's units before rounding (bands x n x W), and the scene's LR rows
        under them (bands x n/4 x W/4, with where any band is valid)."""
        sr_valid = None if lr_valid is None else on_sr_pixels(lr_valid)
        if relevance is not None and self.with_relevance:
            relevance = relevance.astype(np.float32)
            if sr_valid is not None:
                relevance[~sr_valid] = np.nan
            self.writers["relevance"].write_rows(top, relevance[None])
        if "consistency" in self.writers:
            difference = np.abs(block_mean(sr_values) - lr_values).mean(axis=0)
            difference = difference.astype(np.float32)
            if lr_valid is not None:
                difference[~lr_valid] = np.nan
            self.writers["consistency"].write_rows(top // SCALE, difference[None])
