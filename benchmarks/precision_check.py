"""Does reduced precision change what `sr` writes? fp32 against bf16 (or fp16).

Runs the real pipeline twice on the same scene (a mosaic of the CC0 NEON image, UTM,
with its 4x reference in EPSG:3857, as `sr_bench.py` makes them), with the shipped
weights for the device (or --weights), once in fp32 and once in --precision, and
compares the two uint8 outputs pixel by pixel. The GPU issue's bar: within 1 DN on
at least 99 % of pixels. The last line is "within 1 DN: X % of pixels".

    python benchmarks/precision_check.py --device cuda --size 1024
    python benchmarks/precision_check.py --device cpu --size 128   # CPUs with bf16
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from sr_bench import make_inputs

from rrsgan_geo import sr
from rrsgan_geo.devices import resolve_device
from rrsgan_geo.host_memory import keep_freed_memory
from rrsgan_geo.sr.planning import SROptions


def run(scene: Path, ref: Path, out: Path, generator: sr.Generator, options: SROptions) -> float:
    """Seconds for one `sr` run (planning included)."""
    started = time.perf_counter()
    sr.run(sr.plan(scene, ref, out, options, generator), generator)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="LR width and height")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="bf16", help="bf16 or fp16, against fp32")
    parser.add_argument("--weights", type=Path, help="default: the shipped ones for the device")
    parser.add_argument("--tile", type=int, help="LR tile side (default: the device's)")
    parser.add_argument("--batch", type=int, help="tiles per model call (default: the device's)")
    args = parser.parse_args()
    keep_freed_memory()  # as the rrsgan-geo command does
    device = resolve_device(args.device)
    generator = sr.load_generator(args.weights, args.device)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        scene, ref = make_inputs(folder, args.size, args.size, "EPSG:3857")
        outputs, seconds = {}, {}
        for precision in ("fp32", args.precision):
            options = SROptions(
                tile=args.tile, batch_size=args.batch, device=args.device, precision=precision
            )
            out = folder / f"{precision}.tif"
            seconds[precision] = run(scene, ref, out, generator, options)
            with rasterio.open(out) as dataset:
                outputs[precision] = dataset.read().astype(np.int16)
    difference = np.abs(outputs["fp32"] - outputs[args.precision])
    within = 100 * float((difference <= 1).mean())
    print(
        f"{generator.name} on {device}, {args.size}^2 LR: fp32 {seconds['fp32']:.1f} s, "
        f"{args.precision} {seconds[args.precision]:.1f} s"
    )
    print(f"max difference {int(difference.max())} DN, mean {float(difference.mean()):.4f} DN")
    print(f"within 1 DN: {within:.3f} % of pixels")


if __name__ == "__main__":
    main()
