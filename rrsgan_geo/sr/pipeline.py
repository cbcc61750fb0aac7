"""`sr` as a library call: scene + reference -> georeferenced 4x GeoTIFF.

`planning.plan_sr` checks every input and says what a run would do (the CLI's
--dry-run); `super_resolve` runs the plan: co-registration, strips read ahead on reader
threads, the model, seams blended, rows streamed to the output. Both are plain
functions that a Dask task can call too; progress is reported through a callback,
never printed.
"""

import dataclasses
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from rrsgan_geo import __version__
from rrsgan_geo.errors import OutputError
from rrsgan_geo.geo.grids import on_sr_pixels
from rrsgan_geo.geo.locations import HttpOptions, display_name, gdal_path
from rrsgan_geo.geo.rasters import band_validity
from rrsgan_geo.model import RRSNet
from rrsgan_geo.sr.band_injection import DetailInjection
from rrsgan_geo.sr.blending import RowBandBlender
from rrsgan_geo.sr.co_registration import (
    ReferenceOffset,
    co_register,
    measure_scene_blur,
    measuring_layout,
)
from rrsgan_geo.sr.diagnostic_maps import DiagnosticMaps
from rrsgan_geo.sr.inference import TileModel, model_inputs
from rrsgan_geo.sr.output import StreamingGeoTIFF, tiled_profile
from rrsgan_geo.sr.planning import SROptions, SRPlan
from rrsgan_geo.sr.scene_blur import SceneBlur, default_scene_blur, given_scene_blur
from rrsgan_geo.sr.sources import (
    BLOCKWISE_WARPING,
    PREFETCH_BATCHES,
    STRIP_TILES,
    ReferenceSpec,
    Strip,
    TileReader,
    reader_threads,
)
from rrsgan_geo.sr.tiling import Tile, TileLayout
from rrsgan_geo.upscaling import SCALE


@dataclass(frozen=True)
class Generator:
    """A generator ready to run, with what the output's tags must say about it."""

    model: RRSNet
    name: str
    sha256: str
    margin: int


@dataclass
class SRReport:
    output: Path
    lr_size: tuple[int, int]
    sr_size: tuple[int, int]
    tiles: int
    tiles_run: int
    footprint_coverage: float
    pixel_coverage: float
    """Fraction of SR pixels with a valid reference pixel (after warping, masks)."""
    device: str
    precision: str
    """What the model ran in: --precision auto resolved for the device and the output."""
    batch_size: int
    oom_halvings: int
    seconds: float
    model_seconds: float
    mean_relevance: float | None = None
    """Mean relevance where a reference exists (with --relevance-map), None otherwise."""
    tile_server_errors: int = 0
    """Strips whose tile-service reference still had failing tiles after the retries
    (those tiles were treated as missing reference)."""
    reference_offsets: tuple[ReferenceOffset, ...] = ()
    """What co-registration moved each reference by (empty without it)."""
    scene_blur: SceneBlur | None = None
    """The blur the model was told the scene has, and where it came from."""
    weights: dict[str, str] | None = None
    """The weight file's name and sha256, as the output's tags record them."""
    low_contrast_tiles: int = 0
    """Tiles the model ran stretched (`contrast`): a faint 4-pixel pattern of the model's
    own is largest there, which views of a self-ensemble average out."""


TileCallback = Callable[[int], None]


def super_resolve(
    plan: SRPlan,
    generator: Generator,
    options: SROptions,
    on_tiles: TileCallback | None = None,
) -> SRReport:
    """Run the plan: references co-registered (unless turned off), then tiles row by
    row, blended, streamed to the output file."""
    with rasterio.Env(**options.http.gdal_config(), **BLOCKWISE_WARPING):
        offsets: tuple[ReferenceOffset, ...] = ()
        if options.co_register and plan.references:
            plan, offsets = co_registered_plan(plan, options.http)
        scene_blur = resolve_scene_blur(plan, options)
        report = _super_resolve(plan, generator, options, on_tiles, scene_blur)
    return dataclasses.replace(report, reference_offsets=offsets)


