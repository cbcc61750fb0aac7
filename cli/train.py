"""`rrsgan-geo train`: train the generator from a YAML config."""

from pathlib import Path

import click
from tqdm import tqdm

from rrsgan_geo.cli.options import device_option
from rrsgan_geo.inference import resolve_device
from rrsgan_geo.training import StepLog, Trainer, load_config


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@device_option
@click.option("--resume", is_flag=True, help="Continue the run in the config's output_dir.")
def train(config: Path, resume: bool, device: str) -> None:
    """Train the RRSGAN generator as the authors did, from CONFIG (YAML).

    Stage 1 trains with L1 only (the RRSNet/PSNR model). Stage 2 adds the VGG19
    perceptual loss and image- and gradient-domain discriminators; it needs
    torchvision's ImageNet vgg19 weights as a local file (`vgg19_weights`), since
    nothing is downloaded. Checkpoints go to output_dir every `checkpoint_every`
    steps and on exit (Ctrl-C included); --resume continues exactly where it stopped.
    The places held out for validation are whole blocks of places, never crops of
    training places.

    \b
    Example:
      rrsgan-geo train examples/train/rrsnet_compact_cpu.yaml
      rrsgan-geo train examples/train/rrsnet_compact_cpu.yaml --resume
    """
    settings = load_config(config)
    trainer = Trainer(settings, resolve_device(device), resume=resume)
    click.echo(
        f"{settings.name}: stage {settings.stage}, {len(trainer.train_data)} training images, "
        f"{len(trainer.val_places)} held-out places, step {trainer.step} -> {settings.steps}, "
        f"output {settings.output_dir}",
        err=True,
    )
    bar = tqdm(total=settings.steps, initial=trainer.step, unit="step", dynamic_ncols=True)

    def report(log: StepLog) -> None:
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in log.losses.items()}, refresh=False)
        if log.val_psnr is not None:
            bar.write(
                f"step {log.step}: val PSNR {log.val_psnr:.2f} dB "
                f"(bicubic {log.val_bicubic_psnr:.2f} dB), lr {log.learning_rate:.2e}"
            )

    try:
        trainer.run(report)
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted at step {trainer.step}; checkpoint saved, continue with --resume"
        ) from None
    finally:
        bar.close()
    click.echo(f"done: {settings.output_dir / 'latest.safetensors'}")
