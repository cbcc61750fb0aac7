"""STAC items and item collections as references, read with pystac.

`--ref item.json` (a file or a URL) uses the item's `visual` asset, or the one named by
`--ref-asset`. An ItemCollection (saved search results, say) gives every item whose
footprint meets the scene, composited in the order `--ref-prefer` says: the newest
(or oldest) acquisition first, so its valid pixels win where items overlap.

pystac is imported where a STAC document is read, not with the module: every `sr` plan
asks `is_stac`, and a run on local files then works where pystac is not installed (the
GPU machines this project benchmarks on lack it) and starts a little sooner.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING

from shapely.geometry import Polygon, shape

from rrsgan_geo.errors import CoverageError, InputError
from rrsgan_geo.geo.locations import HttpOptions, display_name, http_failure, scheme

if TYPE_CHECKING:
    import pystac

DEFAULT_ASSET = "visual"
PREFERENCES = ("newest", "oldest")
MAX_DOCUMENT_BYTES = 64 << 20
"""The largest STAC document read over HTTP (search results of thousands of items fit)."""
_CHUNK = 1 << 16
REMOTE_ASSET_SCHEMES = ("http", "https")
"""What the assets of a STAC document fetched over HTTP may be. Anything else (a local
path, `file:`, a GDAL `/vsi...` or `vrt:` path, an XML connection string) would make a
remote document read files on this machine: refused, whether or not it exists."""


def is_stac(location: object) -> bool:
    """Whether a --ref value names a STAC document (a .json file or URL)."""
    return str(location).split("?", 1)[0].lower().endswith(".json")


def stac_hrefs(
    location: str,
    footprint: Polygon,
    http: HttpOptions,
    asset: str | None = None,
    prefer: str = "newest",
) -> list[str]:
    """The asset hrefs to use as references for a scene whose footprint (EPSG:4326,
    as STAC geometries are) is `footprint`, in the order they should composite."""
    import pystac

    if prefer not in PREFERENCES:
        raise InputError(f"--ref-prefer {prefer!r}: use newest or oldest")
    document = _load(location, http)
    kind = document.get("type")
    if kind == "Feature":
        items = [_item(document, location)]
    elif kind == "FeatureCollection":
        try:
            collection = pystac.ItemCollection.from_dict(document, preserve_dict=False)
        except (KeyError, ValueError, pystac.STACError) as error:
            raise InputError(
                f"STAC {display_name(location)}: not an ItemCollection ({error})"
            ) from None
        items = [_with_location(item, location) for item in collection]
        items = [item for item in items if _meets(item, footprint)]
        if not items:
            raise CoverageError(
                f"no item of the STAC collection {display_name(location)} meets the scene"
            )
        items.sort(key=_acquired, reverse=prefer == "newest")
    else:
        raise InputError(
            f"{display_name(location)} is not a STAC Item or ItemCollection (type {kind!r})"
        )
    hrefs = [_asset_href(item, asset or DEFAULT_ASSET, location) for item in items]
    if scheme(location) is not None:
        for item, href in zip(items, hrefs, strict=True):
            _refuse_non_http(href, item, location)
    return hrefs


def _refuse_non_http(href: str, item: pystac.Item, location: str) -> None:
    """A remote document's asset must be an http(s) URL (`REMOTE_ASSET_SCHEMES`), once
    resolved against the document's URL as pystac resolves it (so `/a/b.tif` is a path
    on the document's server). The message names the item, never the href's target,
    and is the same whether a local path exists or not."""
    if scheme(href) not in REMOTE_ASSET_SCHEMES:
        raise InputError(
            f"STAC item {item.id} ({display_name(location)}): a STAC document read over "
            "HTTP may only name http(s) assets; refusing its asset (local paths, file:, "
            "/vsi and vrt: paths are refused in remote documents)"
        )


def _load(location: str, http: HttpOptions) -> dict:
    try:
        if scheme(location) in ("http", "https"):
            text = _fetch(location, http.timeout)
        elif scheme(location) is not None:
            raise InputError(f"STAC {display_name(location)}: give a file or an http(s) URL")
        else:
            text = Path(location).read_bytes()
        return json.loads(text)
    except (urllib.error.URLError, TimeoutError, OSError, HTTPException) as error:
        reason = http_failure(location, http.timeout) or getattr(error, "strerror", None)
        raise InputError(f"cannot read STAC {display_name(location)}: {reason or error}") from None
    except ValueError as error:  # json's errors, and urllib's InvalidURL
        raise InputError(f"STAC {display_name(location)} is not readable JSON: {error}") from None


def _fetch(url: str, timeout: float) -> bytes:
    """The body at `url`, read in chunks within `timeout` seconds in all (not per read:
    a server trickling bytes would otherwise hold the run) and at most
    `MAX_DOCUMENT_BYTES` long."""
    deadline = time.monotonic() + timeout
    chunks, size = [], 0
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        while chunk := answer.read1(_CHUNK):
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise InputError(
                    f"STAC {display_name(url)}: larger than {MAX_DOCUMENT_BYTES >> 20} MiB"
                )
            if time.monotonic() > deadline:
                raise InputError(
                    f"cannot read STAC {display_name(url)}: not received within "
                    f"{timeout:g} s (--http-timeout)"
                )
            chunks.append(chunk)
    return b"".join(chunks)


def _item(document: dict, location: str) -> pystac.Item:
    import pystac

    try:
        item = pystac.Item.from_dict(document, preserve_dict=False)
    except (KeyError, ValueError, pystac.STACError) as error:
        raise InputError(f"STAC {display_name(location)}: not a valid Item ({error})") from None
    return _with_location(item, location)


def _with_location(item: pystac.Item, location: str) -> pystac.Item:
    """Relative asset hrefs are relative to the document they were read from."""
    if item.get_self_href() is None:
        base = location if scheme(location) else str(Path(location).resolve())
        item.set_self_href(base)
    return item


def _meets(item: pystac.Item, footprint: Polygon) -> bool:
    return item.geometry is not None and shape(item.geometry).intersects(footprint)


def _acquired(item: pystac.Item) -> datetime:
    """The item's datetime (or start_datetime); items with neither sort as oldest."""
    when = item.datetime or item.common_metadata.start_datetime
    return when or datetime.min.replace(tzinfo=UTC)


def _asset_href(item: pystac.Item, name: str, location: str) -> str:
    asset = item.assets.get(name)
    if asset is None:
        names = ", ".join(sorted(item.assets)) or "none"
        raise InputError(
            f"STAC item {item.id} ({display_name(location)}) has no asset {name!r} "
            f"(assets: {names}); choose one with --ref-asset"
        )
    return asset.get_absolute_href() or asset.href
