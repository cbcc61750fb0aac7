"""`rrsgan-geo weights`: inspect, convert and combine generator weight files.

The library (torch) is imported inside the commands, so that their `--help` and
shell completion answer at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rrsgan_geo.model.weight_files import WeightFile


@click.group()
def weights() -> None:
    """Inspect, convert and combine generator weight files.

    Weights are read from .safetensors, or from PyTorch .pth/.pt state dicts (such as
    the authors' MMSR checkpoints) with torch.load(weights_only=True): a weight file
    can never run code.
    """


def _describe(weight_file: WeightFile) -> dict[str, object]:
    from rrsgan_geo.errors import WeightsError
    from rrsgan_geo.model.weight_files import check_finite, tensor_config

    meta = weight_file.metadata
    problems = []
    for check in (tensor_config, check_finite):
        try:
            check(weight_file)
        except WeightsError as error:
            problems.append(str(error).split(": ", 1)[-1])
    return {
        "file": str(weight_file.path),
        "sha256": weight_file.sha256,
        "metadata": "rrsgan-geo" if weight_file.has_metadata else "none (architecture inferred)",
        "architecture": {"name": "RRSNet", **meta.config.to_dict()},
        "tensors": len(weight_file.state_dict),
        "parameters": weight_file.parameter_count,
        "training_data": meta.training_data,
        "margin_lr_px": meta.margin,
        "value_scaling": meta.value_scaling,
        "software": meta.software,
        "notes": meta.notes,
        "problems": problems or ["none: metadata and tensors agree, all values finite"],
    }


@weights.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(file: Path, as_json: bool) -> None:
    """Show a weight file's architecture, metadata, size and sha256.

    \b
    Example:
      rrsgan-geo weights info weights/rrsgan_l1_compact.safetensors
    """
    from rrsgan_geo.model.generator import BLUR_FLAGS
    from rrsgan_geo.model.weight_files import read_weight_file

    description = _describe(read_weight_file(file))
    if as_json:
        click.echo(json.dumps(description, indent=2))
        return
    arch = description["architecture"]
    description["architecture"] = (
        f"RRSNet nf={arch['nf']} n_blocks={arch['n_blocks']} groups={arch['groups']}"
        + "".join(f" {flag}" for flag in BLUR_FLAGS if arch.get(flag))
    )
    description["problems"] = "; ".join(description["problems"])
    description["parameters"] = f"{description['parameters']:,}"
    description["margin"] = f"{description.pop('margin_lr_px')} LR pixels per tile side"
    width = max(len(key) for key in description) + 1
    for key, value in description.items():
        click.echo(f"{key.replace('_', ' ') + ':':<{width + 1}} {value}")


@weights.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--training-data", help="What the weights were trained on (free text).")
@click.option("--margin", type=click.IntRange(0, 256), help="Context in LR pixels per tile side.")
@click.option("--value-scaling", help="How input values map to [0, 1] (free text).")
@click.option("--notes", help="Anything else a user should know.")
@click.option(
    "--half",
    is_flag=True,
    help="Store the tensors as float16: half the file; check the scores it gives.",
)
@click.option("--overwrite", is_flag=True, help="Replace TARGET if it exists.")
def convert(
    source: Path,
    target: Path,
    training_data: str | None,
    margin: int | None,
    value_scaling: str | None,
    notes: str | None,
    half: bool,
    overwrite: bool,
) -> None:
    """Check SOURCE against the generator and write it to TARGET as safetensors.

    SOURCE may be a .pth/.pt (also nested in a checkpoint or with `module.` prefixes)
    or a .safetensors file. The architecture is read from the tensor shapes; options
    set the metadata that inference reads later.

    \b
    Example:
      rrsgan-geo weights convert RRSGAN_G.pth rrsgan.safetensors \\
          --training-data "RRSSRD train" --margin 16
      rrsgan-geo weights convert full.safetensors full_fp16.safetensors --half
    """
    from rrsgan_geo.model.weight_files import convert_weights

    _check_target(target, overwrite)
    fields = {
        "training_data": training_data,
        "margin": margin,
        "value_scaling": value_scaling,
        "notes": notes,
    }
    written = convert_weights(
        source, target, half, **{k: v for k, v in fields.items() if v is not None}
    )
    _report_written(written)


@weights.command()
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("expert", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace TARGET if it exists.")
def combine(model: Path, expert: Path, target: Path, overwrite: bool) -> None:
    """Join MODEL (trained for blurred LR) and EXPERT (trained on bicubic LR) into one
    weight file TARGET that hands each scene to one of them by its blur.

    A scene whose blur reads bicubic-like (`sr --scene-blur auto` below 0.2 LR px, or
    `--scene-blur none`) runs on EXPERT, any other on MODEL: a model trained for real
    sensors keeps less of the gain on bicubic-made LR than one trained for it. Both
    must be the same size and take a blur code (trained with `model.blur_input`).

    \b
    Example:
      rrsgan-geo weights combine sensor.safetensors bicubic.safetensors joined.safetensors
    """
    from rrsgan_geo.model.weight_files import combine_weights

    _check_target(target, overwrite)
    _report_written(combine_weights(model, expert, target))


def _check_target(target: Path, overwrite: bool) -> None:
    if target.suffix != ".safetensors":
        raise click.BadParameter("must end in .safetensors", param_hint="TARGET")
    if target.exists() and not overwrite:
        raise click.ClickException(f"{target} exists; pass --overwrite to replace it")
    if not target.parent.is_dir():
        raise click.ClickException(f"output folder does not exist: {target.parent}")


def _report_written(written: WeightFile) -> None:
    click.echo(
        f"wrote {written.path} ({written.parameter_count:,} parameters, sha256 {written.sha256})"
    )