def resolve_scene_blur(plan: SRPlan, options: SROptions) -> SceneBlur:
    """The blur `options.scene_blur` names, or (`auto`) the one measured on the plan's
    references (`co_registration.measure_scene_blur`), else the default."""
    given = given_scene_blur(options.scene_blur)
    if given is not None:
        return given
    layout = measuring_layout((plan.layout.width, plan.layout.height))
    if not plan.references or layout is None:
        return default_scene_blur("no reference" if layout else "a scene too small to measure")
    reader = tile_reader(plan, plan.references, options.http, layout)
    try:
        return measure_scene_blur(reader)
    finally:
        reader.close()


def co_registered_plan(
    plan: SRPlan, http: HttpOptions
) -> tuple[SRPlan, tuple[ReferenceOffset, ...]]:
    """The plan with each reference moved onto the scene, and what each was moved by."""

    def reader_for(spec: ReferenceSpec, layout: TileLayout) -> TileReader:
        return tile_reader(plan, (spec,), http, layout)

    size = (plan.layout.width, plan.layout.height)
    moved, offsets = co_register(plan.references, size, reader_for)
    return dataclasses.replace(plan, references=moved), offsets


def tile_reader(
    plan: SRPlan,
    references: tuple[ReferenceSpec, ...],
    http: HttpOptions,
    layout: TileLayout | None = None,
    column_parts: int = 1,
) -> TileReader:
    """A reader of the plan's scene with `references`, in `layout` (default: the plan's),
    each reference warped by `column_parts` threads side by side."""
    return TileReader(
        plan.scene_path,
        plan.model_bands,
        plan.model_scaling,
        layout or plan.layout,
        references,
        plan.scene_window,
        http,
        column_parts,
    )


