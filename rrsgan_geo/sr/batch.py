"""`batch`: many scenes through the same code path as `sr`, locally or on Dask.

Each scene is one job: the references that meet it (footprint index built once,
composited per tile, best-covering first) go through `plan_sr` + `super_resolve`,
and a `SceneResult` comes back instead of an exception, so one bad scene never stops
the others. Outputs are written atomically by `sr`, so an
output that exists is complete: re-running after a crash or kill does only what is
missing. With Dask, each scene is one task running `run_scene` on a worker.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import rasterio
import torch

from rrsgan_geo.errors import CoverageError, InputError, RRSGANGeoError
from rrsgan_geo.geo.locations import display_name
from rrsgan_geo.geo.rasters import georeferenced_grid, open_raster
from rrsgan_geo.geo.references import ReferenceIndex, expand_rasters
from rrsgan_geo.geo.stac import is_stac
from rrsgan_geo.geo.tile_services import is_tile_template
from rrsgan_geo.host_memory import keep_freed_memory
from rrsgan_geo.sr import Generator, load_generator, plan, run
from rrsgan_geo.sr.pipeline import SRReport
from rrsgan_geo.sr.planning import SROptions, SRPlan

OUTPUT_SUFFIX = "_x4.tif"
COMPLETE_TAG = "RRSGAN_GEO_VERSION"


@dataclass(frozen=True)
class SceneJob:
    scene: str
    """A file, a GDAL /vsi path or a URL (see `locations`)."""
    references: tuple[str, ...]
    """Every reference whose footprint meets the scene, best-covering first."""
    output: Path
    indexed: int = 0
    """How many references the footprint index held for the scene to meet (0 also for a
    scene that could not be read): none of them meeting it is then said as such, not
    as no reference given."""
    quicklook: Path | None = None
    """Where the scene's quicklook goes (`quicklook`), if one is drawn."""


@dataclass(frozen=True)
class SceneResult:
    scene: str
    output: Path
    status: str  # "done", "skipped" or "failed"; "planned" in a dry run
    reason: str = ""
    seconds: float = 0.0
    plan: SRPlan | None = None
    """What the scene ran with (done and planned scenes): what `sr` would note."""
    report: SRReport | None = None
    """What the run found (done scenes): reference coverage, co-registration."""


def plan_jobs(
    scene_items: list[str | Path],
    index: ReferenceIndex,
    out_dir: Path,
    per_scene: tuple[str, ...] = (),
    quicklooks: bool = False,
) -> list[SceneJob]:
    """One job per scene, with the references that meet it (none where none does),
    plus `per_scene` ones (tile services, STAC documents: resolved for each scene);
    with `quicklooks`, each draws its quicklook beside its output (`<output>.png`).
    A scene that cannot be opened still gets a job: it fails alone when it runs."""
    jobs = []
    for scene in expand_rasters(scene_items, "scene"):
        output = out_dir / f"{Path(display_name(scene)).stem}{OUTPUT_SUFFIX}"
        try:
            with open_raster(scene, "scene") as dataset:
                hits = index.covering(georeferenced_grid(dataset, "scene"))
            indexed = len(index.paths)
        except RRSGANGeoError:  # its run says why the scene cannot be read
            hits, indexed = [], 0
        references = (*(path for path, _ in hits), *per_scene)
        quicklook = output.with_suffix(".png") if quicklooks else None
        jobs.append(SceneJob(scene, references, output, indexed, quicklook))
    return jobs


def is_complete(output: Path) -> bool:
    """An output of ours that a finished run renamed into place."""
    try:
        with rasterio.open(output) as dataset:
            return COMPLETE_TAG in dataset.tags()
    except rasterio.errors.RasterioIOError:
        return False


_MODELS: dict[tuple[Path, str], Generator] = {}


def generator_for(weights: Path, device: str) -> Generator:
    """Load each weight file once per process (a Dask worker keeps it between tasks)."""
    key = (weights, device)
    if key not in _MODELS:
        _MODELS[key] = load_generator(weights, device)
    return _MODELS[key]


