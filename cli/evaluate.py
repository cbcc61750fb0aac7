"""`rrsgan-geo evaluate`: PSNR/SSIM of a generator against bicubic.

The library (torch) is imported inside the command, so that its `--help` and shell
completion answer at once."""

from pathlib import Path

import click
from tqdm import tqdm

from rrsgan_geo.cli.interrupts import sigterm_as_interrupt
from rrsgan_geo.cli.options import (
    device_option,
    json_option,
    self_ensemble_option,
    weights_option,
)
from rrsgan_geo.files import write_json


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
    "--co-register/--no-co-register",
    default=True,
    show_default=True,
    help="Move each reference (and the truth as reference) onto the LR by the translation "
    "phase correlation finds, as sr does.",
)
@click.option(
    "--degradation",
    default="bicubic",
    show_default=True,
    type=click.Choice(["bicubic", "sensor"]),
    help="The LR scored on: the data set's own (bicubic), or made from the HR as a real "
    "sensor would (a Gaussian PSF of sigma 0.6 LR px, area integration, shot and read "
    "noise, 8 bits, JPEG quality 85; not one of training's draws).",
)
@click.option(
    "--scene-blur",
    default="auto",
    show_default=True,
    metavar="auto|none|SIGMA|mtf:X",
    help="What the model is told of each sample's blur, as sr --scene-blur (auto: measured "
    "on the sample's reference).",
)
@self_ensemble_option
@json_option("the full results")
def evaluate_command(
    data_dirs,
    weights,
    held_out,
    limit,
    co_register,
    degradation,
    scene_blur,
    device,
    self_ensemble,
    json_path,
) -> None:
    """Score a generator on RRSSRD-style folders (HR/, LR/, Ref/ or google_Ref/).

    A build-dataset output is scored through its val/ folder, or given whole with
    --held-out CONFIG (its own split is kept).

    Reports PSNR and SSIM on RGB (the authors' released protocol) and on Y (as later
    RefSR papers report), 4-pixel border cropped, 8-bit images, for: the model; the
    model with its reference replaced by LR_UX4 (model_no_ref: what the reference
    adds); the model with the truth itself, shifted 3 px and recoloured, as reference
    (model_truth_ref: does the reference path work at all); and bicubic. Where the
    folders hold the same place on two dates (RRSSRD's val_1st and val_2nd, same file
    names), also the model with the other date's HR as reference
    (model_other_date_ref: a real reference from the same kind of sensor). Also how well
    the SR image, downsampled 4x, matches the LR. References are co-registered to the
    LR first, as sr does, unless --no-co-register.

    \b
    Example:
      rrsgan-geo evaluate rrssrd/val_1st rrssrd/val_2nd \\
          --held-out weights/provenance/rrsnet_compact_coreg_cpu_10.yaml --json eval.json
    """
    from rrsgan_geo.devices import resolve_device
    from rrsgan_geo.model.sensor import BICUBIC, EVALUATION_SENSOR
    from rrsgan_geo.model.weight_files import load_generator, shipped_weights_path
    from rrsgan_geo.sr.scene_blur import check_scene_blur
    from rrsgan_geo.training.data import RefSRDataset
    from rrsgan_geo.training.evaluation import OTHER_DATE, evaluate, summarise
    from rrsgan_geo.training.trainer import scored_samples

    check_scene_blur(scene_blur)
    samples = scored_samples(list(data_dirs), held_out)
    samples = samples[:limit] if limit else samples
    device = resolve_device(device)
    model, weight_file = load_generator(weights or shipped_weights_path(device.type))
    scores = []

    def on_sample(score) -> None:
        scores.append(score)
        bar.update()

    interrupted = False
    try:
        with (
            sigterm_as_interrupt(),
            tqdm(total=len(samples), unit="image", desc="evaluating", dynamic_ncols=True) as bar,
        ):
            sensor = EVALUATION_SENSOR if degradation == "sensor" else BICUBIC
            data = RefSRDataset(samples, co_register, sensor)
            evaluate(
                model,
                data,
                device,
                on_sample=on_sample,
                views=self_ensemble,
                scene_blur=scene_blur,
            )
    except KeyboardInterrupt:
        if not scores:
            raise click.ClickException("interrupted before the first image was scored") from None
        interrupted = True  # report the images scored: a long run is not lost
    summary = summarise(scores)
    summary["weights"] = {"file": weight_file.path.name, "sha256": weight_file.sha256}
    summary["co_register"] = co_register
    summary["self_ensemble"] = self_ensemble
    summary["degradation"] = degradation
    summary["scene_blur"] = scene_blur
    summary["complete"] = not interrupted
    registered = "references co-registered" if co_register else "references as given"
    views = f", self-ensemble of {self_ensemble} views" if self_ensemble > 1 else ""
    click.echo(
        f"{len(scores)} samples, {degradation} LR, scene blur {scene_blur} (mean "
        f"{summary['mean_scene_blur']:.2f} LR px), {registered}{views}, {summary['protocol']}"
    )
    click.echo(f"{'method':<20} {'RGB PSNR':>9} {'RGB SSIM':>9} {'Y PSNR':>8} {'Y SSIM':>7}")
    for method in summary["mean_psnr_rgb"]:
        row = [summary[f"mean_{m}"][method] for m in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")]
        click.echo(f"{method:<20} {row[0]:>9.3f} {row[1]:>9.4f} {row[2]:>8.3f} {row[3]:>7.4f}")
    rgb = summary["mean_psnr_rgb"]
    click.echo(
        f"reference adds {rgb['model'] - rgb['model_no_ref']:+.3f} dB (RGB); "
        f"model vs bicubic {rgb['model'] - rgb['bicubic']:+.3f} dB; "
        f"truth as reference vs bicubic {rgb['model_truth_ref'] - rgb['bicubic']:+.3f} dB"
    )
    if summary["other_date_samples"]:
        click.echo(
            f"another date's HR as reference adds {summary['other_date_ref_adds_rgb']:+.3f} dB "
            f"(RGB; {OTHER_DATE}, on the {summary['other_date_samples']} samples whose place "
            "the data holds on another date)"
        )
    click.echo(
        f"SR degraded 4x as the scene vs LR: {summary['mean_lr_consistency_psnr']:.2f} dB (RGB)"
    )
    if json_path is not None:
        write_json(json_path, summary)
        click.echo(f"wrote {json_path}")
    if interrupted:
        raise click.ClickException(
            f"interrupted: the scores above are of the first {len(scores)} of "
            f"{len(samples)} images only"
        )
