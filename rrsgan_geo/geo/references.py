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
from shapely import STRtree, union_all
from shapely.geometry import Polygon

from rrsgan_geo.errors import InputError
from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.geo.locations import HttpOptions, is_virtual
from rrsgan_geo.geo.rasters import georeferenced_grid, open_raster

COMMON_CRS = CRS.from_epsg(4326)
RASTER_SUFFIXES = {".tif", ".tiff", ".vrt", ".jp2", ".img"}


SIDECAR_SUFFIXES = (".aux.xml", ".ovr", ".msk", ".tfw", ".prj", ".md5")
"""Files beside a raster that GDAL reads with it: never worth a note."""


def left_out_of_folders(items: Iterable[str | Path]) -> list[Path]:
    """The files in the folders among `items` that `expand_rasters` does not take (not a
    raster by their suffix, nor a raster's sidecar), so a caller can say so: a scene
    saved as .png or .jpeg in a folder of GeoTIFFs would otherwise vanish silently."""
    left = []
    for item in items:
        path = Path(item)
        if is_virtual(item) or not path.is_dir():
            continue
        left += sorted(
            p
            for p in path.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and p.suffix.lower() not in RASTER_SUFFIXES
            and not p.name.lower().endswith(SIDECAR_SUFFIXES)
        )
    return left


def expand_rasters(items: Iterable[str | Path], what: str) -> list[str]:
    """Files as given; folders give the rasters directly inside them; globs expand;
    URLs and GDAL /vsi paths pass as they are (GDAL opens them)."""
    found: list[str] = []
    for item in items:
        if is_virtual(item):
            found.append(str(item))
            continue
        path = Path(item)
        if path.is_dir():
            rasters = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
            if not rasters:
                raise InputError(f"{what} folder {path} holds no raster (.tif, .vrt, ...)")
            found += map(str, rasters)
        elif path.exists():
            found.append(str(path))
        elif any(char in str(item) for char in "*?["):
            matches = sorted(glob.glob(str(item)))
            if not matches:
                raise InputError(f"{what} pattern {item} matches no file")
            found += matches
        else:
            raise InputError(f"{what} not found: {path}")
    return found


@dataclass(frozen=True)
class ReferenceIndex:
    paths: tuple[str, ...]
    footprints: tuple[Polygon, ...]
    tree: STRtree

    @classmethod
    def build(
        cls, items: Iterable[str | Path], http: HttpOptions | None = None
    ) -> "ReferenceIndex":
        paths = tuple(expand_rasters(items, "reference"))
        footprints = []
        for path in paths:
            with open_raster(path, "reference", http) as dataset:
                footprints.append(georeferenced_grid(dataset, "reference").footprint(COMMON_CRS))
        return cls(paths, tuple(footprints), STRtree(footprints))

    def covering(
        self, grid: RasterGrid, ranks: dict[str, int] | None = None
    ) -> list[tuple[str, float]]:
        """References intersecting the grid, with the fraction of it each covers, in
        compositing order: by rank (a STAC collection's preference; 0 when not given),
        then best-covering first."""
        shape = grid.footprint(COMMON_CRS)
        hits = []
        for index in self.tree.query(shape, predicate="intersects"):
            fraction = shape.intersection(self.footprints[index]).area / shape.area
            if fraction > 0:
                hits.append((self.paths[index], float(fraction)))
        ranks = ranks or {}
        return sorted(hits, key=lambda hit: (ranks.get(hit[0], 0), -hit[1]))

    def only(self, paths: Iterable[str]) -> "ReferenceIndex":
        """The index of `paths` (some of this one's), footprints kept."""
        wanted = set(paths)
        kept = [i for i, path in enumerate(self.paths) if path in wanted]
        footprints = tuple(self.footprints[i] for i in kept)
        return ReferenceIndex(tuple(self.paths[i] for i in kept), footprints, STRtree(footprints))

    def coverage(self, grid: RasterGrid) -> float:
        """The fraction of the grid that the union of the references covers. Measured
        in the common CRS: a reference spanning the world (a tile service) cannot be
        put in a scene's UTM zone, and at a scene's scale the ratio is the same."""
        shape = grid.footprint(COMMON_CRS)
        hits = self.tree.query(shape, predicate="intersects")
        if not len(hits):
            return 0.0
        covered = shape.intersection(union_all([self.footprints[i] for i in hits])).area
        return float(min(covered / shape.area, 1.0))
