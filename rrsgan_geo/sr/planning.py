"""Planning an `sr` run: every input checked, every choice made, nothing run.

`plan_sr` opens the scene and the references, decides bands, value scaling, nodata,
the output grid and the tiling, and refuses what cannot work (no reference where one
is needed, an output that would overwrite an input, a scene with no valid pixel) before
any output exists. The CLI's --dry-run prints the plan; `pipeline.super_resolve` runs it.
"""

import dataclasses
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window, from_bounds

from rrsgan_geo.devices import default_batch, resolve_device
from rrsgan_geo.errors import ConfigError, CoverageError, InputError, MemoryBudgetError, OutputError
from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.geo.locations import (
    HttpOptions,
    display_name,
    is_virtual,
    local_file,
    undeclared,
)
from rrsgan_geo.geo.rasters import (
    decimated_shape,
    declares_mask,
    declaring_nodata,
    georeferenced_grid,
    naming_read_failures,
    open_raster,
    raster_name,
    select_bands,
    untagged_zeros,
)
from rrsgan_geo.geo.references import COMMON_CRS, ReferenceIndex
from rrsgan_geo.geo.scaling import UNIT_LIMIT, ValueScaling, choose_scaling, count_unusable_values
from rrsgan_geo.geo.stac import is_stac, stac_hrefs
from rrsgan_geo.geo.tile_services import is_tile_template, open_tile_service
from rrsgan_geo.model.self_ensemble import check_views
from rrsgan_geo.sr.band_roles import band_roles
from rrsgan_geo.sr.inference import resolve_precision
from rrsgan_geo.sr.item_facts import acquisition_time, item_path, parse_stac_datetime
from rrsgan_geo.sr.memory_budget import (
    COMFORTABLE_SHARE,
    CPU_TILES,
    MemoryEstimate,
    available_memory,
    budget_message,
    estimate,
)
from rrsgan_geo.sr.output import (
    BandMeaning,
    check_destination,
    validate_creation_options,
)
from rrsgan_geo.sr.scene_blur import check_scene_blur
from rrsgan_geo.sr.sources import PREFETCH_BATCHES, STRIP_TILES, ReferenceSpec, reader_threads
from rrsgan_geo.sr.tiling import TileLayout, fitted_tile
from rrsgan_geo.upscaling import SCALE

_EMPTY_CHECK_PIXELS = 1 << 20  # decimated read that looks for any valid pixel


def default_tile(device: torch.device) -> int:
    """LR tile side when the user gives none. Each tile also computes 2 margins of
    context, a cost of (tile + 2m)^2 / tile^2: 2.25x at 64 with m = 16, 1.56x at 128,
    1.27x at 256. GPUs take 256 (one H100 ran the full model 1.8x faster than with 64).
    CPUs take 128 one tile at a time (`default_batch`): the compact model ran 1.47x
    faster than with 4 tiles of 64 and peaked lower, 2.3 GB vs 3.0 GB (the deformable
    layers' sampled columns grow with tile area times batch)."""
    return 256 if device.type == "cuda" else 128


