"""Click options shared by several commands, so each is defined and explained once."""

from collections.abc import Callable
from pathlib import Path

import click

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
                default=64,
                show_default=True,
                type=int,
                help="Tile size in LR pixels (multiple of 4).",
            ),
            click.option(
                "--margin",
                type=click.IntRange(min=0),
                help="Context per tile side in LR pixels (default: the weights' own).",
            ),
            click.option(
                "--batch-size",
                default=4,
                show_default=True,
                type=click.IntRange(min=1),
                help="Tiles per model call (halves on CUDA out-of-memory).",
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
        from rrsgan_geo.scaling import parse_scale_option

        try:
            parse_scale_option(value)
        except ScalingError as error:
            self.fail(str(error), param, ctx)
        return value


def scale_options(command: Callable) -> Callable:
    """--scale and --ref-scale for non-uint8 scenes and references."""
    command = click.option(
        "--ref-scale",
        type=ValueRange(),
        help="Reference value range for non-uint8 data, as --scale.",
    )(command)
    return click.option(
        "--scale",
        type=ValueRange(),
        help="Scene value range for non-uint8 data: MIN,MAX or percentiles pLOW,pHIGH "
        "(a linear map that never clips: values outside the range are kept).",
    )(command)