def _super_resolve(
    plan: SRPlan,
    generator: Generator,
    options: SROptions,
    on_tiles: TileCallback | None,
    scene_blur: SceneBlur,
) -> SRReport:
    started = time.perf_counter()
    device = torch.device(plan.device)
    layout = plan.layout
    batch_size = plan.batch_size
    tags = _provenance_tags(plan, generator, options)
    tags["RRSGAN_SCENE_BLUR"] = json.dumps(scene_blur.record())
    maps = DiagnosticMaps(
        options.relevance_map,
        options.consistency_map,
        plan.sr_grid,
        plan.lr_grid,
        overwrite=options.overwrite,
        tags=tags,
    )
    runner = TileModel(
        generator.model,
        device,
        plan.precision,
        batch_size,
        maps.with_relevance,
        views=options.self_ensemble,
        blur=scene_blur.sigma,
    )
    bands = 4 if maps.with_relevance else 3  # the relevance is blended as a 4th band
    blender = RowBandBlender(layout, bands, device)
    tally = _Tally(device, maps.with_relevance)
    prefetcher = _Prefetcher(plan, max(batch_size, STRIP_TILES), options.http)
    # Reading, warping, degradation and blending share the cores the readers leave;
    # the model alone gets all of them (it runs while the readers wait).
    pipeline_threads = torch.get_num_threads()
    if device.type == "cpu":
        pipeline_threads = max(1, pipeline_threads - prefetcher.readers_count)
    with (
        rasterio.open(gdal_path(plan.scene_path)) as scene,
        StreamingGeoTIFF(
            plan.output_path,
            _output_profile(plan, {} if options.cog else options.creation_options),
            overwrite=options.overwrite,
            cog_options=options.creation_options if options.cog else None,
            tags=tags,
            descriptions=plan.descriptions,
            meanings=plan.meanings,
            colours=plan.colours,
        ) as output,
        maps,
        prefetcher as strips,
    ):
        bands_of = DetailInjection(
            scene,
            plan.scene_bands,
            plan.model_bands,
            plan.scaling,
            plan.model_scaling,
            plan.scene_window,
        )
        for row, strip, row_done in strips:
            sr_tiles = None
            if strip.kept:
                with _torch_threads(pipeline_threads):
                    inputs = model_inputs(strip, device, scene_blur.sensor)
                sr_tiles = runner(inputs)
            with _torch_threads(pipeline_threads):
                _blend_strip(strip, sr_tiles, blender, tally)
                finished_row = blender.finish_row(row) if row_done else None
            if finished_row is not None:
                top, finished = finished_row[0], finished_row[1].cpu().numpy()
                if not np.isfinite(finished).all():
                    raise OutputError(
                        "the model's output is not finite (NaN or infinity) in rows from "
                        f"{top}: the weights or the scaling are out of range; nothing written"
                    )
                lr_rows = _lr_rows(plan, scene, top, finished.shape[1])
                lr_valid = band_validity(scene, plan.scene_bands, lr_rows)
                unit = bands_of.rows(top, finished[:3])
                output.write_rows(top, _to_output(unit, plan, lr_valid), _mask(plan, lr_valid))
                if maps.writers:
                    lr_values = scene.read(plan.scene_bands, window=lr_rows).astype(np.float32)
                    sr_values = plan.scaling.to_values(unit)
                    relevance = finished[3] if maps.with_relevance else None
                    any_valid = None if lr_valid is None else lr_valid.any(axis=0)
                    maps.write(top, relevance, sr_values, lr_values, any_valid)
            if on_tiles is not None:
                on_tiles(len(strip.tiles))
    sr_pixels = plan.sr_grid.width * plan.sr_grid.height
    mean_relevance = None
    if maps.with_relevance and tally.valid_ref_pixels:
        mean_relevance = float(tally.relevance_sum) / tally.valid_ref_pixels
    return SRReport(
        plan.output_path,
        (plan.lr_grid.width, plan.lr_grid.height),
        (plan.sr_grid.width, plan.sr_grid.height),
        layout.count,
        tally.tiles_run,
        plan.footprint_coverage,
        tally.valid_ref_pixels / sr_pixels,
        plan.device,
        plan.precision,
        runner.batch_size,
        runner.oom_halvings,
        time.perf_counter() - started,
        runner.model_seconds,
        mean_relevance,
        sum(reader.server_errors for reader in prefetcher.readers),
        scene_blur=scene_blur,
        weights={"file": generator.name, "sha256": generator.sha256},
        low_contrast_tiles=runner.low_contrast_tiles,
    )


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run torch's CPU operations with `count` threads, then go back to the count the
    caller had (the model runs with all of them)."""
    previous = torch.get_num_threads()
    if count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class _Tally:
    """What the report counts, over the tiles' owned cores (each SR pixel once)."""

    device: torch.device
    with_relevance: bool
    tiles_run: int = 0
    valid_ref_pixels: int = 0
    relevance_sum: torch.Tensor | float = 0.0
    """Relevance summed where the reference is valid (--relevance-map), kept on the
    device so that counting does not wait for the GPU."""


def _blend_strip(
    strip: Strip, sr_tiles: torch.Tensor | None, blender: RowBandBlender, tally: _Tally
) -> None:
    """Add the strip's SR tiles (those of `strip.kept`, in order) to the blender."""
    sr_tiles = iter(() if sr_tiles is None else sr_tiles)
    for index, tile in enumerate(strip.tiles):
        if index not in strip.kept:
            blender.add_empty(tile)
            continue
        sr_tile = next(sr_tiles)
        blender.add(tile, sr_tile)
        tally.tiles_run += 1
        if strip.ref_valid is None:
            continue
        rows, cols = _owned_core(strip, index, blender.layout)
        valid = strip.ref_valid[rows, strip.sr_columns(index)][:, cols]
        tally.valid_ref_pixels += int(valid.sum())
        if tally.with_relevance:
            valid = torch.from_numpy(valid).to(tally.device, non_blocking=True)
            tally.relevance_sum += (sr_tile[3, rows, cols] * valid).sum()