@dataclass(frozen=True)
class SROptions:
    tile: int | None = None
    """LR pixels per tile side; None: `default_tile` for the device."""
    margin: int | None = None
    """LR pixels of context per tile side; None: the weights' own margin."""
    batch_size: int | None = None
    """Tiles per model call; None: `default_batch` for the device. Strips are read
    `STRIP_TILES` tiles at a time at least."""
    device: str = "auto"
    precision: str = "auto"
    """fp32, fp16, bf16 or auto (`inference.resolve_precision`: bf16 for 8-bit outputs
    where the hardware computes in bf16, else fp32)."""
    self_ensemble: int = 1
    """Rotated/mirrored views of each tile the model runs on and averages
    (`self_ensemble`): 1, 2, 4 or 8; the model's time grows in proportion."""
    scene_bands: tuple[int, ...] | None = None
    """The scene's bands to write, in order; None: all but alpha (`band_roles`)."""
    rgb_bands: tuple[int, ...] | None = None
    """The scene's red, green and blue bands (or 1 grey band) the model sees; None:
    found (`band_roles`)."""
    ref_bands: tuple[int, ...] | None = None
    scale: str | None = None
    ref_scale: str | None = None
    nodata: float | None = None
    """The scene's fill value where the file does not tag one (`locations.with_nodata`):
    left out of percentiles, nodata in the output. Replaces a value the file tags."""
    ref_nodata: float | None = None
    """The same for every reference: where it is missing, LR_UX4 stands in."""
    ref_resampling: str = "bilinear"
    allow_missing_ref: bool = False
    cog: bool = False
    creation_options: dict[str, str] = field(default_factory=dict)
    overwrite: bool = False
    bounds: tuple[float, float, float, float] | None = None
    """left, bottom, right, top in the scene's CRS: process only the pixels they touch."""
    http: HttpOptions = field(default_factory=HttpOptions)
    """Timeouts and retries for scenes and references read over HTTP or from buckets."""
    ref_zoom: int | None = None
    """Zoom level of XYZ/TMS tile-service references; None: from the SR pixel size."""
    ref_cache: Path | None = None
    """Folder where tile-service tiles are kept for later runs; None: no disk cache."""
    ref_asset: str | None = None
    """The asset of STAC items used as the reference; None: `visual`."""
    ref_prefer: str = "newest"
    """Which items of a STAC collection win where they overlap: newest or oldest."""
    relevance_map: Path | None = None
    """Also write the relevance attention's weight per output pixel here."""
    consistency_map: Path | None = None
    """Also write |downsample4x(SR) - LR| per scene pixel here."""
    co_register: bool = True
    """Move each reference onto the scene by the translation phase correlation measures
    on a few windows of the scene (`co_registration`) before the run."""
    scene_blur: str = "auto"
    """How blurred the scene is (`scene_blur.given_scene_blur`): auto (measured on the
    references), none (bicubic-like), a PSF sigma in LR px, or mtf:X."""
    quicklook: Path | None = None
    """A PNG of one window: bicubic | SR | reference | relevance (`quicklook`)."""
    stac: bool = False
    """Write a STAC Item beside the output (`stac_item`)."""
    stac_datetime: str | None = None
    """The Item's time where the scene says nothing of it: an ISO instant or START/END."""
    max_memory: int | None = None
    """Bytes of host memory the run may use (`memory_budget`); None: what the machine
    has available when the plan is made."""

    def __post_init__(self) -> None:
        check_views(self.self_ensemble)  # before anything is read or written
        check_scene_blur(self.scene_blur)


