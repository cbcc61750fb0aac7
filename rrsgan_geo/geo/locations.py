"""Where a raster lives: a local file, a GDAL virtual path, a URL or a cloud bucket.

Users name rasters as they know them (`https://host/a.tif`, `s3://bucket/key.tif`,
`/vsizip/archive.zip/a.tif`) and GDAL reads them all through its virtual file systems.
Nothing here asks pathlib about a name that may not be a local file: pathlib collapses
`https://` to `https:/`, and a `/vsi` path does not exist on disk.
"""

import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import unescape

from rrsgan_geo.errors import InputError

WMTS_PREFIX = "WMTS:"
_SERVER_URL = re.compile(r"<ServerUrl>(.*?)</ServerUrl>", re.S)
# URL scheme -> the GDAL virtual file system that reads it.
_SCHEMES = {
    "http": "/vsicurl/",
    "https": "/vsicurl/",
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "az": "/vsiaz/",
}


def scheme(location: str | Path) -> str | None:
    """The URL scheme GDAL would read `location` through, None for anything else."""
    text = str(location)
    name = text.split("://", 1)[0].lower() if "://" in text else None
    return name if name in _SCHEMES else None


def is_wmts(location: str | Path) -> bool:
    """Whether `location` is a WMTS service: GDAL's `WMTS:` connection string (with
    its `,layer=...` options) or an http(s) capabilities URL."""
    text = str(location)
    lower = text.lower()
    capabilities = "wmtscapabilities" in lower or (
        "service=wmts" in lower and "request=getcapabilities" in lower
    )
    return text.upper().startswith(WMTS_PREFIX) or (
        capabilities and scheme(text) in ("http", "https")
    )


def _wmts_service_url(text: str) -> str:
    """A GDAL `WMTS:URL,layer=...` connection string -> the service's URL (without
    GDAL's options); any other location as it is."""
    if text.upper().startswith(WMTS_PREFIX):
        return text[len(WMTS_PREFIX) :].split(",", 1)[0]
    return text


# GDAL's vrt:// connection string with a nodata value and nothing else (`with_nodata`).
_NODATA_DECLARED = re.compile(r"^vrt://(?P<inner>[^?]*)\?a_nodata=[^&?]*$")


def with_nodata(location: str | Path, value: float) -> str:
    """`location` read as if every band declared `value` as nodata: for rasters whose
    fill (0 around a Landsat scene, black around a mosaic) is not tagged. Through GDAL's
    own vrt:// connection string (`a_nodata`), so masks, percentiles, warping and the
    output's nodata all see it as if the file said so."""
    inner = gdal_path(location)
    if "?" in inner or inner.startswith("<") or inner.upper().startswith(WMTS_PREFIX):
        raise InputError(
            f"cannot declare a nodata value for {display_name(location)} (a tile service or "
            "a URL with a query string): declare it in a VRT instead, e.g. gdal_translate "
            "-of VRT -a_nodata 0 IN OUT.vrt"
        )
    return f"vrt://{inner}?a_nodata={float(value)!r}"


def undeclared(location: str | Path) -> str:
    """The raster `with_nodata` wrapped (its GDAL name), or `location` itself."""
    text = str(location)
    match = _NODATA_DECLARED.match(text)
    return match["inner"] if match else text


def local_file(location: str | Path) -> Path | None:
    """The local file `location` names (also through a declared nodata value), None for
    a URL, a /vsi path or a tile service."""
    return None if is_virtual(location) else Path(undeclared(location))


def is_virtual(location: str | Path) -> bool:
    """Whether `location` is a URL, a GDAL /vsi path, a WMTS service or a GDAL WMS
    description (a tile service) rather than a local file name."""
    text = undeclared(location)
    return scheme(text) is not None or text.startswith(("/vsi", "<GDAL_WMS>")) or is_wmts(text)


def gdal_path(location: str | Path) -> str:
    """The name GDAL opens: URLs go through /vsicurl/, /vsis3/, /vsigs/ or /vsiaz/; a
    WMTS capabilities URL through GDAL's WMTS driver."""
    text = str(location)
    if is_wmts(text):
        return text if text.upper().startswith(WMTS_PREFIX) else WMTS_PREFIX + text
    found = scheme(text)
    if found is None:
        return text
    rest = text.split("://", 1)[1]
    return _SCHEMES[found] + (text if found in ("http", "https") else rest)


def display_name(location: str | Path) -> str:
    """What outputs and messages record: a local file's name (never a local path), a
    URL without its query string (which may hold an access token)."""
    text = undeclared(location)
    text = _wmts_service_url(text)
    service = _SERVER_URL.search(text) if text.startswith("<GDAL_WMS>") else None
    if service is not None:  # a tile service: its URL template, as the user wrote it
        text = unescape(service[1]).replace("${", "{")
        if "<YOrigin>bottom</YOrigin>" in str(location):  # TMS: rows from the bottom
            text = text.replace("{y}", "{-y}")
    if scheme(text) is not None:
        parts = urlsplit(text)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if text.startswith("/vsi"):
        return text.rstrip("/").rsplit("/", 1)[-1]
    return Path(text).name


@dataclass(frozen=True)
class HttpOptions:
    """How remote rasters are fetched. A dead or stalled server never hangs a run:
    every request gives up after `timeout` seconds and is retried `retries` times."""

    timeout: float = 30.0
    retries: int = 2
    retry_delay: float = 1.0

    def gdal_config(self) -> dict[str, str]:
        """GDAL configuration options (for rasterio.Env)."""
        return {
            "GDAL_HTTP_TIMEOUT": str(max(1, round(self.timeout))),
            "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(min(self.timeout, 10.0)))),
            "GDAL_HTTP_MAX_RETRY": str(self.retries),
            "GDAL_HTTP_RETRY_DELAY": str(self.retry_delay),
            # Opening https://host/a.tif must not list https://host/ first.
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        }


def http_failure(location: str | Path, timeout: float, needs_ranges: bool = False) -> str | None:
    """Why an http(s) URL cannot be read, in a few words ('HTTP 404 Not Found',
    'connection refused', 'no answer within 5 s'), asked directly with one request.
    GDAL's own message only says the file 'does not exist'. `needs_ranges`: the URL is
    a raster GDAL reads in windows, so a server that answers a ranged request with the
    whole file is the failure, named with the way round it. None for other locations
    or when the server answers a small ranged request normally."""
    text = str(location)
    text = _wmts_service_url(text)
    if scheme(text) not in ("http", "https"):
        return None
    request = urllib.request.Request(text, headers={"Range": "bytes=0-0"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if needs_ranges and response.status == 200:  # not 206: the range was ignored
                return (
                    "the server does not answer byte-range requests, which reading a "
                    "raster in windows needs: give it as /vsicurl_streaming/ followed by "
                    "the URL (read whole, in order), or serve the file from a server that "
                    "supports ranges"
                )
            return None
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} {error.reason}"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            return f"no answer within {timeout:g} s"
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused"
        if isinstance(reason, socket.gaierror):
            return "unknown host"
        return str(reason)
    except OSError as error:
        return str(error)
    except HTTPException as error:  # InvalidURL (a space, a control character), a cut body
        return f"{type(error).__name__}: {error}"
