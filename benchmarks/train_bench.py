"""Training speed: steps/s and images/s for a config on the device at hand.

Runs `Trainer.train_step` for a few steps (after warm-up) on the config's data with its
reference mix, model size, batch and crop, and prints one table. Rows marked "before"
are earlier paths kept for comparison in the same run: the batch built on the device at
the start of each step (now: on the CPU, for the next step, while the device computes
this one), the deformable convolution through torchvision's `deform_conv2d`, the model
in the standard (NCHW) memory layout instead of channels_last, and the first data
recipe, which re-ran the bicubic degradations on the whole image for every crop.

    python benchmarks/train_bench.py examples/train/starter.yaml
    python benchmarks/train_bench.py full.yaml --device cuda --steps 50

Timings on shared machines are noisy: compare rows of one run, not runs.
"""

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
from torchvision.ops import deform_conv2d

from rrsgan_geo.devices import resolve_device
from rrsgan_geo.host_memory import keep_freed_memory
from rrsgan_geo.model import deform
from rrsgan_geo.training.data import RefSRDataset
from rrsgan_geo.training.trainer import Trainer, load_config


def _torchvision_forward(self, features, offset_features):
    """The layer as it was: DCNv2 through torchvision's kernel, in float32."""
    out = self.conv_offset_mask(offset_features)
    o1, o2, mask_logits = torch.chunk(out, 3, dim=1)
    with torch.autocast(features.device.type, enabled=False):
        return deform_conv2d(
            features.float(),
            torch.cat((o1, o2), dim=1).float(),
            self.weight.float(),
            self.bias.float(),
            padding=self.padding,
            mask=torch.sigmoid(mask_logits.float()),
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(trainer: Trainer, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        trainer.train_step()
    _sync(trainer.device)
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    _sync(trainer.device)
    return (time.perf_counter() - started) / steps


def _time_old_data_recipe(data: RefSRDataset, batch_size: int, repeats: int) -> float:
    """Per batch: LR_UX4 and Ref_DUX4 of each crop's whole image, as before."""
    started = time.perf_counter()
    for repeat in range(repeats):
        for index in range(batch_size):
            data[(repeat * batch_size + index) % len(data)]
    return (time.perf_counter() - started) / repeats


def _time_batches(
    build: Callable[[int], dict[str, torch.Tensor]], device: torch.device, repeats: int
) -> float:
    """Seconds per batch of `build`, after one untimed batch (the data set pads and
    co-registers its images on first use)."""
    build(repeats)
    _sync(device)
    started = time.perf_counter()
    for step in range(repeats):
        build(step)
    _sync(device)
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    keep_freed_memory()  # as the rrsgan-geo command does
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        config = dataclasses.replace(
            load_config(args.config), output_dir=Path(folder), init_weights=None
        )
        trainer = Trainer(config, device)
        batch = config.batch_size

        def on_device(step: int) -> dict[str, torch.Tensor]:
            return trainer.train_data.batch(
                batch, config.lr_crop, config.seed, step, config.reference, device=device
            )

        rows = [
            ("data: batch built on the CPU (now)", _time_batches(trainer._build_batch, device, 20)),
            ("data: batch built on the device (before)", _time_batches(on_device, device, 20)),
            (
                "data: whole-image degradations per crop (first recipe)",
                _time_old_data_recipe(trainer.train_data, batch, 3),
            ),
            (
                "train step, next batch built during this one (now)",
                _time_steps(trainer, args.steps, args.warmup),
            ),
        ]
        with (
            mock.patch.object(trainer, "_build_ahead", lambda: None),
            mock.patch.object(trainer, "_build_batch", on_device),
        ):
            rows.append(
                (
                    "train step, batch built on the device at its start (before)",
                    _time_steps(trainer, args.steps, args.warmup),
                )
            )
        with mock.patch.object(deform.SeparateOffsetDeformConv, "forward", _torchvision_forward):
            rows.append(
                (
                    "train step, DCN via torchvision deform_conv2d (before)",
                    _time_steps(trainer, args.steps, args.warmup),
                )
            )
        standard = trainer._build_batch
        trainer.generator.to(memory_format=torch.contiguous_format)
        with mock.patch.object(
            trainer,
            "_build_batch",
            lambda step: {key: images.contiguous() for key, images in standard(step).items()},
        ):
            rows.append(
                (
                    "train step, standard (NCHW) layout instead of channels_last (before)",
                    _time_steps(trainer, args.steps, args.warmup),
                )
            )
    print(
        f"{config.name}: model nf={config.model.nf} blocks={config.model.n_blocks} "
        f"groups={config.model.groups}, batch {batch}, LR crop {config.lr_crop}, "
        f"amp {config.amp}, device {device}, torch threads {torch.get_num_threads()}"
    )
    print("| what | s per batch | batches/s | images/s |")
    print("|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {1 / seconds:.2f} | {batch / seconds:.1f} |")
    now = rows[3][1]
    print(f"step with the batch built ahead vs at its start: {rows[4][1] / now:.2f}x")
    print(f"step with the batched DCN product vs torchvision's: {rows[5][1] / now:.2f}x")
    print(f"step channels_last vs the standard layout: {rows[6][1] / now:.2f}x")


if __name__ == "__main__":
    main()