@dataclass(frozen=True)
class SRPlan:
    scene_path: str
    """A file, a GDAL /vsi path or a URL (see `locations`)."""
    ref_paths: tuple[str, ...]
    output_path: Path
    lr_grid: RasterGrid
    sr_grid: RasterGrid
    layout: TileLayout
    scene_bands: tuple[int, ...]
    """The scene's bands the output holds, in order."""
    scaling: ValueScaling
    """How `scene_bands`' values map to the model's [0, 1]."""
    model_bands: tuple[int, ...]
    """The scene's bands the model sees (3, or 1 repeated); the other written bands
    get their detail injected (`band_injection`)."""
    model_scaling: ValueScaling
    references: tuple[ReferenceSpec, ...]
    """The references whose footprints meet the scene's, best-covering first."""
    footprint_coverage: float
    dtype: str
    nodata: float | None
    descriptions: tuple[str, ...]
    meanings: tuple[BandMeaning, ...]
    """Scale, offset and units of the scene's bands, which the output's values share."""
    colours: tuple[ColorInterp, ...]
    """The written bands' colour interpretation in the scene (red, NIR's undefined...)."""
    scene_window: Window | None = None
    """The part of the scene processed (`--bounds`); None: all of it."""
    untagged_zeros: float = 0.0
    """Share of the scene's pixels that are 0 in every band when it tags no nodata
    (`rasters.untagged_zeros`): a large one is usually fill that `SROptions.nodata`
    should declare."""
    untagged_ref_zeros: tuple[tuple[str, float], ...] = ()
    """(name, share) for each local reference that tags no nodata: the same measure,
    for `SROptions.ref_nodata` (remote references are not read for it)."""
    ref_pixel_sizes: tuple[tuple[str, float], ...] = ()
    """(name, pixel side in the scene's CRS units, at the scene's centre) of each
    reference: one much coarser than the output's pixels has no detail of that scale
    to give (another date of the scene's own sensor, say)."""
    refs_no_finer_than_scene: tuple[tuple[str, float], ...] = ()
    """(name, pixel side) of each reference left out: no finer than the scene
    (`NO_FINER_THAN_SCENE`)."""
    notes: tuple[str, ...] = ()
    """What the user may want to change before trusting the output (`plan_notes`),
    measured once, before the run writes anything."""
    unusable_values: tuple[int, int] = (0, 0)
    """(NaN or infinite values, values clipped by the scaling) in the scene's bands
    (`scaling.count_unusable_values`): the first are treated as nodata."""
    acquired: datetime | None = None
    """When the scene was taken, from its tags or name (`item_facts.acquisition_time`)."""
    memory: MemoryEstimate | None = None
    """The host memory the run needs (`memory_budget`), the model's included where the
    plan was told its size (`plan_sr`'s `model_features`)."""
    options: SROptions = SROptions()
    """What the user asked for, which the run reads (`rrsgan_geo.sr.run`)."""
    device: str = "cpu"
    """The device the run uses (`--device` resolved once, here)."""
    precision: str = "fp32"
    """What the model runs in (`--precision auto` resolved for the device and dtype)."""
    batch_size: int = 1
    """Tiles per model call (`--batch-size`, else the device's default)."""


def _parse_resampling(name: str) -> Resampling:
    try:
        return Resampling[name]
    except KeyError:
        raise InputError(f"unknown resampling {name!r}: e.g. nearest, bilinear, cubic") from None


def plan_sr(
    scene_path: str | Path,
    references: str | Path | Sequence[str | Path] | None,
    output_path: str | Path,
    options: SROptions,
    margin: int,
    *,
    check_output: bool = True,
    model_features: int | None = None,
) -> SRPlan:
    """Check inputs and output; measure the references' coverage of the scene.

    The scene and each reference may be a file, a GDAL /vsi path or a URL.
    `references`: a raster, a folder of rasters, a glob, or several of these, in any
    mix of CRSs; those that meet the scene are used, composited per tile.
    `check_output=False` leaves the destination unchecked (a batch's dry run: its output
    folder is made only when it runs, and it skips outputs that exist itself).
    `model_features`: the generator's feature channels, which size its memory on the
    CPU (`memory_budget`); None leaves the model out of the estimate.
    """
    with rasterio.Env(**options.http.gdal_config()):
        return _plan_sr(
            str(scene_path),
            references,
            Path(output_path),
            options,
            margin,
            check_output,
            model_features,
        )


