"""`rrsgan-geo train`: train the generator from a YAML config.

The library (torch) is imported inside the functions, so that `train --help` and
shell completion answer at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from rrsgan_geo.cli.interrupts import sigterm_as_interrupt
from rrsgan_geo.cli.options import device_option

if TYPE_CHECKING:
    from rrsgan_geo.training.trainer import StepLog


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@device_option
@click.option(
    "--data",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Training data folder (a build-dataset output, or RRSSRD-style folders; "
    "repeatable), in place of the config's `data`.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the run's checkpoint and exports go, in place of the config's `output_dir`.",
)
@click.option("--resume", is_flag=True, help="Continue the run in the config's output_dir.")
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop at the first step boundary after this many minutes, save and export "
    "(for short GPU windows; continue with --resume, or from the export via init_weights).",
)
def train(
    config: Path,
    data: tuple[Path, ...],
    output_dir: Path | None,
    resume: bool,
    device: str,
    max_minutes: float | None,
) -> None:
    """Train the RRSGAN generator as the authors did, from CONFIG (YAML).

    Stage 1 trains with L1 only (the RRSNet/PSNR model). Stage 2 adds the VGG19
    perceptual loss and image- and gradient-domain discriminators; it needs
    torchvision's ImageNet vgg19 weights as a local file (`vgg19_weights`), since
    nothing is downloaded. Checkpoints go to output_dir every `checkpoint_every`
    steps and on exit (Ctrl-C included); --resume continues exactly where it stopped.
    The places held out for validation are whole blocks of places, never crops of
    training places.

    Each sample's reference is drawn from the config's `reference` sources (real,
    other date, synthetic from the HR, none) and moved onto the sample by phase
    correlation, as sr co-registers a reference (`reference.co_register`); every
    validation prints the reference's effect (PSNR with the reference minus without
    it), so a run shows whether the reference path is learning. Under torchrun, each
    process trains on its share of the batch with DistributedDataParallel (gloo on
    CPU, NCCL on GPUs). Every config key, its default and meaning:
    docs/training_config.md in the project.

    \b
    Examples (recipes in examples/train of the project):
      rrsgan-geo train examples/train/starter.yaml
      rrsgan-geo train examples/train/compact_stage1_cpu.yaml --data pairs --max-minutes 60
      rrsgan-geo train examples/train/compact_stage1_cpu.yaml --data pairs --resume
      rrsgan-geo train examples/train/full_stage1_gpu.yaml --data pairs --device cuda
      torchrun --nproc-per-node 8 -m rrsgan_geo.cli.main train full.yaml --device cuda
    """
    from rrsgan_geo.training.distributed import distributed_process_group
    from rrsgan_geo.training.trainer import load_config

    settings = load_config(config)
    if data:
        settings = dataclasses.replace(settings, data=tuple(path.resolve() for path in data))
    if output_dir is not None:
        settings = dataclasses.replace(settings, output_dir=output_dir.resolve())
    with distributed_process_group(device) as process_device:
        _train(settings, process_device, resume, max_minutes)


def _train(settings, device, resume: bool, max_minutes: float | None) -> None:
    from rrsgan_geo.training.trainer import Trainer

    trainer = Trainer(settings, device, resume=resume)
    quiet = trainer.rank != 0
    click.echo(
        f"{settings.name}: stage {settings.stage}, {len(trainer.train_data)} training images, "
        f"{len(trainer.val_places)} held-out places, step {trainer.step} -> {settings.steps}, "
        f"output {settings.output_dir}",
        err=True,
    )
    bar = tqdm(
        total=settings.steps,
        initial=trainer.step,
        unit="step",
        dynamic_ncols=True,
        disable=quiet,
    )

    def report(log: StepLog) -> None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in log.losses.items()}, refresh=False)
        if log.validation is not None:
            v = log.validation
            bar.write(
                f"step {log.step}: val RGB PSNR {v['model']:.2f} dB (bicubic "
                f"{v['bicubic']:.2f}), reference effect {v['ref_effect']:+.3f} dB, "
                f"truth-as-reference effect {v['truth_ref_effect']:+.3f} dB, "
                f"lr {log.learning_rate:.2e}"
            )

    try:
        with sigterm_as_interrupt():  # a scheduler's stop saves a checkpoint too
            finished = trainer.run(report, max_minutes=max_minutes)
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted at step {trainer.step}; checkpoint saved, continue with --resume"
        ) from None
    finally:
        bar.close()
    if not quiet:
        state = "done" if finished else f"stopped after {max_minutes:g} min at step {trainer.step}"
        click.echo(f"{state}: {settings.output_dir / 'latest.safetensors'}")
