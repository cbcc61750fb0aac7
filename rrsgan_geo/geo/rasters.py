"""Generic raster helpers: open any GDAL raster, its georeferenced grid, its bands and
their validity, and a view of it on another grid. Nothing here knows about tiles.
"""

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from rrsgan_geo.errors import InputError
from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.geo.locations import (
    HttpOptions,
    display_name,
    gdal_path,
    http_failure,
    local_file,
    undeclared,
    with_nodata,
)

MODEL_BANDS = 3
_ZERO_SAMPLES, _ZERO_SAMPLE_SIDE = 4, 64  # windows per side, pixels per window side
# What a failed GDAL call raises through rasterio: its own errors, or GDAL's error
# classes when the failure surfaces outside a read (e.g. on the next call after a
# failed block fetch).
GDAL_ERRORS = (RasterioError, CPLE_BaseError)


def open_raster(
    location: str | Path, what: str, http: HttpOptions | None = None
) -> rasterio.io.DatasetReader:
    """Open any GDAL raster (a file, a /vsi path, an http(s), s3, gs or az URL),
    turning GDAL's errors into a one-line InputError. Existence is checked by opening:
    for a URL, a failure is explained by asking the server once (HTTP status, refused,
    timed out), as GDAL only says 'does not exist'."""
    _require_local_file(location, what)
    try:
        with warnings.catch_warnings():
            # Missing georeference is reported by georeferenced_grid, in one line.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(gdal_path(location))
    except RasterioIOError as error:
        shown = local_file(location) or display_name(location)
        reason = http_failure(location, (http or HttpOptions()).timeout, needs_ranges=True)
        raise InputError(f"cannot read {what} {shown}: {reason or gdal_message(error)}") from None


def declaring_nodata(location: str | Path, nodata: float | None, what: str) -> str:
    """`location` as GDAL should open it: with `nodata` declared where given
    (`locations.with_nodata`: for fill the file does not tag), a missing file named as
    such first."""
    if nodata is None:
        return str(location)
    _require_local_file(location, what)
    return with_nodata(location, nodata)


def _require_local_file(location: str | Path, what: str) -> None:
    """A local file must exist (virtual locations are checked by opening them)."""
    path = local_file(location)
    if path is not None and not path.exists():
        raise InputError(f"{what} not found: {path}")


def gdal_message(error: Exception) -> str:
    """GDAL's own words for a failed read: rasterio's message is often 'Read failed. See
    previous exception for details.', the details being in the exception's cause."""
    cause = error.__cause__
    return str(cause) if "previous exception" in str(error) and cause else str(error)


@contextmanager
def naming_read_failures(what: str, location: str | Path) -> Iterator[None]:
    """GDAL's errors while reading pixels (a truncated or corrupt file, a server gone)
    as one InputError that names the raster and gives GDAL's own words: rasterio's
    'Read failed. See previous exception for details.' names neither."""
    try:
        yield
    except GDAL_ERRORS as error:
        message = gdal_message(error)
        raise InputError(f"reading {what} {display_name(location)} failed: {message}") from None


def raster_name(dataset: rasterio.io.DatasetReader) -> str:
    """The raster's name for messages, as the user gave it: GDAL's name without the
    `vrt://...?a_nodata=` wrapping that a declared nodata value adds."""
    return undeclared(dataset.name)


def georeferenced_grid(dataset: rasterio.io.DatasetReader, what: str) -> RasterGrid:
    name = raster_name(dataset)
    gcps, gcp_crs = dataset.gcps
    if gcps and dataset.transform.is_identity:  # a level-1 product, a scanned map
        target = f"-t_srs {gcp_crs} " if gcp_crs else ""
        raise InputError(
            f"{what} {name} is placed by {len(gcps)} ground control points, not on a grid: "
            f"warp it onto one first, e.g. gdalwarp {target}IN.tif OUT.tif"
        )
    if dataset.rpcs and dataset.transform.is_identity:  # a satellite level-1 product
        raise InputError(
            f"{what} {name} is placed by its sensor model (RPCs), not on a grid: "
            "orthorectify it first, e.g. gdalwarp -rpc -t_srs EPSG:<UTM zone> IN.tif OUT.tif "
            "(with -to RPC_DEM=dem.tif for terrain)"
        )
    if dataset.crs is None:
        raise InputError(f"{what} {name} has no CRS: it must be georeferenced")
    if dataset.transform.is_identity:
        raise InputError(f"{what} {name} has no geotransform: it must be georeferenced")
    transform = dataset.transform
    if not all(math.isfinite(v) for v in transform[:6]) or transform.determinant == 0:
        raise InputError(
            f"{what} {name} is not georeferenced: its geotransform {tuple(transform[:6])} "
            "is singular or not finite"
        )
    return RasterGrid(dataset.crs, dataset.transform, dataset.width, dataset.height)


