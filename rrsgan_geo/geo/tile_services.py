"""XYZ and TMS tile services (`https://host/{z}/{x}/{y}.jpg`) as references.

Built on GDAL's WMS driver (its TMS mini-driver), not a hand-written fetcher: the
service becomes a virtual raster of the whole web-mercator world at one zoom level,
with an alpha band, and the warper fetches only the tiles under the windows it reads.
A tile the server does not have (HTTP 204 or 404) reads as transparent, that is as
missing reference, where LR_UX4 stands in; the run's coverage figure counts it.
A server error (5xx) fails the read: GDAL's WMS driver does not retry tile requests
(measured with GDAL 3.10: one request per failing tile whatever GDAL_HTTP_MAX_RETRY
says), so the reader retries the read (`--http-retries`, only failed tiles are asked
again) and, if the tile still fails, reads that strip with server errors as missing
tiles, and the run reports it.
"""

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from xml.sax.saxutils import escape

import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from rrsgan_geo import __version__
from rrsgan_geo.errors import CoverageError, InputError
from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.geo.locations import HttpOptions, display_name, http_failure
from rrsgan_geo.geo.rasters import GDAL_ERRORS, gdal_message

WEB_MERCATOR = CRS.from_epsg(3857)
HALF_WORLD_M = 20037508.342789244
TILE_PX = 256
EQUATOR_M_PER_PX_Z0 = 2 * HALF_WORLD_M / TILE_PX  # 156543.03 m at zoom 0
T = TypeVar("T")
# HTTP answers that mean "no tile here": read as transparent, i.e. missing reference.
MISSING_TILE_CODES = "204,404"
# Server errors too: the lenient view a strip falls back to once retries are spent.
_WITH_SERVER_ERRORS = "204,404,500,502,503,504"
MAX_ZOOM = 22  # GDAL's WMS driver: 256 * 2**23 px overflows its 32-bit sizes
_FIELD = re.compile(r"\{(-?[a-z]+)\}")


def tolerating_server_errors(gdal_xml: str) -> str | None:
    """The same service with tiles that fail with a server error read as missing
    (for a read that still fails after its retries); None if `gdal_xml` is not a tile
    service description."""
    strict = f"<ZeroBlockHttpCodes>{MISSING_TILE_CODES}</ZeroBlockHttpCodes>"
    if strict not in gdal_xml:
        return None
    return gdal_xml.replace(
        strict, f"<ZeroBlockHttpCodes>{_WITH_SERVER_ERRORS}</ZeroBlockHttpCodes>"
    )


def is_tile_template(location: object) -> bool:
    """Whether a --ref value names a tile service (it has {z}, {x} or {y} in it)."""
    return bool(_FIELD.search(str(location))) and "<GDAL_WMS>" not in str(location)


@dataclass(frozen=True)
class TileService:
    """An XYZ ({y} from the top) or TMS ({-y} from the bottom) URL template."""

    template: str

    def __post_init__(self) -> None:
        fields = set(_FIELD.findall(self.template))
        unknown = fields - {"z", "x", "y", "-y"}
        if unknown:
            raise InputError(
                f"tile URL {self.template}: unknown field {{{sorted(unknown)[0]}}} "
                "(use {z}, {x} and {y}, or {-y} for TMS; pick one subdomain for {s})"
            )
        if not {"z", "x"} <= fields or len(fields & {"y", "-y"}) != 1:
            raise InputError(
                f"tile URL {self.template}: needs {{z}}, {{x}} and one of {{y}} (XYZ) or "
                "{-y} (TMS), e.g. https://host/{z}/{x}/{y}.jpg"
            )

    @property
    def tms(self) -> bool:
        return "{-y}" in self.template

    def tile_url(self, zoom: int, x: int, y: int) -> str:
        """The URL of tile (x, y) counted from the top, at `zoom`."""
        values = {"z": zoom, "x": x, "y": y, "-y": 2**zoom - 1 - y}
        return _FIELD.sub(lambda field: str(values[field[1]]), self.template)

    def gdal_xml(self, zoom: int, http: HttpOptions, cache: Path | None = None) -> str:
        """The GDAL WMS description GDAL opens as the raster of this service at `zoom`."""
        if not 0 <= zoom <= MAX_ZOOM:
            raise InputError(f"--ref-zoom {zoom}: zoom levels go from 0 to {MAX_ZOOM} here")
        # GDAL's TMS mini-driver counts ${y} from the bottom when YOrigin is bottom.
        url = _FIELD.sub(lambda field: "${" + field[1].lstrip("-") + "}", self.template)
        cache_xml = f"<Cache><Path>{escape(str(cache))}</Path></Cache>" if cache else ""
        return (
            '<GDAL_WMS><Service name="TMS">'
            f"<ServerUrl>{escape(url)}</ServerUrl></Service>"
            f"<DataWindow><UpperLeftX>{-HALF_WORLD_M}</UpperLeftX>"
            f"<UpperLeftY>{HALF_WORLD_M}</UpperLeftY><LowerRightX>{HALF_WORLD_M}</LowerRightX>"
            f"<LowerRightY>{-HALF_WORLD_M}</LowerRightY><TileLevel>{zoom}</TileLevel>"
            "<TileCountX>1</TileCountX><TileCountY>1</TileCountY>"
            f"<YOrigin>{'bottom' if self.tms else 'top'}</YOrigin></DataWindow>"
            f"<Projection>EPSG:3857</Projection><BlockSizeX>{TILE_PX}</BlockSizeX>"
            f"<BlockSizeY>{TILE_PX}</BlockSizeY><BandsCount>4</BandsCount>"
            f"<MaxConnections>4</MaxConnections><Timeout>{max(1, round(http.timeout))}</Timeout>"
            f"<UserAgent>rrsgan-geo/{__version__}</UserAgent>"
            f"<ZeroBlockHttpCodes>{MISSING_TILE_CODES}</ZeroBlockHttpCodes>"
            f"<ZeroBlockOnServerException>true</ZeroBlockOnServerException>{cache_xml}"
            "</GDAL_WMS>"
        )


