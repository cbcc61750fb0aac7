"""`rrsgan-geo build-dataset`: RRSSRD-style training pairs from georeferenced imagery.

The library (torch, GDAL) is imported inside the command, so that its `--help` and
shell completion answer at once."""

from collections import Counter
from pathlib import Path

import click
from tqdm import tqdm

from rrsgan_geo.cli.interrupts import sigterm_as_interrupt
from rrsgan_geo.cli.options import band_options, scale_options


@click.command(name="build-dataset")
@click.argument("hr_sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--ref",
    "ref_sources",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Reference rasters, folders or VRTs, any CRS (repeatable).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write train/, val/ and manifest.jsonl into.",
)
@click.option(
    "--hr-size",
    default=480,
    show_default=True,
    type=click.IntRange(min=4),
    help="HR sample size in pixels (divisible by 4; LR is a quarter).",
)
@click.option(
    "--min-ref-coverage",
    default=0.9,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Skip samples whose reference covers less (a share, 0 to 1).",
)
@click.option(
    "--max-nodata",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Skip samples with more HR nodata (a share, 0 to 1).",
)
@click.option(
    "--val-fraction",
    default=0.25,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Fraction of blocks held out for validation.",
)
@click.option(
    "--block",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Samples per side of a split block.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    help="Seed of the draw of blocks for train/ and val/: the same seed, the same split.",
)
@band_options("HR bands to use, in order: 3 (RGB) or 1, e.g. 3,2,1.")
@scale_options(
    "HR",
    nodata_use="counted by --max-nodata and left out of --scale percentiles.",
    ref_nodata_use="counted by --min-ref-coverage.",
)
@click.option(
    "--from-images",
    "from_images",
    is_flag=True,
    help="HR_SOURCES is one existing RRSSRD folder (JPG/PNG, no georeference): write its manifest.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an earlier build's output folder (a folder holding anything else is "
    "refused, never deleted).",
)
def build_dataset_command(
    hr_sources, ref_sources, output, from_images, overwrite, scene_bands, **fields
) -> None:
    """Cut RRSSRD-style samples (HR, LR, LR_UX4, Ref, Ref_DUX4) from HR_SOURCES.

    The reference (another date or sensor, any CRS) is warped by coordinates onto
    each sample's HR grid. LR is HR downsampled 4x with the same helper `sr` and the
    training loader use. Samples with too little reference coverage or too much
    nodata are skipped and counted. Whole blocks of samples go to train/ or val/, so
    neighbouring crops never straddle the split; a training config whose `data` names
    OUTPUT keeps that split (train/ trains, val/ validates). An interrupted build
    leaves whole samples only, each listed in OUTPUT/manifest.jsonl.

    \b
    Examples:
      rrsgan-geo build-dataset aerial_2019/ --ref google_2021.tif -o pairs/
      rrsgan-geo build-dataset ../RRSSRD/val_1st --from-images -o rrssrd_index/
    """
    from rrsgan_geo.training.data import MANIFEST
    from rrsgan_geo.training.dataset_builder import BuildOptions, build_dataset, index_images

    options = BuildOptions(overwrite=overwrite, hr_bands=scene_bands, **fields)
    if from_images:
        if len(hr_sources) != 1:
            raise click.BadParameter("--from-images takes exactly one folder")
        report = index_images(hr_sources[0], output, options)
    else:
        if not ref_sources:
            raise click.UsageError("give the reference with --ref (or use --from-images)")
        outcomes: Counter[str] = Counter()

        def on_sample(outcome: str) -> None:
            bar.update()
            outcomes[outcome] += 1

        def on_start(samples: int) -> None:
            bar.reset(total=samples)

        try:
            with (
                sigterm_as_interrupt(),
                tqdm(unit="sample", desc="cutting samples", dynamic_ncols=True) as bar,
            ):
                report = build_dataset(
                    list(hr_sources), list(ref_sources), output, options, on_sample, on_start
                )
        except KeyboardInterrupt:
            if not outcomes["written"]:
                message = "interrupted before the first sample was written"
                raise click.ClickException(message) from None
            raise click.ClickException(
                f"interrupted: the {outcomes['written']} samples written are complete and "
                f"listed in {output / MANIFEST}; run again with --overwrite to start over"
            ) from None
    written = ", ".join(f"{n} {split}" for split, n in sorted(report.written.items())) or "none"
    click.echo(f"wrote {written} samples; manifest {report.manifest}")
    for reason, count in report.skipped.most_common():
        click.echo(f"skipped {count}: {reason}")
