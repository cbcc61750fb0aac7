"""Click options shared by several commands, so each is defined and explained once.

The index (as rasterio's `rio/options.py` keeps one):

- `ref_option(name, required)`: --ref (`sr`, `batch`).
- `weights_option`, `device_option`: --weights, --device (`sr`, `batch`, `evaluate`,
  `train`'s --device).
- `tiling_options`: --tile, --margin, --batch-size, --max-memory (`sr`, `batch`).
- `scale_options()`: --scale, --ref-scale, --nodata, --ref-nodata (`sr`, `batch`,
  `build-dataset`).
- `band_options(bands_help)`: --bands, --ref-bands (`sr`, `batch`, `build-dataset`).
- `processing_options`: --rgb-bands, --precision, --self-ensemble, --ref-resampling,
  --co-register, --scene-blur, --allow-missing-ref, --cog, --stac, --stac-datetime,
  --co, the tile-service, STAC-reference and HTTP options (`sr`, `batch`).
- `self_ensemble_option`: --self-ensemble (also `evaluate`).
- `threads_option`: --threads; `json_option(contents)`: --json, written with
  `files.write_json`.
- `sr_options(fields)`: the `SROptions` request the processing options describe.
- `SCENE_SECTIONS`, `SectionedCommand`: `sr`'s and `batch`'s --help in sections.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rrsgan_geo.geo.locations import HttpOptions

if TYPE_CHECKING:
    from rrsgan_geo.sr.planning import SROptions


def ref_option(name: str, required: bool) -> Callable[[Callable], Callable]:
    """--ref, repeatable, into the parameter `name`: one definition for `sr` and
    `batch`, which take the same kinds of reference."""
    return click.option(
        "--ref",
        name,
        multiple=True,
        required=required,
        help="High-resolution reference: a raster (any GDAL format, any CRS; a file, a "
        "URL, s3://, gs://, /vsi...), a folder of tiles, a glob, an XYZ tile service "
        "'https://host/{z}/{x}/{y}.jpg' ({-y} for TMS), a WMTS capabilities URL, or a "
        "STAC Item or ItemCollection (.json file or URL); repeatable. Those that meet "
        "the scene are composited.",
    )


weights_option = click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Generator weights (default: the shipped ones).",
)
device_option = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."
)


def tiling_options(command: Callable) -> Callable:
    """--tile, --margin and --batch-size, as `sr` and `batch` take them."""
    for option in reversed(
        [
            click.option(
                "--tile",
                type=int,
                help="Tile size in LR pixels (multiple of 4). Default: 256 on a GPU; on "
                "the CPU the largest of 256, 128, 64, 32 that fits in half the memory "
                "available; less where the scene needs less (larger tiles waste less on "
                "margins but need more memory).",
            ),
            click.option(
                "--margin",
                type=click.IntRange(min=0),
                help="Context per tile side in LR pixels (default: the weights' own).",
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(min=1),
                help="Tiles per model call (halves on CUDA out-of-memory). Default: 4 on "
                "a GPU, 1 on the CPU (more only costs memory there).",
            ),
            click.option(
                "--max-memory",
                callback=_memory_size,
                metavar="SIZE",
                help="Host memory the run may use, e.g. 4G (default: what is available "
                "when it starts). A plan that needs more is refused before any work, "
                "saying how much it needs; without --tile the CPU tile is the largest "
                "that fits in half of it.",
            ),
        ]
    ):
        command = option(command)
    return command


class ValueRange(click.ParamType):
    """MIN,MAX or pLOW,pHIGH, checked when parsed so the message names the flag given;
    the text itself goes on to the library, which records it."""

    name = "range"

    def convert(self, value, param, ctx):
        from rrsgan_geo.errors import ScalingError
        from rrsgan_geo.geo.scaling import parse_scale_option

        try:
            parse_scale_option(value)
        except ScalingError as error:
            self.fail(str(error), param, ctx)
        return value


def scale_options(
    scene: str = "Scene",
    nodata_use: str = "left out of --scale percentiles and nodata in the output. Replaces "
    "a value the file tags.",
    ref_nodata_use: str = "there LR_UX4 stands in for the reference.",
) -> Callable[[Callable], Callable]:
    """--scale and --ref-scale for non-uint8 data; --nodata and --ref-nodata for fill
    values the files do not tag. `scene` names the image being super-resolved (the
    HR sources, for build-dataset) and the *_use texts say what each fill value does."""

    def decorate(command: Callable) -> Callable:
        for option in reversed(
            [
                click.option(
                    "--scale",
                    type=ValueRange(),
                    help=f"{scene} value range for non-uint8 data: MIN,MAX or percentiles "
                    "pLOW,pHIGH (a linear map that never clips: values outside the range "
                    "are kept).",
                ),
                click.option(
                    "--ref-scale",
                    type=ValueRange(),
                    help="Reference value range for non-uint8 data, as --scale.",
                ),
                click.option(
                    "--nodata",
                    type=float,
                    help=f"{scene} value that marks missing pixels, where the files tag none "
                    f"(e.g. 0 around a Landsat scene): {nodata_use}",
                ),
                click.option(
                    "--ref-nodata",
                    type=float,
                    help="Reference value that marks missing pixels, where the files tag "
                    f"none (e.g. the black border of a mosaic): {ref_nodata_use}",
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


def band_options(bands_help: str) -> Callable[[Callable], Callable]:
    """--bands (the `scene_bands` parameter, described by `bands_help`) and
    --ref-bands: which bands of a raster that is not plain RGB or grey are used."""

    def decorate(command: Callable) -> Callable:
        command = click.option(
            "--ref-bands",
            callback=_band_list,
            help="Reference bands the model sees, in order: 3 (RGB) or 1, e.g. 1,2,3.",
        )(command)
        return click.option("--bands", "scene_bands", callback=_band_list, help=bands_help)(command)

    return decorate


def json_option(contents: str) -> Callable[[Callable], Callable]:
    """--json PATH (the `json_path` parameter): also write `contents` there as JSON
    (`files.write_json`). Its folder is checked when the flag is parsed, not after the work."""
    return click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        callback=_writable_destination,
        help=f"Also write {contents} as JSON here.",
    )


def _writable_destination(_ctx: click.Context, _param: click.Parameter, path: Path | None):
    if path is not None:
        folder = path.parent
        if not folder.is_dir():
            raise click.BadParameter(f"{path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise click.BadParameter(f"{path}: folder {folder} is not writable")
    return path


def _band_list(_ctx: click.Context, _param: click.Parameter, text: str | None):
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected band numbers like 3,2,1") from None


def _memory_size(_ctx: click.Context, _param: click.Parameter, text: str | None):
    if text is None:
        return None
    from rrsgan_geo.errors import MemoryBudgetError
    from rrsgan_geo.sr.memory_budget import parse_memory

    try:
        return parse_memory(text)
    except MemoryBudgetError as error:
        raise click.BadParameter(str(error)) from None


def _creation_options(_ctx: click.Context, _param: click.Parameter, pairs: tuple[str, ...]):
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE, e.g. --co ZLEVEL=9")
        options[key.upper()] = value
    return options


self_ensemble_option = click.option(
    "--self-ensemble",
    "self_ensemble",
    default="1",
    show_default=True,
    # self_ensemble.VIEW_COUNTS, spelled out: importing that module would import torch
    # for every --help (a test keeps the two equal).
    type=click.Choice(["1", "2", "4", "8"]),
    callback=lambda _ctx, _param, value: int(value),
    help="Run the model on this many turned/mirrored copies of its input and average "
    "them, turned back: slower in proportion, a little closer to the truth (the model "
    "card has the measured gains).",
)


_SCENE_BANDS_HELP = (
    "Scene bands to write, in order (default: all but alpha), e.g. 4,3,2,8. The visible "
    "ones go through the model; each other band gets the visible bands' new detail, in "
    "proportion to how it follows them locally."
)

_rgb_bands_option = click.option(
    "--rgb-bands",
    callback=_band_list,
    help="The scene's red, green and blue bands (or 1 grey band), which the model sees "
    "beside the reference, e.g. 3,2,1 for Landsat 7. Default: the written bands when they "
    "are 3 or 1, else the bands tagged red, green and blue (colour interpretation or "
    "description).",
)


def processing_options(command: Callable) -> Callable:
    """How `sr` and `batch` process a scene: precision, bands, reference warping,
    missing references and the output format. One definition for both commands."""
    for option in reversed(
        [
            click.option(
                "--precision",
                default="auto",
                show_default=True,
                type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
                help="Model precision. auto: bf16 for 8-bit outputs where the hardware "
                "computes it (CUDA GPUs, CPUs with AVX512-BF16 or AMX), where it is faster "
                "and stays within one 8-bit level of fp32, else fp32 (bf16 would move 16-bit "
                "outputs by tens of DN). Use fp32 for outputs identical whatever the tile "
                "size. fp16 is for GPUs only. docs/performance.md has the measurements.",
            ),
            self_ensemble_option,
            click.option(
                "--ref-resampling",
                default="bilinear",
                show_default=True,
                type=click.Choice(
                    ["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average"]
                ),
                help="How the reference is warped onto the output grid.",
            ),
            click.option(
                "--co-register/--no-co-register",
                default=True,
                show_default=True,
                help="Measure how far each reference sits from the scene (phase correlation "
                "on a few windows of the scene, up to 32 output px) and move it onto the "
                "scene first. A reference with no clear match stays where its coordinates "
                "put it.",
            ),
            click.option(
                "--scene-blur",
                default="auto",
                show_default=True,
                metavar="auto|none|SIGMA|mtf:X",
                help="How blurred the scene's pixels are: the model sharpens as much as the "
                "scene needs and blurs the reference the same way before comparing them. "
                "auto: measured on the co-registered reference (the reference blurred until "
                "it is as sharp as the scene), else a middle default; none: bicubic-like LR "
                "(a downsampled image, as in RRSSRD); SIGMA: the PSF's Gaussian sigma in "
                "scene pixels; mtf:X: the sensor's system MTF at Nyquist, from its quality "
                "reports.",
            ),
            click.option(
                "--allow-missing-ref",
                is_flag=True,
                help="Run even where no reference exists (LR_UX4 stands in).",
            ),
            click.option(
                "--cog", is_flag=True, help="Write a Cloud Optimized GeoTIFF with overviews."
            ),
            click.option(
                "--stac",
                is_flag=True,
                help="Also write a STAC Item beside each output (<output>.stac.json: "
                "footprint, grid, bands, provenance, derived_from links, assets), for "
                "catalogues; batch also writes catalog.json over its folder.",
            ),
            click.option(
                "--stac-datetime",
                metavar="ISO[/ISO]",
                help="The Item's time where the scene says nothing of it (no "
                "TIFFTAG_DATETIME, no date in its name): a date or START/END.",
            ),
            click.option(
                "--co",
                "creation_options",
                multiple=True,
                callback=_creation_options,
                help="GDAL creation option KEY=VALUE (repeatable); with --cog, for the COG driver.",
            ),
            click.option(
                "--ref-zoom",
                type=click.IntRange(0, 22),
                help="Zoom level of an XYZ/TMS tile-service --ref (default: the first whose "
                "ground resolution at the scene is at most the output pixel size).",
            ),
            click.option(
                "--ref-cache",
                type=click.Path(file_okay=False, path_type=Path),
                help="Keep tile-service tiles in this folder, so that re-runs and batches "
                "fetch each tile once.",
            ),
            click.option(
                "--ref-asset",
                help="Asset of a STAC item --ref to use (default: visual).",
            ),
            click.option(
                "--ref-prefer",
                default="newest",
                show_default=True,
                type=click.Choice(["newest", "oldest"]),
                help="With a STAC ItemCollection --ref: whose pixels win where items overlap.",
            ),
            click.option(
                "--http-timeout",
                default=30.0,
                show_default=True,
                type=click.FloatRange(min=1),
                help="Seconds a server (scene or reference given as a URL) may take to answer "
                "a request before it is given up.",
            ),
            click.option(
                "--http-retries",
                default=2,
                show_default=True,
                type=click.IntRange(min=0),
                help="Retries of a request that failed or timed out.",
            ),
        ]
    ):
        command = option(command)
    return band_options(_SCENE_BANDS_HELP)(_rgb_bands_option(command))


def sr_options(fields: dict, **more: object) -> "SROptions":
    """The SROptions that the processing options (and `more`) describe."""
    # Imported here: `train` and `evaluate` use this module on machines without GDAL.
    from rrsgan_geo.sr.planning import SROptions

    fields = dict(fields)
    http = HttpOptions(timeout=fields.pop("http_timeout"), retries=fields.pop("http_retries"))
    return SROptions(**fields, **more, http=http)


threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Torch CPU threads (default: torch's choice). Float sums depend on how work is "
    "split, so equal counts give byte-identical outputs.",
)


SCENE_SECTIONS = {
    "Inputs": ("ref", "ref_sources", "scene_bands", "rgb_bands", "scale", "nodata", "bounds"),
    "Reference": (
        "ref_bands",
        "ref_scale",
        "ref_nodata",
        "ref_resampling",
        "co_register",
        "allow_missing_ref",
        "ref_zoom",
        "ref_cache",
        "ref_asset",
        "ref_prefer",
        "http_timeout",
        "http_retries",
    ),
    "Processing": (
        "weights",
        "scene_blur",
        "precision",
        "self_ensemble",
        "device",
        "tile",
        "margin",
        "batch_size",
        "max_memory",
        "threads",
    ),
    "Output": (
        "output",
        "out_dir",
        "cog",
        "stac",
        "stac_datetime",
        "creation_options",
        "overwrite",
        "relevance_map",
        "consistency_map",
        "quicklook",
        "report",
    ),
    "Run": (
        "dry_run",
        "on_error",
        "scheduler",
        "dask_address",
        "dask_workers",
        "quiet",
        "json_path",
    ),
}
"""`sr`'s and `batch`'s options by what they are about, in the order --help lists them
(parameter names; an option a command lacks is skipped)."""


class SectionedCommand(click.Command):
    """A command whose --help lists its options in titled sections (Click's own help
    sections) instead of one flat list: `sr` has 35 options. Options no section names
    are listed last, under "Other options"."""

    def __init__(self, *args, sections: dict[str, tuple[str, ...]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sections = sections

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records = {
            param.name: record
            for param in self.get_params(ctx)
            if isinstance(param, click.Option) and (record := param.get_help_record(ctx))
        }
        for title, names in self.sections.items():
            rows = [records.pop(name) for name in names if name in records]
            if rows:
                with formatter.section(f"{title} options"):
                    formatter.write_dl(rows)
        if records:  # --help, and whatever no section names
            with formatter.section("Other options"):
                formatter.write_dl(list(records.values()))
