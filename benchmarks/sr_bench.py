"""Benchmark of `sr` on CPU or GPU: throughput, model-only vs end-to-end, peak memory.

Each scene size runs in a fresh subprocess so its peak RSS is its own. The scene is a
mosaic of the CC0 NEON image in examples/data (random pixels if it is absent), the
reference the same pixels on the 4x grid; the model has random weights of the chosen
size (speed does not depend on the weights).

    python benchmarks/sr_bench.py                      # full model, two heights
    python benchmarks/sr_bench.py --nf 32 --blocks 4   # a compact model

Columns: tiles/s and LR megapixels/s end to end; model-only = the same tiles through
the model alone, no I/O; overhead = end-to-end / model-only; peak RSS of the process.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine

from rrsgan_geo.devices import resolve_device
from rrsgan_geo.inference import TileModel
from rrsgan_geo.model import GeneratorConfig, RRSNet
from rrsgan_geo.pipeline import Generator, SROptions, plan_sr, super_resolve

NEON = Path(__file__).resolve().parents[1] / "examples" / "data" / "osbs_029_0.1m_utm17n.tif"


def _pixels(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    if not NEON.is_file():
        return rng.integers(0, 255, (3, height, width), dtype=np.uint8)
    with rasterio.open(NEON) as src:
        tile = src.read()
    reps = (1, -(-height // tile.shape[1]), -(-width // tile.shape[2]))
    return np.tile(tile, reps)[:, :height, :width]


def _write(path: Path, data: np.ndarray, transform: Affine) -> None:
    profile = {"driver": "GTiff", "count": 3, "dtype": "uint8", "crs": "EPSG:32617"}
    profile.update(width=data.shape[2], height=data.shape[1], transform=transform)
    profile.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)


def run_one(args: argparse.Namespace) -> dict:
    """One scene size, in this process."""
    torch.manual_seed(0)
    config = GeneratorConfig(nf=args.nf, n_blocks=args.blocks, groups=8)
    generator = Generator(RRSNet(config), "random", "0" * 64, args.margin)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        hr = _pixels(4 * args.height, 4 * args.width, rng)
        lr = hr.reshape(3, args.height, 4, args.width, 4).mean(axis=(2, 4)).astype(np.uint8)
        _write(folder / "scene.tif", lr, Affine(0.4, 0, 404000, 0, -0.4, 3285000))
        _write(folder / "ref.tif", hr, Affine(0.1, 0, 404000, 0, -0.1, 3285000))
        options = SROptions(tile=args.tile, batch_size=args.batch, device=args.device)
        plan = plan_sr(
            folder / "scene.tif", folder / "ref.tif", folder / "out.tif", options, args.margin
        )
        report = super_resolve(plan, generator, options)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The model alone on the same batches (the pipeline batches within a tile row),
    # inputs made beforehand: no reading, no degradation, no blending, no writing.
    runner = TileModel(generator.model, resolve_device(args.device), "fp32", args.batch)
    layout, size = plan.layout, plan.layout.lr_tile_size
    batches = []
    for row in range(layout.rows):
        count = len(layout.tiles_in_row(row))
        for start in range(0, count, args.batch):
            n = min(args.batch, count - start)
            batches.append(
                (torch.rand(n, 3, size, size),)
                + tuple(torch.rand(n, 3, 4 * size, 4 * size) for _ in range(3))
            )
    started = time.perf_counter()
    for batch in batches:
        runner(batch)
    model_only = time.perf_counter() - started
    return {
        "scene": f"{args.width}x{args.height}",
        "tiles": report.tiles,
        "tiles_per_s": report.tiles / report.seconds,
        "lr_mpix_per_s": args.width * args.height / report.seconds / 1e6,
        "end_to_end_s": report.seconds,
        "model_in_run_s": report.model_seconds,
        "model_only_s": model_only,
        "overhead": report.seconds / model_only,
        "peak_rss_mib": peak_rss,
        "device": report.device,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128, help="LR width")
    parser.add_argument("--heights", default="64,256", help="LR heights, comma-separated")
    parser.add_argument("--height", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, default=32)
    parser.add_argument("--margin", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--nf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.height is not None:  # child process: one size
        print(json.dumps(run_one(args)))
        return
    rows = []
    for height in args.heights.split(","):
        child = [sys.executable, __file__, *sys.argv[1:], "--height", height]
        output = subprocess.run(child, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    print(
        f"model nf={args.nf} blocks={args.blocks}, tile {args.tile}+{args.margin} LR px, "
        f"batch {args.batch}, device {rows[0]['device']}, torch threads {torch.get_num_threads()}"
    )
    header = (
        "scene (LR)",
        "tiles",
        "tiles/s",
        "LR MP/s",
        "end-to-end s",
        "model-only s",
        "overhead",
        "peak RSS MiB",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print(
            f"| {r['scene']} | {r['tiles']} | {r['tiles_per_s']:.2f} | {r['lr_mpix_per_s']:.4f} | "
            f"{r['end_to_end_s']:.1f} | {r['model_only_s']:.1f} | {r['overhead']:.3f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"peak RSS ratio, tallest / shortest: {ratio:.3f}")


if __name__ == "__main__":
    main()