def zoom_for(sr_grid: RasterGrid) -> int:
    """The first web-mercator zoom whose ground resolution at the scene's latitude is at
    most the SR pixel size: the reference is never coarser than the output."""
    latitude, pixel_m = _centre_latitude_and_pixel_m(sr_grid)
    ground_z0 = EQUATOR_M_PER_PX_Z0 * math.cos(math.radians(latitude))
    return min(MAX_ZOOM, max(0, math.ceil(math.log2(ground_z0 / pixel_m) - 1e-9)))


def _centre_latitude_and_pixel_m(grid: RasterGrid) -> tuple[float, float]:
    """Latitude of the grid's centre and the ground size (m) of its pixel there, the
    smaller of its two sides: right for projected and geographic CRSs alike."""
    from pyproj import Geod, Transformer  # here: a run on local files never needs pyproj

    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    col, row = grid.width / 2, grid.height / 2
    corner = to_lonlat.transform(*(grid.transform @ (col, row)))
    right = to_lonlat.transform(*(grid.transform @ (col + 1, row)))
    down = to_lonlat.transform(*(grid.transform @ (col, row + 1)))
    geod = Geod(ellps="WGS84")
    sides = [geod.inv(*corner, *other)[2] for other in (right, down)]
    return corner[1], min(sides)


def tiles_under(grid: RasterGrid, zoom: int) -> list[tuple[int, int]]:
    """(x, y) from the top of the tiles under the grid's centre and its four quarter
    points at `zoom`, each once, centre first."""
    from pyproj import Transformer

    to_mercator = Transformer.from_crs(grid.crs, WEB_MERCATOR, always_xy=True)
    size = 2 * HALF_WORLD_M / 2**zoom
    found: list[tuple[int, int]] = []
    for fx, fy in [(0.5, 0.5), (0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]:
        x, y = to_mercator.transform(*(grid.transform @ (grid.width * fx, grid.height * fy)))
        tile = int((x + HALF_WORLD_M) // size), int((HALF_WORLD_M - y) // size)
        if tile not in found:
            found.append(tile)
    return found


def open_tile_service(
    template: str,
    sr_grid: RasterGrid,
    zoom: int | None,
    http: HttpOptions,
    cache: Path | None = None,
    allow_missing: bool = False,
) -> str:
    """The GDAL name (a WMS description) of the service for this scene, after fetching
    the tiles under the scene's centre and quarter points: an unreachable server, a
    tile that is not an image, or a zoom the service does not have is reported now, in
    one line, rather than as a run that quietly has no reference."""
    service = TileService(template)
    zoom = zoom_for(sr_grid) if zoom is None else zoom
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"--ref-cache {cache}: {error.strerror}") from None
    xml = service.gdal_xml(zoom, http, cache)
    tiles = tiles_under(sr_grid, zoom)
    with rasterio.open(xml) as dataset, rasterio.open(tolerating_server_errors(xml)) as tolerant:
        for x, y in tiles:
            centre = Window(x * TILE_PX + TILE_PX // 2, y * TILE_PX + TILE_PX // 2, 1, 1)
            try:
                alpha = retried(
                    lambda: dataset.read(4, window=centre),  # noqa: B023 (called at once)
                    http,
                    lambda: tolerant.read(4, window=centre),  # noqa: B023
                )
            except GDAL_ERRORS as error:
                url = service.tile_url(zoom, x, y)
                reason = http_failure(url, http.timeout) or gdal_message(error)
                raise InputError(
                    f"tile service {display_name(xml)}: {display_name(url)}: {reason}"
                ) from None
            if alpha.any():
                return xml
    if not allow_missing:
        url = service.tile_url(zoom, *tiles[0])
        raise CoverageError(
            f"tile service {display_name(xml)} has no tile under the scene at zoom {zoom} "
            f"(e.g. {display_name(url)}): the zoom may be beyond the service's range; try a "
            "lower --ref-zoom, or --allow-missing-ref"
        )
    return xml


def retried(read: Callable[[], T], http: HttpOptions, fallback: Callable[[], T]) -> T:
    """`read()`, retried with growing delays on a GDAL error (GDAL does not retry tile
    requests; tiles already fetched are not asked again), then `fallback()`: the same
    read from the service with failing tiles as missing. Errors that are not server
    errors (refused, timed out, not an image) fail the fallback too, and are raised."""
    for attempt in range(http.retries + 1):
        try:
            return read()
        except GDAL_ERRORS:
            if attempt < http.retries:
                time.sleep(http.retry_delay * 2**attempt)
    return fallback()