def run_scene(
    job: SceneJob, weights: Path, options: SROptions, threads: int | None = None
) -> SceneResult:
    """Super-resolve one scene; errors come back in the result, never raised.

    `threads` fixes torch's CPU threads: float sums depend on how work is split, so
    outputs are byte-identical across machines and schedulers only at equal counts.
    """
    started = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    existing = _existing_output(job, options)
    if existing is not None:
        return existing
    try:
        _refuse_unmet(job, options)
        generator = generator_for(weights, options.device)
        options = replace(options, quicklook=job.quicklook)
        scene_plan = plan(job.scene, job.references, job.output, options, generator)
        report = run(scene_plan, generator)
    except RRSGANGeoError as error:
        return SceneResult(job.scene, job.output, "failed", str(error))
    seconds = time.perf_counter() - started
    return SceneResult(job.scene, job.output, "done", "", seconds, scene_plan, report)


def plan_scene(job: SceneJob, generator: Generator, options: SROptions) -> SceneResult:
    """What `run_scene` would do, without running it (a dry run): "planned" with the
    plan, "skipped" for a finished output, or "failed" with the reason the run would
    fail for."""
    existing = _existing_output(job, options)
    if existing is not None:
        return existing
    try:
        _refuse_unmet(job, options)
        planned = plan(
            job.scene, job.references, job.output, options, generator, check_output=False
        )
    except RRSGANGeoError as error:
        return SceneResult(job.scene, job.output, "failed", str(error))
    return SceneResult(job.scene, job.output, "planned", plan=planned)


def _refuse_unmet(job: SceneJob, options: SROptions) -> None:
    """A scene that none of the given references meets fails saying so (`plan_sr`,
    handed no reference, could only say that none was given)."""
    if job.references or not job.indexed or options.allow_missing_ref:
        return
    unmet = (
        "the reference given does not meet this scene"
        if job.indexed == 1
        else f"none of the {job.indexed} references given meets this scene"
    )
    raise CoverageError(
        f"{unmet}; pass --allow-missing-ref to run with LR_UX4 standing in for the reference"
    )


def _existing_output(job: SceneJob, options: SROptions) -> SceneResult | None:
    """A scene whose output exists (without --overwrite): skipped when it is a finished
    output of ours, failed otherwise (a file of someone else's, or a dead run's)."""
    if not job.output.exists() or options.overwrite:
        return None
    if is_complete(job.output):
        return SceneResult(job.scene, job.output, "skipped", "output exists")
    return SceneResult(
        job.scene, job.output, "failed", "output exists but is not ours or incomplete"
    )


def run_local(
    jobs: list[SceneJob], weights: Path, options: SROptions, threads: int | None = None
) -> Iterator[SceneResult]:
    for job in jobs:
        yield run_scene(job, weights, options, threads)


def _dask_task(
    job: SceneJob, weights: Path, options: SROptions, threads: int | None
) -> SceneResult:
    """On a worker: with several GPUs, worker i takes GPU i modulo the count. The
    worker's process keeps freed memory for reuse, as the command's does."""
    keep_freed_memory()
    if options.device == "auto" and torch.cuda.is_available():
        from distributed import get_worker

        name = get_worker().name
        index = name if isinstance(name, int) else abs(hash(name))
        options = replace(options, device=f"cuda:{index % torch.cuda.device_count()}")
    return run_scene(job, weights, options, threads)


def run_dask(
    jobs: list[SceneJob],
    weights: Path,
    options: SROptions,
    address: str | None = None,
    workers: int = 2,
    threads: int | None = None,
) -> Iterator[SceneResult]:
    """Each scene one task on a Dask cluster (an existing one at `address`, or a local
    one with `workers` single-threaded worker processes); results as they finish.
    Scenes whose outputs are finished are skipped first, here: with nothing left to
    do, no cluster is started or contacted."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise InputError("--scheduler dask needs Dask: pip install 'dask[distributed]'") from None
    pending = []
    for job in jobs:
        existing = _existing_output(job, options)
        if existing is not None and existing.status == "skipped":
            yield existing
        else:
            pending.append(job)
    if not pending:
        return
    jobs = pending
    cluster = (
        None if address else LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)
    )
    try:
        with Client(address or cluster) as client:
            futures = [
                client.submit(_dask_task, job, weights, options, threads, pure=False)
                for job in jobs
            ]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:  # stopped early (an error, Ctrl-C): queued scenes do not start
                client.cancel([future for future in futures if not future.done()])
    finally:
        if cluster is not None:
            cluster.close()


def split_references(items: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """(rasters to index by footprint once, references resolved per scene): a tile
    service's zoom and a STAC collection's items depend on the scene."""
    per_scene = tuple(item for item in items if is_tile_template(item) or is_stac(item))
    return [item for item in items if item not in per_scene], per_scene
