"""`rrsgan-geo sr`: super-resolve one scene with a co-located reference.

The library (torch, GDAL) is imported inside the functions, so that `sr --help` and
shell completion answer at once."""

from __future__ import annotations

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
from rrsgan_geo.geo.locations import undeclared

if TYPE_CHECKING:
    from rrsgan_geo.sr.pipeline import Generator
    from rrsgan_geo.sr.planning import SRPlan


def _load(weights: Path | None, dry_run: bool, device: str) -> Generator | None:
    """The generator to run (by default the shipped weights for the device); for a dry
    run without installed weights, None."""
    from rrsgan_geo import sr as library
    from rrsgan_geo.errors import WeightsNotFoundError

    try:
        return library.load_generator(weights, device)
    except WeightsNotFoundError:
        if dry_run:
            return None
        raise


def _plan_record(plan: SRPlan, generator: Generator | None) -> dict[str, object]:
    """What --dry-run --json writes: the plan, for scripts."""
    from rrsgan_geo.geo.locations import display_name

    return {
        "dry_run": True,
        "scene": display_name(plan.scene_path),
        "output": str(plan.output_path),
        "lr_size": [plan.lr_grid.width, plan.lr_grid.height],
        "sr_size": [plan.sr_grid.width, plan.sr_grid.height],
        "crs": str(plan.sr_grid.crs),
        "tiles": plan.layout.count,
        "tile": plan.layout.tile,
        "margin": plan.layout.margin,
        "references": [display_name(path) for path in plan.ref_paths],
        "footprint_coverage": plan.footprint_coverage,
        "weights": {"file": generator.name, "sha256": generator.sha256} if generator else None,
        "notes": list(plan.notes),
    }


def _reference_line(plan: SRPlan) -> str:
    return f"reference   {', '.join(map(undeclared, plan.ref_paths)) or 'none'}"


def _describe_plan(plan: SRPlan, generator: Generator | None) -> list[str]:
    from rrsgan_geo.upscaling import SCALE

    layout, lr, sr = plan.layout, plan.lr_grid, plan.sr_grid
    weights = (
        f"{generator.name} (sha256 {generator.sha256[:12]}…)"
        if generator
        else ("none installed: a real run needs --weights FILE")
    )
    nodata = "" if plan.nodata is None else f", nodata {plan.nodata:g}"
    return [
        f"scene       {undeclared(plan.scene_path)}: {lr.width} x {lr.height} px, {lr.crs}, "
        f"bands {','.join(map(str, plan.scene_bands))}, {plan.dtype}{nodata}",
        f"output      {plan.output_path}: {sr.width} x {sr.height} px, pixel "
        f"{abs(sr.transform.a):g} x {abs(sr.transform.e):g} (1/{SCALE} of the scene's)",
        f"{_reference_line(plan)}: covers {plan.footprint_coverage:.1%} of the "
        + ("scene" if plan.scene_window is None else "part of the scene given by --bounds"),
        f"tiles       {layout.count} ({layout.cols} x {layout.rows}) of {layout.tile} LR px "
        f"+ {layout.margin} margin",
        f"memory      {plan.memory.describe() if plan.memory else 'not known here'}; "
        "grows with the output's width and the tile, not the height",
        f"weights     {weights}",
    ]


