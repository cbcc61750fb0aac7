"""`rrsgan-geo evaluate`: PSNR/SSIM of a generator against bicubic."""

import json
from pathlib import Path

import click
from tqdm import tqdm

from rrsgan_geo.cli.options import device_option, weights_option
from rrsgan_geo.data import find_samples, spatial_split
from rrsgan_geo.errors import InputError
from rrsgan_geo.evaluation import METHODS, evaluate, summarise
from rrsgan_geo.inference import resolve_device
from rrsgan_geo.training import load_config
from rrsgan_geo.weight_files import load_generator, shipped_weights_path


@click.command(name="evaluate")
@click.argument("data_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@weights_option
@device_option
@click.option(
    "--held-out",
    "held_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Only the places this training config held out.",
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many samples.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the full results here.",
)
def evaluate_command(data_dirs, weights, held_out, limit, device, json_path) -> None:
    """Score a generator on RRSSRD-style folders (HR/, LR/, Ref/ or google_Ref/).

    Reports PSNR and SSIM on the Y channel with a 4-pixel border cropped (the authors'
    protocol) for the model, for the model with its reference replaced by LR_UX4 (what
    the reference adds) and for bicubic; and how well the SR image, downsampled 4x,
    matches the LR.

    \b
    Example:
      rrsgan-geo evaluate ../shared/data/rrssrd_val/val_1st ../shared/data/rrssrd_val/val_2nd \\
          --held-out examples/train/rrsnet_compact_cpu.yaml --json eval.json
    """
    samples = [s for folder in data_dirs for s in find_samples(folder)]
    if held_out is not None:
        config = load_config(held_out)
        _, samples = spatial_split(samples, config.val_fraction, config.split_block, config.seed)
        if not samples:
            raise InputError(f"{held_out} holds out none of these samples")
    samples = samples[:limit] if limit else samples
    model, weight_file = load_generator(weights or shipped_weights_path())
    with tqdm(total=len(samples), unit="image", desc="evaluating", dynamic_ncols=True) as bar:
        scores = evaluate(model, samples, resolve_device(device), on_sample=lambda _: bar.update())
    summary = summarise(scores)
    summary["weights"] = {"file": str(weight_file.path), "sha256": weight_file.sha256}
    click.echo(f"{len(samples)} samples, {summary['protocol']}")
    click.echo(f"{'method':<14} {'PSNR dB':>8} {'SSIM':>7}")
    for method in METHODS:
        mean_psnr, mean_ssim = summary["mean_psnr"][method], summary["mean_ssim"][method]
        click.echo(f"{method:<14} {mean_psnr:>8.3f} {mean_ssim:>7.4f}")
    click.echo(f"SR downsampled 4x vs LR: {summary['mean_lr_consistency_psnr']:.2f} dB (RGB)")
    if json_path is not None:
        json_path.write_text(json.dumps(summary, indent=2))
        click.echo(f"wrote {json_path}")