def _plan_sr(
    scene_path: str,
    references: str | Path | Sequence[str | Path] | None,
    output_path: Path,
    options: SROptions,
    margin: int,
    check_output: bool,
    model_features: int | None,
) -> SRPlan:
    maps = [path for path in (options.relevance_map, options.consistency_map) if path]
    for path in (output_path, *maps) if check_output else ():
        check_destination(path, options.overwrite)
    if options.quicklook is not None and check_output:
        check_destination(Path(options.quicklook), options.overwrite, (".png",), "a PNG")
    if options.stac and check_output:
        check_destination(item_path(output_path), options.overwrite, (".json",), "STAC JSON")
    if options.stac_datetime:
        parse_stac_datetime(options.stac_datetime)  # a bad one stops here, before any work
    if len({Path(path).resolve() for path in (output_path, *maps)}) != 1 + len(maps):
        raise OutputError("the output, --relevance-map and --consistency-map must differ")
    validate_creation_options(options.creation_options, options.cog)
    device = resolve_device(options.device)
    batch_size = options.batch_size or default_batch(device)
    tile = options.tile if options.tile is not None else default_tile(device)
    TileLayout(0, 0, tile, margin)  # validates tile and margin early
    scene_path = declaring_nodata(scene_path, options.nodata, "scene")
    with (
        open_raster(scene_path, "scene", options.http) as scene,
        naming_read_failures("scene", scene_path),  # statistics read pixels
    ):
        lr_grid = georeferenced_grid(scene, "scene")
        window = None
        if options.bounds is not None:
            window = _window_of_bounds(scene, options.bounds)
            lr_grid = lr_grid.shifted(window.col_off, window.row_off, window.width, window.height)
        roles = band_roles(scene, options.scene_bands, options.rgb_bands)
        bands = roles.written
        needed_scaling = choose_scaling(scene, roles.needed, options.scale, "scene")
        scaling = needed_scaling.subset(range(len(bands)))
        model_scaling = needed_scaling.subset(map(roles.needed.index, roles.visible))
        dtype, nodata = scene.dtypes[bands[0] - 1], scene.nodata
        # The scene's descriptions, else the scene band each output band is made from:
        # every output band says what it is, a reordered --bands included.
        descriptions = tuple(scene.descriptions[band - 1] or f"band {band}" for band in bands)
        meanings = tuple(BandMeaning.of(scene, band) for band in bands)
        colours = tuple(scene.colorinterp[band - 1] for band in bands)
        _refuse_empty_scene(scene, bands)
        zeros = untagged_zeros(scene, bands)
        acquired = acquisition_time(scene.tags(), display_name(scene_path))
        unusable = count_unusable_values(scene, bands, scaling, window)
    layout, memory = _layout_within_memory(
        lr_grid,
        options,
        device,
        batch_size,
        margin,
        model_features,
        len(bands),
        np.dtype(dtype).itemsize,
    )
    if isinstance(references, str | Path):
        references = [references]
    references = [
        open_tile_service(
            str(item),
            lr_grid.scaled_up(),
            options.ref_zoom,
            options.http,
            options.ref_cache,
            options.allow_missing_ref,
        )
        if is_tile_template(item)
        else item
        for item in references or []
    ]
    references, ranks = _expand_stac(references, lr_grid, options)
    planned = _plan_references(references, lr_grid, options, ranks)
    specs, coverage = planned.specs, planned.coverage
    for path in (output_path, *maps):
        _refuse_overwriting_inputs(path, [scene_path, *(spec.path for spec in specs)])
    if coverage == 0.0 and not options.allow_missing_ref and not planned.no_finer:
        given = ", ".join(map(display_name, references))
        reason = f"{given} does not overlap" if given else "no reference given for"
        raise CoverageError(
            f"{reason} the scene {undeclared(scene_path)}; pass --allow-missing-ref to run with "
            "LR_UX4 standing in for the reference"
        )
    plan = SRPlan(
        scene_path,
        tuple(spec.path for spec in specs),
        output_path,
        lr_grid,
        lr_grid.scaled_up(),
        layout,
        bands,
        scaling,
        roles.visible,
        model_scaling,
        specs,
        coverage,
        dtype,
        nodata,
        descriptions,
        meanings,
        colours,
        window,
        zeros,
        planned.untagged_zeros,
        planned.pixel_sizes,
        planned.no_finer,
        unusable_values=unusable,
    )
    if options.stac and acquired is None and not options.stac_datetime:
        raise ConfigError(
            f"--stac: the scene {undeclared(scene_path)} says nothing of when it was taken "
            "(no TIFFTAG_DATETIME, no date in its name): give --stac-datetime, e.g. "
            "2024-05-01 or 2024-05-01/2024-05-31"
        )
    return dataclasses.replace(
        plan,
        notes=plan_notes(plan),
        memory=memory,
        options=options,
        acquired=acquired,
        device=str(device),
        precision=resolve_precision(options.precision, device, dtype),
        batch_size=batch_size,
    )