@click.command(cls=SectionedCommand, sections=SCENE_SECTIONS)
@click.argument("scene")
@ref_option("ref", required=False)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output GeoTIFF.",
)
@weights_option
@tiling_options
@device_option
@scale_options()
@processing_options
@threads_option
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option(
    "--dry-run", is_flag=True, help="Check inputs, print the plan and estimates, run nothing."
)
@click.option(
    "--bounds",
    nargs=4,
    type=float,
    metavar="LEFT BOTTOM RIGHT TOP",
    help="Only this part of the scene, in the scene's CRS (whole pixels it touches).",
)
@click.option(
    "--quicklook",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw one representative window (where the reference lies and the scene "
    "has most texture) as a PNG: bicubic | SR | reference | relevance, one stretch for "
    "the images, a scale bar and the window's position.",
)
@click.option(
    "--relevance-map",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write where the reference was used: the relevance attention's weight "
    "(0..1) per output pixel, a float32 GeoTIFF on the output grid.",
)
@click.option(
    "--consistency-map",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write |downsample4x(output) - scene| per scene pixel (scene units, 4x4 "
    "mean), a float32 GeoTIFF on the scene's grid: where to look for invented detail.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or notes; errors only.")
@json_option("the run's summary (sizes, coverage, timings, weights, notes; or the plan)")
def sr(
    scene: str,
    ref: tuple[str, ...],
    output: Path,
    weights: Path | None,
    tile: int | None,
    margin: int | None,
    dry_run: bool,
    threads: int | None,
    quiet: bool,
    json_path: Path | None,
    quicklook: Path | None,
    relevance_map: Path | None,
    consistency_map: Path | None,
    **fields: object,
) -> None:
    """Super-resolve SCENE 4x, borrowing texture from a co-located reference.

    The reference is found by coordinates: one raster or many (a folder of tiles, a
    glob), in any CRSs and resolutions, warped onto the 4x output grid (same CRS as
    SCENE, pixel size exactly 1/4). Where none covers the scene, LR_UX4 stands in.
    The scene is processed in overlapping tiles, blended without seams and streamed
    to a tiled, compressed GeoTIFF: memory stays flat however large the scene.
    Nothing is left at OUTPUT unless the run succeeds.

    \b
    Examples:
      rrsgan-geo sr scene.tif --ref google.tif -o scene_x4.tif
      rrsgan-geo sr scene.tif --ref google_tiles/ -o scene_x4.tif
      rrsgan-geo sr scene.tif --ref 'https://host/{z}/{x}/{y}.jpg' --ref-cache tiles/ -o x4.tif
      rrsgan-geo sr s3://bucket/scene.tif --ref https://host/ortho_cog.tif -o scene_x4.tif
      rrsgan-geo sr scene.tif --ref search.json --ref-prefer newest -o scene_x4.tif
      rrsgan-geo sr scene.tif --ref google.tif -o out.tif --relevance-map rel.tif
      rrsgan-geo sr s2.tif --ref aerial.vrt --bands 4,3,2 --scale p2,p98 -o s2_x4.tif --cog
      rrsgan-geo sr landsat.tif --ref aerial.tif --scale p2,p98 --nodata 0 -o x4.tif
      rrsgan-geo sr scene.tif --ref google.tif -o out.tif --dry-run
    """
    import torch

    from rrsgan_geo import sr as library
    from rrsgan_geo.devices import resolve_device
    from rrsgan_geo.model.self_ensemble import views_note

    if threads is not None:
        torch.set_num_threads(threads)
    device = resolve_device(fields["device"])
    generator = _load(weights, dry_run, fields["device"])
    options = sr_options(
        fields,
        tile=tile,
        margin=margin,
        relevance_map=relevance_map,
        consistency_map=consistency_map,
        quicklook=quicklook,
    )
    plan = library.plan(scene, ref, output, options, generator)
    lines = _describe_plan(plan, generator)
    if dry_run:
        notes = [f"note        {note}" for note in plan.notes]
        compute = f"compute     {library.estimate([plan], generator).describe()}"
        click.echo("\n".join([*lines, *notes, compute]))
        if json_path is not None:
            write_json(json_path, _plan_record(plan, generator))
        return
    if not quiet:  # the coverage measured on the pixels comes with "wrote"
        click.echo(_reference_line(plan), err=True)
        default = "" if weights else f" (default for {device.type})"
        click.echo(f"weights     {generator.name}{default}", err=True)
        for note in plan.notes:
            click.echo(f"note        {note}", err=True)
    try:
        with (
            sigterm_as_interrupt(),
            tqdm(
                total=plan.layout.count,
                unit="tile",
                desc="super-resolving",
                dynamic_ncols=True,
                disable=quiet,
            ) as bar,
        ):
            report = library.run(plan, generator, progress=bar.update)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: no output written") from None
    if json_path is not None:
        write_json(json_path, library.record(plan, report))
    if quiet:
        return
    pixel_size = (plan.sr_grid.transform.a, -plan.sr_grid.transform.e)
    for offset in report.reference_offsets:
        click.echo(f"co-registered {offset.describe(pixel_size)}")
    click.echo(report.scene_blur.describe())
    click.echo(
        f"wrote {report.output}: {report.sr_size[0]} x {report.sr_size[1]} px, "
        f"{report.tiles} tiles, reference valid on {report.pixel_coverage:.1%} of pixels, "
        f"{report.seconds:.1f} s (model {report.model_seconds:.1f} s) on {report.device}, "
        f"{report.precision}"
        + views_note(options.self_ensemble)
        + (f", batch halved {report.oom_halvings}x on out-of-memory" if report.oom_halvings else "")
    )
    if quicklook is not None:
        click.echo(f"wrote {quicklook}: bicubic | SR | reference | relevance")
    if options.stac:
        from rrsgan_geo.sr.item_facts import item_path

        click.echo(f"wrote {item_path(report.output)}: its STAC Item")
    if report.low_contrast_tiles:
        from rrsgan_geo.sr.contrast import stretched_views

        click.echo(
            f"note: {report.low_contrast_tiles} of {report.tiles_run} tiles were low in "
            "contrast (a wide --scale over dark ground, say): they ran stretched and over "
            f"{stretched_views(options.self_ensemble)} views, which keeps the model's "
            "faint 4-pixel pattern out of them"
        )
    if report.tile_server_errors:
        click.echo(
            f"warning: the tile service still failed after {options.http.retries} retries in "
            f"{report.tile_server_errors} strip(s): those tiles were treated as missing "
            "reference",
            err=True,
        )
    if report.mean_relevance is not None:
        click.echo(
            f"relevance map {relevance_map}: mean {report.mean_relevance:.3f} where the "
            "reference exists"
        )
    if consistency_map is not None:
        click.echo(f"consistency map {consistency_map}: |downsample4x(output) - scene| per pixel")