def select_bands(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...] | None, what: str
) -> tuple[int, ...]:
    """1 or 3 bands: the model is RGB; a single band is repeated to three.

    Without a choice, a 1-band raster, a 3-band one, or one whose first three bands
    GDAL calls red, green and blue (RGB + alpha, say) need none; any other (a 7-band
    Landsat file) must say which bands, rather than silently getting 1, 2, 3. A
    paletted band is refused: it holds colour-table indices (often land-cover
    classes), not intensities, and super-resolved as grey levels they would come out
    as other classes."""
    bands = _chosen_bands(dataset, bands, what)
    refuse_paletted(dataset, bands, what)
    return bands


def refuse_paletted(dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], what: str) -> None:
    """A paletted band holds colour-table indices, not intensities."""
    for band in bands:
        if dataset.colorinterp[band - 1] == ColorInterp.palette:
            raise InputError(
                f"{what} {raster_name(dataset)} band {band} is paletted: its values index a "
                "colour table, they are not intensities the model can super-resolve; expand "
                "it to RGB first, e.g. gdal_translate -expand rgb IN.tif OUT.tif"
            )


def _chosen_bands(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...] | None, what: str
) -> tuple[int, ...]:
    """The bands given, checked, or the ones a raster needs no choice for."""
    if bands is None:
        rgb = tuple(dataset.colorinterp[:MODEL_BANDS]) == (
            ColorInterp.red,
            ColorInterp.green,
            ColorInterp.blue,
        )
        if dataset.count == MODEL_BANDS or (dataset.count > MODEL_BANDS and rgb):
            return (1, 2, 3)
        if dataset.count == 1:
            return (1,)
        flag = "--ref-bands" if what == "reference" else "--bands"
        names = ", ".join(f"{i}={d}" for i, d in enumerate(dataset.descriptions, start=1) if d)
        raise InputError(
            f"{what} {raster_name(dataset)} has {dataset.count} bands"
            + (f" ({names})" if names else "")
            + f": choose 3 (red, green, blue) or 1 with {flag}, e.g. {flag} 3,2,1"
        )
    if len(bands) not in (1, MODEL_BANDS):
        raise InputError(f"{what} bands {bands}: give 1 or 3 band numbers")
    refuse_missing_bands(dataset, bands, what)
    return bands


def refuse_missing_bands(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], what: str
) -> None:
    """Band numbers beyond the raster's count, named in one line after `what`."""
    wrong = [band for band in bands if not 1 <= band <= dataset.count]
    if wrong:
        raise InputError(
            f"{what} {raster_name(dataset)} has {dataset.count} bands; "
            f"band {wrong[0]} does not exist"
        )


def band_validity(
    dataset: rasterio.io.DatasetReader,
    bands: tuple[int, ...],
    window: Window,
    values: np.ndarray | None = None,
) -> np.ndarray | None:
    """bands x H x W: where each band is valid, as GDAL's mask of that band says
    (nodata value, alpha or mask band), and, in a floating-point raster, where the
    value is finite: NaN and infinity are holes whatever the nodata tag says (one of
    them would spread through the model's convolutions over a whole tile). `values`:
    the window's values, if already read. None when every pixel is valid; without
    reading anything when the dataset declares no mask and is not floating-point.
    Bands can differ: in a Landsat 7 scene water is nodata in two bands only."""
    floating = is_floating(dataset, bands)
    masked = declares_mask(dataset, bands)
    if not masked and not floating:
        return None
    valid = dataset.read_masks(bands, window=window) > 0 if masked else None
    if floating:
        finite = np.isfinite(dataset.read(bands, window=window) if values is None else values)
        if valid is None:
            return None if finite.all() else finite
        valid &= finite
    return valid