def _layout_within_memory(
    grid: RasterGrid,
    options: SROptions,
    device: torch.device,
    batch: int,
    margin: int,
    model_features: int | None,
    bands: int,
    itemsize: int,
) -> tuple[TileLayout, MemoryEstimate | None]:
    """The tiles, and the memory they need. A given --tile is checked against the memory
    available; without one the CPU takes the largest of `CPU_TILES` that fits in a
    comfortable share of it (a GPU, or a machine that says nothing of its memory, the
    device's `default_tile`). Either way no larger than the scene needs: past its edge
    a tile reads only mirrored pixels (--tile 100000 on a 100 px scene asked for 28 GiB)."""
    budget = options.max_memory or available_memory()
    if options.tile is not None:
        candidates: tuple[int, ...] = (options.tile,)
    elif device.type == "cuda" or budget is None:
        candidates = (default_tile(device),)
    else:
        candidates = CPU_TILES

    def planned(tile: int) -> tuple[TileLayout, MemoryEstimate]:
        if options.tile is None or tile > max(grid.width, grid.height):
            tile = fitted_tile(tile, grid.width, grid.height)
        need = estimate(
            tile=tile,
            margin=margin,
            batch=batch,
            features=model_features or 0,
            model_on_host=device.type == "cpu",
            sr_width=grid.width * SCALE,
            bands=bands,
            itemsize=itemsize,
            strips_in_flight=(reader_threads() + PREFETCH_BATCHES) * max(batch, STRIP_TILES),
        )
        return TileLayout(grid.width, grid.height, tile, margin), need

    plans = [planned(tile) for tile in candidates]
    if budget is None:
        return plans[0]
    share = 1.0 if options.tile is not None else COMFORTABLE_SHARE
    for layout, need in plans:
        if need.total <= share * budget:
            return layout, need
    if options.tile is None and plans[-1][1].total <= budget:
        return plans[-1]
    fitting = [tile for tile in CPU_TILES if planned(tile)[1].total <= budget]
    way_out = (
        f"use --tile {fitting[0]}, or leave --tile out"
        if options.tile is not None and fitting
        else "process part of the scene with --bounds (the buffers grow with the output's "
        "width, not its height), or allow more with --max-memory"
    )
    raise MemoryBudgetError(budget_message(plans[-1][1], budget, way_out))


def _window_of_bounds(
    scene: rasterio.io.DatasetReader, bounds: tuple[float, float, float, float]
) -> Window:
    """Whole scene pixels touched by `bounds` (scene CRS), on the scene's pixel grid."""
    left, bottom, right, top = bounds
    if left >= right or bottom >= top:
        raise InputError(f"--bounds {bounds}: expected LEFT BOTTOM RIGHT TOP with left < right")
    exact = from_bounds(left, bottom, right, top, scene.transform)
    col0, row0 = math.floor(exact.col_off + 1e-9), math.floor(exact.row_off + 1e-9)
    col1 = math.ceil(exact.col_off + exact.width - 1e-9)
    row1 = math.ceil(exact.row_off + exact.height - 1e-9)
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(col1, scene.width), min(row1, scene.height)
    if col1 <= col0 or row1 <= row0:
        extent = ", ".join(f"{value:.10g}" for value in scene.bounds)
        raise CoverageError(
            f"--bounds {bounds} do not meet the scene {raster_name(scene)}, which spans "
            f"({extent}) in its CRS {scene.crs}"
        )
    return Window(col0, row0, col1 - col0, row1 - row0)