def _owned_core(strip: Strip, index: int, layout: TileLayout) -> tuple[slice, slice]:
    """(rows, columns) of tile `index`'s SR output that no other tile covers: the
    tile without its margins, clipped to the scene. Counts over these add up to the
    whole scene once."""
    tile = strip.tiles[index]
    rows = min(layout.tile, layout.height - tile.row * layout.tile) * SCALE
    cols = min(layout.tile, layout.width - tile.col * layout.tile) * SCALE
    start = layout.margin * SCALE
    return slice(start, start + rows), slice(start, start + cols)


def _lr_rows(plan: SRPlan, scene: rasterio.io.DatasetReader, top: int, sr_rows: int) -> Window:
    """The window of the scene's LR rows under SR rows [top, top + sr_rows)."""
    window = plan.scene_window or Window(0, 0, scene.width, scene.height)
    return Window(window.col_off, window.row_off + top // SCALE, window.width, sr_rows // SCALE)


def _to_output(unit: np.ndarray, plan: SRPlan, lr_valid: np.ndarray | None) -> np.ndarray:
    """Blended [0, 1] rows in the scene's bands (`DetailInjection.rows`) -> its dtype
    and nodata.

    A band's output pixel is nodata exactly where that band of the scene is (`lr_valid`:
    the scene's per-band validity under these rows), NaN included (a float scene's
    NaN fill was given made-up values); a valid value that happens to equal nodata is
    nudged off it (as GDAL's warper does), so no real pixel reads back as a hole."""
    values = plan.scaling.from_unit(unit, np.dtype(plan.dtype))
    if plan.nodata is None:
        return values
    nodata = np.asarray(plan.nodata).astype(values.dtype)
    if not np.isnan(nodata):  # the model's values are finite: none can be NaN already
        values[values == nodata] = nudged_off(nodata)
    if lr_valid is not None:
        values[~on_sr_pixels(lr_valid)] = nodata
    return values


def _mask(plan: SRPlan, lr_valid: np.ndarray | None) -> np.ndarray | None:
    """The output's mask band for a scene that marks its holes without a nodata value
    (an alpha band, a mask band): 255 where any band of the scene is valid, 0 under
    its holes, which would otherwise read back as valid made-up pixels. None where
    nodata values say it (`_to_output`) or the scene has no holes."""
    if plan.nodata is not None or lr_valid is None:
        return None
    return on_sr_pixels(lr_valid.any(axis=0)).astype(np.uint8) * 255


def nudged_off(nodata: np.ndarray) -> np.ndarray:
    """The nearest value of nodata's dtype that is not nodata (towards the middle of
    the range for integers: 0 -> 1, 255 -> 254 for uint8)."""
    dtype = nodata.dtype
    if np.issubdtype(dtype, np.integer):
        step = 1 if nodata < np.iinfo(dtype).max else -1
        return (nodata.astype(np.int64) + step).astype(dtype)
    return np.nextafter(nodata, np.asarray(np.inf if nodata <= 0 else -np.inf, dtype=dtype))


def _output_profile(plan: SRPlan, creation_options: dict[str, str]) -> dict:
    profile = tiled_profile(plan.sr_grid, len(plan.scene_bands), plan.dtype, plan.nodata)
    profile.update({key.lower(): value for key, value in creation_options.items()})
    return profile


def _provenance_tags(plan: SRPlan, generator: Generator, options: SROptions) -> dict[str, str]:
    """What the output records of its making: the plan's decisions (device, precision,
    batch), what was asked (`options`) and the weights."""
    recorded: dict[str, object] = {
        "bands": plan.scene_bands,
        "rgb_bands": plan.model_bands,
        "batch_size": plan.batch_size,
    }
    for name in ("nodata", "ref_nodata"):  # nodata values the user declared
        if getattr(options, name) is not None:
            recorded[name] = getattr(options, name)
    return {
        "RRSGAN_GEO_VERSION": __version__,
        "RRSGAN_MODEL": generator.name,
        "RRSGAN_MODEL_SHA256": generator.sha256,
        # File names only: an output carries no local paths of the machine it was made on.
        "RRSGAN_SCENE": display_name(plan.scene_path),
        "RRSGAN_REFERENCE": ";".join(map(display_name, plan.ref_paths)) or "none",
        "RRSGAN_REFERENCE_COVERAGE": f"{plan.footprint_coverage:.4f}",
        "RRSGAN_TILE": str(plan.layout.tile),
        "RRSGAN_MARGIN": str(plan.layout.margin),
        "RRSGAN_SCALING": plan.scaling.describe(),
        "RRSGAN_REF_SCALING": ";".join(spec.scaling.describe() for spec in plan.references)
        or "none",
        "RRSGAN_REF_RESAMPLING": options.ref_resampling,
        # (rows, cols) of the SR grid each reference was moved by to lie on the scene.
        "RRSGAN_REF_OFFSETS": ";".join(f"{r},{c}" for r, c in (s.offset for s in plan.references))
        or "none",
        "RRSGAN_DEVICE": plan.device,
        "RRSGAN_PRECISION": plan.precision,
        "RRSGAN_SELF_ENSEMBLE": str(options.self_ensemble),
        "RRSGAN_OPTIONS": json.dumps(recorded),
    }


StripJob = tuple[int, Strip, bool]


def reference_column_parts(readers: int) -> int:
    """Threads that warp each strip's reference side by side (`ColumnSplitView`): two
    where a single reader reads the strips one at a time (2 or 3 cores), so that the
    warping, the pipeline's largest cost, has every core; one where several readers
    already warp strips side by side."""
    return 2 if readers == 1 and (os.cpu_count() or 1) >= 2 else 1


class _Prefetcher:
    """Reads the next strips on a pool of reader threads while the model runs.

    Yields (tile row, strip, whether the row is complete), in order. Each reader thread
    has its own dataset handles (GDAL handles are not shared across threads); at most
    `depth` strips are in flight, so memory stays bounded. Leaving (at the end, on an
    error or on Ctrl-C) cancels what is queued and waits for the reads under way.
    """

    def __init__(self, plan: SRPlan, strip_tiles: int, http: HttpOptions) -> None:
        self.plan = plan
        self.http = http
        self.readers_count = reader_threads()
        self.depth = self.readers_count + PREFETCH_BATCHES
        self.jobs = [
            (row, tiles[start : start + strip_tiles], start + strip_tiles >= len(tiles))
            for row in range(plan.layout.rows)
            for tiles in [plan.layout.tiles_in_row(row)]
            for start in range(0, len(tiles), strip_tiles)
        ]
        self.pool = ThreadPoolExecutor(self.readers_count, thread_name_prefix="rrsgan-reader")
        self.pending: deque[tuple[int, Future, bool]] = deque()
        self.local = threading.local()
        self.readers: list[TileReader] = []
        self.lock = threading.Lock()

    def __enter__(self) -> Iterator[StripJob]:
        return self._consume()

    def __exit__(self, *exc_info: object) -> None:
        for _, future, _ in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for reader in self.readers:
            reader.close()

    def _consume(self) -> Iterator[StripJob]:
        jobs = iter(self.jobs)
        for row, tiles, row_done in jobs:
            self.pending.append((row, self.pool.submit(self._read, tiles), row_done))
            if len(self.pending) < self.depth:
                continue
            yield self._next()
        while self.pending:
            yield self._next()

    def _next(self) -> StripJob:
        row, future, row_done = self.pending.popleft()
        return row, future.result(), row_done  # a reader's error is raised here

    def _read(self, tiles: list[Tile]) -> Strip:
        reader = getattr(self.local, "reader", None)
        if reader is None:
            parts = reference_column_parts(self.readers_count)
            reader = tile_reader(self.plan, self.plan.references, self.http, column_parts=parts)
            with self.lock:
                self.readers.append(reader)
            self.local.reader = reader
        return reader.read(tiles)
