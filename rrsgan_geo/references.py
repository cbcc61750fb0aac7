"""Finding reference rasters by footprint: files, folders or VRTs, in any CRSs.

Footprints are put in one common CRS (EPSG:4326, edges densified so reprojection
curves are followed) and indexed once in a shapely STRtree; each scene or sample then
asks which references intersect it and how much of it each covers.
"""

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rasterio.crs import CRS
from shapely import STRtree
from shapely.geometry import Polygon

from rrsgan_geo.errors import InputError
from rrsgan_geo.grids import RasterGrid
from rrsgan_geo.rasters import georeferenced_grid, open_raster

COMMON_CRS = CRS.from_epsg(4326)
RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jp2", ".img"}


def expand_rasters(items: Iterable[str | Path], what: str) -> list[Path]:
    """Files as given; folders give the rasters directly inside them; globs expand."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            rasters = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
            if not rasters:
                raise InputError(f"{what} folder {path} holds no raster (.tif, .vrt, ...)")
            found += rasters
        elif path.exists():
            found.append(path)
        elif any(char in str(item) for char in "*?["):
            matches = sorted(Path(match) for match in glob.glob(str(item)))
            if not matches:
                raise InputError(f"{what} pattern {item} matches no file")
            found += matches
        else:
            raise InputError(f"{what} not found: {path}")
    return found


@dataclass(frozen=True)
class ReferenceIndex:
    paths: tuple[Path, ...]
    footprints: tuple[Polygon, ...]
    tree: STRtree

    @classmethod
    def build(cls, items: Iterable[str | Path]) -> "ReferenceIndex":
        paths = tuple(expand_rasters(items, "reference"))
        footprints = []
        for path in paths:
            with open_raster(path, "reference") as dataset:
                footprints.append(georeferenced_grid(dataset, "reference").footprint(COMMON_CRS))
        return cls(paths, tuple(footprints), STRtree(footprints))

    def covering(self, grid: RasterGrid) -> list[tuple[Path, float]]:
        """References intersecting the grid, with the fraction of it each covers, best first."""
        shape = grid.footprint(COMMON_CRS)
        hits = []
        for index in self.tree.query(shape, predicate="intersects"):
            fraction = shape.intersection(self.footprints[index]).area / shape.area
            if fraction > 0:
                hits.append((self.paths[index], float(fraction)))
        return sorted(hits, key=lambda hit: -hit[1])
