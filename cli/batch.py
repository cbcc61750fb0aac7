"""`rrsgan-geo batch`: super-resolve many scenes, locally or on a Dask cluster.

The library (torch, GDAL) is imported inside the functions, so that `batch --help`
and shell completion answer at once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from rrsgan_geo.cli.interrupts import sigterm_as_interrupt
from rrsgan_geo.cli.options import (
    SCENE_SECTIONS,
    SectionedCommand,
    device_option,
    json_option,
    processing_options,
    ref_option,
    scale_options,
    sr_options,
    threads_option,
    tiling_options,
    weights_option,
)
from rrsgan_geo.files import write_json
from rrsgan_geo.geo.locations import display_name

if TYPE_CHECKING:
    from rrsgan_geo.sr.batch import SceneJob, SceneResult
    from rrsgan_geo.sr.planning import SROptions


@click.command(cls=SectionedCommand, sections=SCENE_SECTIONS)
@click.argument("scenes", nargs=-1, required=True)
@ref_option("ref_sources", required=True)
@click.option(
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the <scene>_x4.tif outputs.",
)
@weights_option
@tiling_options
@device_option
@scale_options()
@processing_options
@click.option(
    "--on-error",
    type=click.Choice(["skip", "fail"]),
    default="skip",
    show_default=True,
    help="skip: note the failure and go on; fail: stop at the first.",
)
@click.option(
    "--scheduler", type=click.Choice(["local", "dask"]), default="local", show_default=True
)
@click.option(
    "--dask-address", help="tcp://host:port of a running Dask scheduler (default: a LocalCluster)."
)
@click.option("--dask-workers", default=2, show_default=True, help="Workers of the LocalCluster.")
@threads_option
@click.option("--overwrite", is_flag=True, help="Redo scenes whose output exists.")
@json_option(
    "one record per scene (status, reason, seconds, size, references, coverage, "
    "co-registration, notes)"
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Plan every scene (its references, their coverage, what sr would note) and print "
    "the table; run nothing, write nothing. Exit code 1 if a scene would fail.",
)
@click.option(
    "--quicklook",
    is_flag=True,
    help="Draw each scene's quicklook beside its output (<output>.png): bicubic | SR | "
    "reference | relevance on one representative window.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write one static HTML page: a row per scene with its status, times, "
    "reference coverage, co-registration, scene blur, quicklook and links to its outputs.",
)
def batch(
    scenes,
    ref_sources,
    out_dir,
    weights,
    on_error,
    scheduler,
    dask_address,
    dask_workers,
    threads,
    json_path,
    dry_run,
    quicklook,
    report,
    **fields,
) -> None:
    """Super-resolve SCENES (files, folders or globs) into OUTPUT, as `sr` does.

    For each scene the reference that covers it best is picked from --ref by
    footprint. Outputs that already exist are skipped, so re-running after a crash
    does only what is missing. Ends with a table: done, skipped, failed and why.

    \b
    Examples:
      rrsgan-geo batch 'scenes/*.tif' --ref google/ -o out/ --dry-run
      rrsgan-geo batch 'scenes/*.tif' --ref google/ -o out/
      rrsgan-geo batch scenes/ --ref refs.vrt -o out/ --scheduler dask --dask-address tcp://10.0.0.5:8786
    """
    from rrsgan_geo.devices import resolve_device
    from rrsgan_geo.geo.references import RASTER_SUFFIXES, ReferenceIndex, left_out_of_folders
    from rrsgan_geo.model.weight_files import shipped_weights_path
    from rrsgan_geo.sr.batch import plan_jobs, run_dask, run_local, split_references

    if not out_dir.is_dir() and not out_dir.parent.is_dir():
        raise click.ClickException(f"output folder's parent does not exist: {out_dir.parent}")
    if report is not None and not report.resolve().parent.is_dir():
        raise click.ClickException(f"--report folder does not exist: {report.parent}")
    weights = weights or shipped_weights_path(resolve_device(fields["device"]).type)
    options = sr_options(fields)
    rasters, per_scene = split_references(list(ref_sources))
    index = ReferenceIndex.build(rasters, options.http)
    jobs = plan_jobs(list(scenes), index, out_dir, per_scene, quicklooks=quicklook)
    left_out = left_out_of_folders(scenes)
    if left_out:
        shown = ", ".join(path.name for path in left_out[:5])
        more = f" and {len(left_out) - 5} more" if len(left_out) > 5 else ""
        click.echo(
            f"note: left out {len(left_out)} file(s) in the scene folder(s) that are not "
            f"rasters ({', '.join(sorted(RASTER_SUFFIXES))}): {shown}{more}",
            err=True,
        )
    if dry_run:
        _dry_run(jobs, weights, options, json_path)
        return
    out_dir.mkdir(exist_ok=True)  # only once the inputs check out
    if scheduler == "dask":
        results_iter = run_dask(jobs, weights, options, dask_address, dask_workers, threads)
    else:
        results_iter = run_local(jobs, weights, options, threads)
    results: list[SceneResult] = []
    try:
        with (
            sigterm_as_interrupt(),
            tqdm(
                total=len(jobs), unit="scene", desc=f"batch ({scheduler})", dynamic_ncols=True
            ) as bar,
        ):
            for result in results_iter:
                results.append(result)
                bar.update()
                _print_notes(result)
                if result.status == "failed" and on_error == "fail":
                    results_iter.close()
                    break
    except KeyboardInterrupt:  # Ctrl-C, or a scheduler's SIGTERM: say what is done
        results_iter.close()
        _summary(results, len(jobs), json_path)
        under_way = (
            "the scene under way left no output"
            if scheduler == "local"
            else "scenes already running on Dask workers may still write theirs"
        )
        raise click.ClickException(
            f"interrupted after {len(results)} of {len(jobs)} scenes; {under_way}: run the "
            "same command again to do the rest (finished outputs are skipped)"
        ) from None
    _summary(results, len(jobs), json_path)
    if options.stac:
        _catalog(out_dir, results)
    if report is not None:
        from rrsgan_geo.sr.batch_report import write_report

        click.echo(f"wrote {write_report(report, results)}: the batch's report")
    failed = [r for r in results if r.status == "failed"]
    if failed and on_error == "fail":
        raise click.ClickException(f"{display_name(failed[0].scene)} failed: {failed[0].reason}")
    if failed:
        raise click.exceptions.Exit(1)


def _catalog(out_dir: Path, results: list[SceneResult]) -> None:
    """catalog.json over the Items of the scenes done (and of those skipped whose
    Item a previous run wrote)."""
    from rrsgan_geo.sr.item_facts import item_path
    from rrsgan_geo.sr.stac_item import write_catalog

    items = [item_path(r.output) for r in results if r.status in ("done", "skipped")]
    catalog = write_catalog(out_dir, [path for path in items if path.is_file()])
    click.echo(f"wrote {catalog}: a STAC Catalog of the outputs' Items")


def _dry_run(
    jobs: list[SceneJob], weights: Path, options: SROptions, json_path: Path | None
) -> None:
    """Plan each scene as its run would, print the notes, the table and the model time
    the planned scenes need; run nothing."""
    from rrsgan_geo import sr as library
    from rrsgan_geo.sr.batch import generator_for, plan_scene
    from rrsgan_geo.sr.planning import disk_space_notes

    generator = generator_for(weights, options.device)
    results = []
    for job in tqdm(jobs, unit="scene", desc="planning", dynamic_ncols=True):
        results.append(plan_scene(job, generator, options))
        _print_notes(results[-1])
    _summary(results, len(jobs), json_path)
    plans = [r.plan for r in results if r.status == "planned"]
    if len(plans) > 1:  # each scene's own note is above; together they may not fit
        for note in disk_space_notes(plans):
            click.echo(f"note        {note}")
    if plans:
        click.echo(f"compute     {library.estimate(plans, generator).describe()}")
    if any(r.status == "failed" for r in results):
        raise click.exceptions.Exit(1)


def _print_notes(result: SceneResult) -> None:
    """What `sr` would note about the scene's plan, above the progress bar."""
    for note in result.plan.notes if result.plan else ():
        tqdm.write(f"note: {display_name(result.scene)}: {note}", file=sys.stderr)


