"""Writing the SR raster: temp file, block-aligned streaming writes, rename on success.

Nothing that looks finished exists at the destination until the whole run succeeded:
the data goes to a hidden `.NAME.*.part` file beside it (same filesystem, so the final
rename is atomic), which is removed on any error or interrupt.
"""

import itertools
import logging
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, Interleaving

from rrsgan_geo.errors import OutputError
from rrsgan_geo.files import new_temp_file, publish
from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.geo.rasters import GDAL_ERRORS, gdal_message

BLOCK = 256


@dataclass(frozen=True)
class BandMeaning:
    """What a band's stored values mean (GDAL's scale, offset and units): the output
    stores the scene's units, so the scene's meaning is copied to it. Landsat surface
    reflectance, say, is DN x 2.75e-05 - 0.2; without them the output's DNs say
    nothing."""

    scale: float = 1.0
    offset: float = 0.0
    units: str = ""

    @classmethod
    def of(cls, dataset: rasterio.io.DatasetReader, band: int) -> "BandMeaning":
        index = band - 1
        return cls(dataset.scales[index], dataset.offsets[index], dataset.units[index] or "")


def tiled_profile(grid: RasterGrid, count: int, dtype: str, nodata: float | None) -> dict:
    """What `StreamingGeoTIFF` writes on `grid`: tiled in BLOCK x BLOCK blocks,
    deflate with the predictor for the dtype, compressed on all cores, BigTIFF where the
    file could pass 4 GB (an SR output, or a float32 map on the SR grid, easily does).
    Extra bands are data, not alpha: without ALPHA=UNSPECIFIED a compressed red, green,
    blue + NIR file reads its NIR back as an alpha band (a mask)."""
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    return {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": count,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "predictor": 3 if floating else 2,
        "bigtiff": "IF_SAFER",
        "num_threads": "ALL_CPUS",  # GDAL compresses blocks on all cores
        "alpha": "UNSPECIFIED",
    }