def _refuse_empty_scene(scene: rasterio.io.DatasetReader, bands: tuple[int, ...]) -> None:
    """A scene with no valid pixel would 'succeed' with an all-nodata output: refuse it.
    Looked at decimated, so it stays cheap however large the scene."""
    if not declares_mask(scene, bands):
        return  # every pixel is valid
    shape = decimated_shape(scene, _EMPTY_CHECK_PIXELS)
    if not scene.read_masks(bands, out_shape=(len(bands), *shape)).any():
        raise InputError(
            f"scene {raster_name(scene)} has no valid pixel in bands {bands}: nothing to do"
        )


def _refuse_overwriting_inputs(output_path: Path, inputs: list[str]) -> None:
    """--overwrite replaces an old output, never the data it is made from."""
    target = output_path.resolve()
    for path in map(local_file, inputs):
        if path is not None and path.resolve() == target:
            raise OutputError(f"-o {output_path} is an input of this run ({path}): choose another")


def _expand_stac(
    items: list[str | Path], lr_grid: RasterGrid, options: SROptions
) -> tuple[list[str | Path], dict[str, int]]:
    """STAC documents -> their assets' hrefs, with each href's rank in the collection
    (0 = preferred), which decides compositing ahead of coverage."""
    expanded: list[str | Path] = []
    ranks: dict[str, int] = {}
    for item in items:
        if not is_stac(item):
            expanded.append(item)
            continue
        footprint = lr_grid.footprint(COMMON_CRS)
        try:
            hrefs = stac_hrefs(
                str(item), footprint, options.http, options.ref_asset, options.ref_prefer
            )
        except CoverageError:
            if not options.allow_missing_ref:
                raise
            hrefs = []
        for rank, href in enumerate(hrefs):
            ranks[href] = rank
            expanded.append(href)
    return expanded, ranks


@dataclass(frozen=True)
class _PlannedReferences:
    specs: tuple[ReferenceSpec, ...] = ()
    """The references that meet the scene, best first."""
    coverage: float = 0.0
    """Their footprints' coverage of the scene."""
    untagged_zeros: tuple[tuple[str, float], ...] = ()
    """`SRPlan.untagged_ref_zeros`."""
    pixel_sizes: tuple[tuple[str, float], ...] = ()
    """`SRPlan.ref_pixel_sizes`."""
    no_finer: tuple[tuple[str, float], ...] = ()
    """`SRPlan.refs_no_finer_than_scene`."""


def _plan_references(
    items: list[str | Path], lr_grid: RasterGrid, options: SROptions, ranks: dict[str, int]
) -> _PlannedReferences:
    if not items:
        return _PlannedReferences()
    resampling = _parse_resampling(options.ref_resampling)
    index = ReferenceIndex.build(items, options.http)
    specs, zeros, pixel_sizes, no_finer, kept = [], [], [], [], []
    scene_pixel = lr_grid.pixel_size_in(lr_grid.crs, lr_grid.centre())
    for listed, _ in index.covering(lr_grid, ranks):
        path = declaring_nodata(listed, options.ref_nodata, "reference")
        with (
            open_raster(path, "reference", options.http) as ref,
            naming_read_failures("reference", path),  # statistics read pixels
        ):
            bands = select_bands(ref, options.ref_bands, "reference")
            grid = georeferenced_grid(ref, "reference")
            size = grid.pixel_size_in(lr_grid.crs, lr_grid.centre())
            if size >= NO_FINER_THAN_SCENE * scene_pixel:  # left out before reading pixels
                no_finer.append((display_name(path), size))
                continue
            scaling = choose_scaling(ref, bands, options.ref_scale, "reference")
            if not is_virtual(path):
                zeros.append((display_name(path), untagged_zeros(ref, bands)))
        pixel_sizes.append((display_name(path), size))
        specs.append(ReferenceSpec(path, bands, scaling, resampling))
        kept.append(listed)
    return _PlannedReferences(
        tuple(specs),
        index.only(kept).coverage(lr_grid),
        tuple(zeros),
        tuple(pixel_sizes),
        tuple(no_finer),
    )