def _detail(result: SceneResult) -> str:
    if result.status == "done":
        coverage = result.report.pixel_coverage
        blur = result.report.scene_blur
        return (
            f"{result.seconds:.1f} s, reference on {coverage:.0%} of pixels, "
            f"scene blur {blur.sigma:.2f} ({blur.source})"
        )
    if result.status == "planned":
        plan = result.plan
        return (
            f"{plan.sr_grid.width} x {plan.sr_grid.height} px, {plan.layout.count} tiles, "
            f"{len(plan.references)} reference(s) covering {plan.footprint_coverage:.0%}"
        )
    return result.reason


def _record(result: SceneResult) -> dict:
    """One scene of --json: its status, and its run as `sr --json` writes it."""
    from rrsgan_geo import sr as library

    run = library.record(result.plan, result.report) if result.plan else {}
    return {
        "scene": result.scene,
        "status": result.status,
        "reason": result.reason,
        **run,
        "output": str(result.output),
        "seconds": result.seconds if result.status == "done" else None,
    }


def _summary(results: list[SceneResult], planned: int, json_path: Path | None) -> None:
    """The table, and the same as JSON records when asked."""
    if json_path is not None:
        write_json(json_path, [_record(r) for r in results])
    width = max([len(display_name(r.scene)) for r in results] + [5])
    click.echo(f"{'scene':<{width}}  {'status':<8} detail")
    for r in results:
        click.echo(f"{display_name(r.scene):<{width}}  {r.status:<8} {_detail(r)}")
    statuses = ("planned",) if any(r.status == "planned" for r in results) else ("done",)
    statuses += ("skipped", "failed")
    counts = {s: sum(r.status == s for r in results) for s in statuses}
    not_run = planned - len(results)
    click.echo(
        ", ".join(f"{n} {s}" for s, n in counts.items())
        + (f", {not_run} not run" if not_run else "")
    )