class _GDALWarnings(logging.Handler):
    """Collects the warnings GDAL reports through rasterio's logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def validate_creation_options(options: dict[str, str], cog: bool) -> None:
    """Try the user's creation options on a tiny in-memory file with the driver that will
    use them: GDAL only warns about an unknown option or value (COMPRESS=BOGUS gave a
    silently uncompressed output), so its warnings become an error here, before work."""
    if not options:
        return
    logger = logging.getLogger("rasterio._env")
    handler = _GDALWarnings()
    logger.addHandler(handler)
    profile = {
        "width": 16,
        "height": 16,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:4326",
        "transform": rasterio.Affine(0.1, 0, 10, 0, -0.1, 10),
    }
    try:
        with rasterio.MemoryFile() as memory:
            gtiff_options = {} if cog else options
            with memory.open(driver="GTiff", **profile, **gtiff_options) as dataset:
                dataset.write(np.zeros((1, 16, 16), np.uint8))
            if cog:
                with rasterio.MemoryFile() as target:
                    rasterio.shutil.copy(memory.name, target.name, driver="COG", **options)
    except rasterio.errors.RasterioError as error:
        raise OutputError(f"--co: {error}") from None
    finally:
        logger.removeHandler(handler)
    problems = [m for m in handler.messages if "option" in m.lower() or "value" in m.lower()]
    if problems:
        driver = "COG" if cog else "GTiff"
        raise OutputError(f"--co for the {driver} driver: {problems[0]}")


# What the writer produces (a GeoTIFF, or a COG with --cog): other names would lie.
OUTPUT_SUFFIXES = (".tif", ".tiff")


def check_destination(
    path: Path,
    overwrite: bool,
    suffixes: tuple[str, ...] = OUTPUT_SUFFIXES,
    kind: str = "a GeoTIFF (or a COG with --cog)",
) -> None:
    """Refuse what cannot end well before any work; remove a dead run's leftovers.
    `suffixes` and `kind`: the names a file of that kind may have (the output image by
    default; a quicklook, a STAC Item)."""
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{path}: the output is {kind}; name it {' or '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it")
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not a file name")
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    probes: list[Path] = []
    try:  # really try: permission bits say nothing for root or read-only mounts
        new_temp_file(path, ".probe", probes)
    except OSError:
        raise OutputError(f"output folder is not writable: {folder}") from None
    finally:
        for probe in probes:
            probe.unlink(missing_ok=True)
    remove_stale_parts(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(path: Path) -> list[Path]:
    """Delete temp files left beside `path` by runs that died (SIGKILL, power loss)."""
    removed = []
    for candidate in path.parent.glob(f".{path.name}.*.part*"):
        pid = candidate.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def check_complete(path: Path, destination: Path, sparse_ok: bool = False) -> None:
    """Every block of the written file is in it. GDAL reports a write that failed (a
    full disk, a quota) as a message, not as an error: without this, a file with its
    last blocks and its directory missing was published as a finished output, and
    could not even be opened. Reading each block's place from the TIFF directory costs
    about a microsecond a block; no pixel is decoded. `sparse_ok`: the file was written
    with SPARSE_OK, which leaves empty blocks out on purpose."""
    try:
        with rasterio.open(path) as written:
            missing = _first_missing_block(written, path.stat().st_size, sparse_ok)
    except GDAL_ERRORS:
        raise OutputError(
            f"writing {destination} failed: the file written cannot be read back"
            f"{_disk_hint(destination)}"
        ) from None
    if missing is not None:
        band, col, row = missing
        raise OutputError(
            f"writing {destination} failed: block {col},{row} of band {band} is missing"
            f"{_disk_hint(destination)}"
        )


def _first_missing_block(
    written: rasterio.io.DatasetReader, file_size: int, sparse_ok: bool
) -> tuple[int, int, int] | None:
    """(band, block column, block row) of the first block the directory lists nowhere,
    or somewhere past the end of the file; None when all are there."""
    block_rows, block_cols = written.block_shapes[0]
    rows, cols = -(-written.height // block_rows), -(-written.width // block_cols)
    bands = [1] if written.interleaving == Interleaving.pixel else written.indexes
    for band, row, col in itertools.product(bands, range(rows), range(cols)):
        offset = written.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", band)
        length = written.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", band)
        if offset and length:
            if int(offset) + int(length) > file_size:
                return band, col, row
        elif not sparse_ok:
            return band, col, row
    return None


def _asks_for_sparse(creation_options: dict) -> bool:
    """Whether the creation options let GDAL leave empty blocks out (SPARSE_OK)."""
    return any(
        key.upper() == "SPARSE_OK" and str(value).upper() in ("TRUE", "YES", "ON", "1")
        for key, value in creation_options.items()
    )


@contextmanager
def _gdal_write_errors(destination: Path) -> Iterator[None]:
    """A GDAL error while writing (a block, the directory, the COG copy) is an
    OutputError naming the output, not a traceback."""
    try:
        yield
    except GDAL_ERRORS as error:
        raise OutputError(
            f"writing {destination} failed: {gdal_message(error)}{_disk_hint(destination)}"
        ) from None


def _disk_hint(destination: Path) -> str:
    free = shutil.disk_usage(destination.parent).free
    return f" ({free / 2**20:.1f} MiB free there: the disk may be full)" if free < 2**30 else ""


class StreamingGeoTIFF:
    """A tiled, compressed GeoTIFF written row band by row band, finished atomically.

    With `cog_options` (a dict, possibly empty) the finished file is copied through
    GDAL's COG driver with those creation options, which adds the overviews.
    """

    def __init__(
        self,
        path: Path,
        profile: dict,
        *,
        overwrite: bool = False,
        cog_options: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        descriptions: tuple[str | None, ...] = (),
        meanings: tuple[BandMeaning, ...] = (),
        colours: tuple[ColorInterp, ...] = (),
    ) -> None:
        check_destination(path, overwrite)
        self.path = path
        self.overwrite = overwrite
        self.cog_options = cog_options
        self.profile = profile
        self.tags = tags or {}
        self.descriptions = descriptions
        self.meanings = meanings
        self.colours = colours
        self.pending_top = 0
        self.pending: list[np.ndarray] = []
        self.pending_masks: list[np.ndarray] = []
        self.dataset: rasterio.io.DatasetWriter | None = None
        self.temp_paths: list[Path] = []
        # Blocks are written (and compressed) on a thread while the next rows are made;
        # one write in flight at most, so memory stays bounded.
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="rrsgan-writer")
        self.in_flight: Future | None = None

    def __enter__(self) -> "StreamingGeoTIFF":
        try:
            temp = new_temp_file(self.path, ".part.tif", self.temp_paths)
            self.dataset = rasterio.open(temp, "w", **self.profile)
        except BaseException:
            # __exit__ does not run when __enter__ fails: a Ctrl-C that lands while the
            # file is created (the moment it appears) must not leave it behind.
            self._remove_temps()
            raise
        return self

    def write_rows(self, top: int, rows: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Rows arrive in order; they are written in whole blocks so that no compressed
        block is written twice. `mask` (rows x width, 0 = no data), given for every
        row or for none, goes to the file's mask band (GDAL's per-dataset mask)."""
        if top != self.pending_top + sum(chunk.shape[1] for chunk in self.pending):
            raise ValueError("rows must be written in order without gaps")
        self.pending.append(rows)
        if mask is not None:
            self.pending_masks.append(mask)
        buffered = sum(chunk.shape[1] for chunk in self.pending)
        whole = (buffered // BLOCK) * BLOCK
        if whole:
            self._flush(whole)

    def _flush(self, count: int) -> None:
        data = np.concatenate(self.pending, axis=1)
        mask = np.concatenate(self.pending_masks, axis=0) if self.pending_masks else None
        window = rasterio.windows.Window(0, self.pending_top, data.shape[2], count)
        self._wait()
        self.in_flight = self.writer.submit(
            self._write_block_rows, data[:, :count], None if mask is None else mask[:count], window
        )
        self.pending = [data[:, count:]] if count < data.shape[1] else []
        if mask is not None:
            self.pending_masks = [mask[count:]] if count < mask.shape[0] else []
        self.pending_top += count

    def _write_block_rows(
        self, data: np.ndarray, mask: np.ndarray | None, window: rasterio.windows.Window
    ) -> None:
        self.dataset.write(data, window=window)
        if mask is not None:
            self.dataset.write_mask(mask, window=window)

    def _wait(self) -> None:
        """Let the write in flight finish; its error, if any, is raised here."""
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            with _gdal_write_errors(self.path):
                in_flight.result()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._finish()
            else:
                self.writer.shutdown(wait=True, cancel_futures=True)
                self.dataset.close()
        finally:
            self.writer.shutdown(wait=True)
            self._remove_temps()

    def _remove_temps(self) -> None:
        for temp in self.temp_paths:
            temp.unlink(missing_ok=True)

    def _finish(self) -> None:
        if self.pending:
            self._flush(sum(chunk.shape[1] for chunk in self.pending))
        try:
            self._wait()
        except BaseException:
            self.dataset.close()
            raise
        if self.pending_top != self.dataset.height:
            self.dataset.close()
            raise OutputError(
                f"internal error: {self.pending_top} of {self.dataset.height} rows written"
            )
        self.dataset.update_tags(**self.tags)
        for band, description in enumerate(self.descriptions, start=1):
            if description:
                self.dataset.set_band_description(band, description)
        if any(meaning != BandMeaning() for meaning in self.meanings):
            self.dataset.scales = [meaning.scale for meaning in self.meanings]
            self.dataset.offsets = [meaning.offset for meaning in self.meanings]
            self.dataset.units = [meaning.units for meaning in self.meanings]
        if self.colours:
            self.dataset.colorinterp = self.colours
        with _gdal_write_errors(self.path):
            self.dataset.close()
        finished = self.temp_paths[-1]
        if self.cog_options is not None:
            cog_temp = new_temp_file(self.path, ".part.cog.tif", self.temp_paths)
            options = {
                "COMPRESS": "DEFLATE",
                "BIGTIFF": "IF_SAFER",
                "OVERVIEW_RESAMPLING": "AVERAGE",
            }
            options.update(self.cog_options)
            with _gdal_write_errors(self.path):
                rasterio.shutil.copy(finished, cog_temp, driver="COG", **options)
            finished = cog_temp
        creation = self.cog_options if self.cog_options is not None else self.profile
        check_complete(finished, self.path, _asks_for_sparse(creation))
        publish(finished, self.path, self.overwrite)