def is_floating(dataset: rasterio.io.DatasetReader, bands: tuple[int, ...]) -> bool:
    return any(np.issubdtype(np.dtype(dataset.dtypes[band - 1]), np.floating) for band in bands)


def declares_mask(dataset: rasterio.io.DatasetReader, bands: tuple[int, ...]) -> bool:
    """Whether any of these bands can have invalid pixels (nodata, alpha, mask band)."""
    return not all(MaskFlags.all_valid in dataset.mask_flag_enums[band - 1] for band in bands)


def decimated_shape(dataset: rasterio.io.DatasetReader, pixels: int) -> tuple[int, int]:
    """(height, width) of a whole-raster read of about `pixels` pixels at most: bounded
    memory however large the raster (GDAL reads overviews where there are some)."""
    step = max(1.0, (dataset.width * dataset.height / pixels) ** 0.5)
    return max(1, int(dataset.height / step)), max(1, int(dataset.width / step))


def to_model_bands(unit: np.ndarray) -> np.ndarray:
    """bands x H x W with 1 or 3 bands -> 3 bands: the model is RGB."""
    return np.repeat(unit, MODEL_BANDS, axis=0) if unit.shape[0] == 1 else unit


def warp_to_grid(
    source: rasterio.io.DatasetReader, grid: RasterGrid, resampling: Resampling
) -> WarpedVRT:
    """`source` seen through `grid` (any CRS, resolution, rotation), read window by window.

    Without a nodata value or an alpha band an alpha band is added, so that the areas
    outside the source read as invalid in `dataset_mask`.
    """
    has_alpha = any(MaskFlags.alpha in flags for flags in source.mask_flag_enums)
    return WarpedVRT(
        source,
        crs=grid.crs,
        transform=grid.transform,
        width=grid.width,
        height=grid.height,
        resampling=resampling,
        add_alpha=source.nodata is None and not has_alpha,
    )


def untagged_zeros(dataset: rasterio.io.DatasetReader, bands: tuple[int, ...]) -> float:
    """Share of pixels that are 0 in every band, for a raster that declares no mask; 0.0
    for one that does (its fill is masked already): a large share is usually fill that
    the file forgot to tag. Estimated on `_ZERO_SAMPLES`^2 windows from corner to corner
    (where fill usually is), the edge ones weighing half as they stand for half as much
    of the raster, each window inside one block of the file where its blocks allow: it
    costs the same few block decodes however large the raster. A decimated read of one
    without overviews decodes all of it (0.19 s for the 2041 x 1860 Landsat test scene,
    about 30 times that for a Sentinel-2 tile); 64 windows of 16 pixels across a 2176^2
    deflate reference decoded nearly every block, 49 ms, where these take 13. On the
    Landsat test files (2.4 % and 16.5 % fill) they estimate 4.7 % and 16.7 %."""
    if declares_mask(dataset, bands):
        return 0.0
    block_rows, block_cols = dataset.block_shapes[bands[0] - 1]
    rows, height = _sample_starts(dataset.height, block_rows)
    cols, width = _sample_starts(dataset.width, block_cols)
    zeros = total = 0.0
    for row, row_weight in rows.items():
        for col, col_weight in cols.items():
            values = dataset.read(bands, window=Window(col, row, width, height))
            zeros += row_weight * col_weight * float((values == 0).all(axis=0).mean())
            total += row_weight * col_weight
    return zeros / total


def _sample_starts(length: int, block: int) -> tuple[dict[int, float], int]:
    """({start: weight}, size) of `_ZERO_SAMPLES` windows along one axis, spread from
    one end to the other (the two ends weigh half), each moved back just enough not to
    cross into the next block where the blocks are at least a window long: one block
    decoded per window. Windows that coincide (a short axis) add their weights."""
    side = min(_ZERO_SAMPLE_SIDE, length)
    positions = np.linspace(0, length - side, _ZERO_SAMPLES).astype(int).tolist()
    starts: dict[int, float] = {}
    for index, position in enumerate(positions):
        if block >= side:
            position = min(position, (position // block + 1) * block - side)
        weight = 0.5 if index in (0, len(positions) - 1) else 1.0
        starts[position] = starts.get(position, 0.0) + weight
    return starts, side
