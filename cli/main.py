"""Entry point of `rrsgan-geo`: a thin Click layer over the library.

Commands are imported only when named, and each imports the library (torch, GDAL:
seconds) inside its functions: `--help`, `--version`, `COMMAND --help` and shell
completion load neither, and `train`/`evaluate` load nothing geospatial.
"""

import importlib

import click

from rrsgan_geo import __version__
from rrsgan_geo.errors import RRSGANGeoError
from rrsgan_geo.host_memory import keep_freed_memory

# name -> (module, attribute, the one-line summary `rrsgan-geo --help` lists)
COMMANDS = {
    "sr": ("rrsgan_geo.cli.sr", "sr", "Super-resolve a scene 4x with a co-located reference."),
    "batch": ("rrsgan_geo.cli.batch", "batch", "Super-resolve many scenes, locally or on Dask."),
    "build-dataset": (
        "rrsgan_geo.cli.build_dataset",
        "build_dataset_command",
        "Cut RRSSRD-style training pairs from georeferenced imagery.",
    ),
    "evaluate": (
        "rrsgan_geo.cli.evaluate",
        "evaluate_command",
        "Score a generator (RGB and Y) against bicubic.",
    ),
    "train": ("rrsgan_geo.cli.train", "train", "Train the generator from a YAML config."),
    "weights": ("rrsgan_geo.cli.weights", "weights", "Inspect, convert and combine weight files."),
}


class _OneLineErrors(click.Group):
    """Loads commands on demand, and turns the library's exceptions, and the operating
    system's (a full disk, a permission), into `Error: ...` and exit code 1, never a
    traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, _, summary) in COMMANDS.items()])

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except RRSGANGeoError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:  # the machine's answer (a full disk, a permission), not a bug
            where = f": {error.filename}" if error.filename else ""
            raise click.ClickException(f"{error.strerror or error}{where}") from None


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rrsgan-geo")
def main() -> None:
    """Reference-based 4x super-resolution (RRSGAN) of georeferenced imagery.

    Give it a low-resolution scene and a co-located high-resolution reference; it
    returns a georeferenced image at 4x the resolution that borrows real texture
    from the reference. Run `rrsgan-geo COMMAND --help` for each command.
    """
    # Before any command allocates: the model runs about twice as fast on the CPU when
    # freed memory is reused rather than faulted in afresh (see `host_memory`).
    keep_freed_memory()


if __name__ == "__main__":
    main()