# What a user may want to change before trusting an `sr` run, said before it starts:
# `plan_sr` puts these in the plan (`SRPlan.notes`), measured once, before any output
# is written; `sr` and `batch` print them and their --json reports carry them.

UNTAGGED_ZEROS_NOTE = 0.01
"""Share of all-zero pixels in a scene that tags no nodata from which the run suggests
--nodata 0 (real imagery is rarely 0 in every band; fill often is)."""
NO_FINER_THAN_SCENE = 0.9
"""Reference pixel / scene pixel from which a reference is left out of the run: it has
no detail the scene lacks (another date of the scene's own sensor, say), and a model that
has learnt to trust matching references copies its interpolation onto the 4x grid (a
4-pixel pattern; `weights/README.md`). 0.9, not 1: a CRS's scale moves sizes a little."""
COARSE_REFERENCE_NOTE = 2.0
"""Reference pixel / output pixel from which the run says the reference is too coarse
to add the output's detail (the model learnt from references at the HR's pixel size)."""


def plan_notes(plan: SRPlan) -> tuple[str, ...]:
    """Untagged fill, references too coarse to help, an output the disk cannot hold."""
    untagged = [("the scene", plan.untagged_zeros, "--nodata")]
    untagged += [
        (f"reference {name}", share, "--ref-nodata") for name, share in plan.untagged_ref_zeros
    ]
    notes = [
        f"about {share:.0%} of {what}'s pixels are 0 in every band and it tags "
        f"no nodata value: if they are fill, pass {option} 0"
        for what, share, option in untagged
        if share >= UNTAGGED_ZEROS_NOTE
    ]
    non_finite, clipped = plan.unusable_values
    if non_finite:
        notes.append(
            f"{non_finite} of the scene's values are NaN or infinite: they are treated as "
            "nodata (filled from their neighbours for the model, nodata in the output)"
        )
    if clipped:
        notes.append(
            f"{clipped} of the scene's values lie more than {UNIT_LIMIT:g} times the scaling's "
            "range outside it and were clipped there: check --scale"
        )
    sr_pixel = plan.sr_grid.pixel_size_in(plan.sr_grid.crs, plan.sr_grid.centre())
    notes += [
        f"reference {name} was left out: its pixels are {size / sr_pixel:.1f}x the output's, "
        "no finer than the scene's, so it has no detail to add (the run is as without it)"
        for name, size in plan.refs_no_finer_than_scene
    ]
    notes += [
        f"reference {name}'s pixels are {size / sr_pixel:.1f}x the output's ({size:.3g} vs "
        f"{sr_pixel:.3g} CRS units): it has no detail of the output's scale to give; the "
        "model expects a reference at the output's pixel size or finer"
        for name, size in plan.ref_pixel_sizes
        if size >= COARSE_REFERENCE_NOTE * sr_pixel
    ]
    return (*notes, *disk_space_notes([plan]))


def disk_space_notes(plans: list[SRPlan]) -> list[str]:
    """A run that would fill the disk fails at its end, hours in: say so before it
    starts. The outputs' size before compression is what the runs may need (deflate
    usually saves a third to two thirds of it on imagery, less on noisy data); outputs
    on one disk are added up (batch)."""
    needed: dict[Path, int] = {}
    for plan in plans:
        grid = plan.sr_grid
        size = grid.width * grid.height * len(plan.scene_bands) * np.dtype(plan.dtype).itemsize
        folder = plan.output_path.absolute().parent
        while not folder.exists():  # batch plans outputs in a folder it has not made yet
            folder = folder.parent
        needed[folder] = needed.get(folder, 0) + size
    notes = []
    for folder, size in needed.items():
        free = shutil.disk_usage(folder).free
        if free < size:
            what = "the output is" if len(plans) == 1 else f"the {len(plans)} outputs are"
            notes.append(
                f"{what} {size / 1e9:.1f} GB before compression and {folder} has "
                f"{free / 1e9:.1f} GB free: compression may not save enough; free some "
                "space or write elsewhere"
            )
    return notes
