"""Entry point of `rrsgan-geo`: a thin Click layer over the library."""

import click

from rrsgan_geo import __version__
from rrsgan_geo.cli.batch import batch
from rrsgan_geo.cli.build_dataset import build_dataset_command
from rrsgan_geo.cli.evaluate import evaluate_command
from rrsgan_geo.cli.sr import sr
from rrsgan_geo.cli.train import train
from rrsgan_geo.cli.weights import weights
from rrsgan_geo.errors import RRSGANGeoError


class _OneLineErrors(click.Group):
    """Turns the library's exceptions into `Error: ...` and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except RRSGANGeoError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rrsgan-geo")
def main() -> None:
    """Reference-based 4x super-resolution (RRSGAN) of georeferenced imagery.

    Give it a low-resolution scene and a co-located high-resolution reference; it
    returns a georeferenced image at 4x the resolution that borrows real texture
    from the reference. Run `rrsgan-geo COMMAND --help` for each command.
    """


main.add_command(sr)
main.add_command(batch)
main.add_command(build_dataset_command)
main.add_command(evaluate_command)
main.add_command(train)
main.add_command(weights)


if __name__ == "__main__":
    main()
