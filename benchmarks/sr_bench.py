"""Benchmark of `sr` on CPU or GPU: throughput, model-only vs end-to-end, peak memory.

Each scene size runs in a fresh subprocess so its peak RSS is its own. The scene is a
mosaic of the CC0 NEON image in examples/data (random pixels if it is absent), in UTM;
the reference is the same pixels at 4x, warped into --ref-crs (EPSG:3857 by default,
as web map references are); the model has random weights of the chosen size (speed
does not depend on the weights).

    python benchmarks/sr_bench.py                      # full model, two heights
    python benchmarks/sr_bench.py --nf 16 --blocks 2 --groups 4   # the compact model
    python benchmarks/sr_bench.py --pipeline-only --heights 512 --width 512

Columns: tiles/s and LR megapixels/s end to end; model-only = the same tiles through
the model alone, no I/O; overhead = end-to-end / model-only; peak RSS of the process.

--pipeline-only swaps the generator for a stand-in that costs nothing (it returns
LR_UX4), so what is timed is the pipeline itself: reading, warping, degradation,
blending, writing. It is compared with an I/O floor measured in the same run: the
scene read whole, the reference warped onto the 4x grid with all cores, the output
written compressed, with plain rasterio. It also prints each one's CPU seconds (all
threads) and the least ratio that CPU work allows, had it been shared perfectly over
all cores from the start. The last line is "pipeline/floor ratio X".
"""

import argparse
import json
import os
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
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import array_bounds
from rasterio.warp import calculate_default_transform, reproject

from rrsgan_geo import sr
from rrsgan_geo.devices import default_batch, resolve_device
from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.host_memory import keep_freed_memory
from rrsgan_geo.model import GeneratorConfig, RRSNet
from rrsgan_geo.sr.inference import TileModel, count_macs_per_lr_pixel
from rrsgan_geo.sr.planning import SROptions

SCENE_CRS = "EPSG:32617"
NEON = Path(__file__).resolve().parents[1] / "examples" / "data" / "osbs_029_0.1m_utm17n.tif"


def _pixels(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    if not NEON.is_file():
        return rng.integers(0, 255, (3, height, width), dtype=np.uint8)
    with rasterio.open(NEON) as src:
        tile = src.read()
    reps = (1, -(-height // tile.shape[1]), -(-width // tile.shape[2]))
    return np.tile(tile, reps)[:, :height, :width]


def _write(path: Path, data: np.ndarray, transform: Affine, crs: str = SCENE_CRS) -> None:
    profile = {"driver": "GTiff", "count": 3, "dtype": "uint8", "crs": crs}
    profile.update(width=data.shape[2], height=data.shape[1], transform=transform)
    profile.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)


def make_inputs(folder: Path, width: int, height: int, ref_crs: str) -> tuple[Path, Path]:
    """A UTM scene of width x height LR pixels and its 4x reference in `ref_crs`."""
    hr = _pixels(4 * height, 4 * width, np.random.default_rng(0))
    lr = hr.reshape(3, height, 4, width, 4).mean(axis=(2, 4)).astype(np.uint8)
    scene, ref = folder / "scene.tif", folder / "ref.tif"
    _write(scene, lr, Affine(0.4, 0, 404000, 0, -0.4, 3285000))
    hr_transform = Affine(0.1, 0, 404000, 0, -0.1, 3285000)
    if CRS.from_user_input(ref_crs) == CRS.from_user_input(SCENE_CRS):
        _write(ref, hr, hr_transform)
        return scene, ref
    transform, ref_width, ref_height = calculate_default_transform(
        SCENE_CRS, ref_crs, hr.shape[2], hr.shape[1], *array_bounds(*hr.shape[1:], hr_transform)
    )
    warped = np.zeros((3, ref_height, ref_width), np.uint8)
    reproject(
        hr,
        warped,
        src_transform=hr_transform,
        src_crs=SCENE_CRS,
        dst_transform=transform,
        dst_crs=ref_crs,
        resampling=Resampling.bilinear,
    )
    _write(ref, warped, transform, ref_crs)
    return scene, ref


def _progress(line: str) -> None:
    """A line on stderr as each part ends, so that a run cut short still says how far
    it got (the table comes on stdout at the end)."""
    print(line, file=sys.stderr, flush=True)


class StandIn(torch.nn.Module):
    """A generator that costs nothing: it returns LR_UX4, which the pipeline made."""

    def forward(self, lr, lr_ux4, ref, ref_dux4, blur=None) -> torch.Tensor:  # noqa: ARG002
        return lr_ux4


def run_one(args: argparse.Namespace) -> dict:
    """One scene size, in this process."""
    torch.manual_seed(0)
    config = GeneratorConfig(nf=args.nf, n_blocks=args.blocks, groups=args.groups)
    generator = sr.Generator(RRSNet(config), "random", "0" * 64, args.margin)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        started = time.perf_counter()
        scene, ref = make_inputs(folder, args.width, args.height, args.ref_crs)
        _progress(
            f"{args.width}x{args.height}: inputs made in {time.perf_counter() - started:.1f} s"
        )
        options = SROptions(
            tile=args.tile,
            batch_size=args.batch,
            device=args.device,
            precision=args.precision,
            co_register=args.co_register,
        )
        started = time.perf_counter()
        first_tile: list[float] = []

        def on_tiles(_count: int) -> None:
            if not first_tile:
                first_tile.append(time.perf_counter() - started)

        plan = sr.plan(scene, ref, folder / "out.tif", options, generator)
        report = sr.run(plan, generator, progress=on_tiles)
    _progress(f"end to end {report.seconds:.1f} s (model {report.model_seconds:.1f} s)")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The model alone on the same batches (the pipeline batches within a tile row),
    # inputs made beforehand: no reading, no degradation, no blending, no writing.
    device = resolve_device(args.device)
    batch_size = args.batch or default_batch(device)
    runner = TileModel(generator.model, device, report.precision, batch_size)
    layout, size = plan.layout, plan.layout.lr_tile_size
    # One input per batch size, reused: speed does not depend on the pixels, and a
    # 4096^2 scene's inputs all made at once would take 12 GB and seconds to draw.
    inputs: dict[int, tuple[torch.Tensor, ...]] = {}
    batches = []
    for row in range(layout.rows):
        count = len(layout.tiles_in_row(row))
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            if n not in inputs:
                inputs[n] = (torch.rand(n, 3, size, size),) + tuple(
                    torch.rand(n, 3, 4 * size, 4 * size) for _ in range(3)
                )
            batches.append(inputs[n])
    started = time.perf_counter()
    for batch in batches:
        runner(batch)
    if runner.device.type == "cuda":
        torch.cuda.synchronize(runner.device)
    model_only = time.perf_counter() - started
    _progress(f"model only {model_only:.1f} s")
    tile_pixels = layout.count * size**2  # margins included: what the model computes
    tflops = 2 * count_macs_per_lr_pixel(generator.model) * tile_pixels / model_only / 1e12
    cuda = runner.device.type == "cuda"
    return {
        "scene": f"{args.width}x{args.height}",
        "tile": f"{layout.tile}+{layout.margin}",
        "batch": batch_size,
        "model_lr_mpix_per_s": args.width * args.height / model_only / 1e6,
        "model_tflops": tflops,
        "first_tile_s": first_tile[0],
        "peak_gpu_mib": torch.cuda.max_memory_allocated(runner.device) / 2**20 if cuda else 0.0,
        "tiles": report.tiles,
        "tiles_per_s": report.tiles / report.seconds,
        "lr_mpix_per_s": args.width * args.height / report.seconds / 1e6,
        "end_to_end_s": report.seconds,
        "model_in_run_s": report.model_seconds,
        "model_only_s": model_only,
        "overhead": report.seconds / model_only,
        "peak_rss_mib": peak_rss,
        "device": report.device,
        "precision": report.precision,
    }


def cpu_seconds() -> float:
    """CPU time of this process so far, all threads (GDAL's and torch's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def io_floor(scene: Path, ref: Path, out: Path, grid: RasterGrid) -> float:
    """Seconds for the least any pipeline must do, with plain rasterio: read the scene,
    warp the reference onto the 4x grid with all cores, write the result compressed."""
    started = time.perf_counter()
    with rasterio.open(scene) as src:
        src.read()
    with rasterio.open(ref) as src:
        warped = np.zeros((src.count, grid.height, grid.width), np.uint8)
        reproject(
            rasterio.band(src, list(range(1, src.count + 1))),
            warped,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            resampling=Resampling.bilinear,
            num_threads=os.cpu_count() or 1,
        )
    profile = {"driver": "GTiff", "count": 3, "dtype": "uint8", "crs": grid.crs}
    profile.update(width=grid.width, height=grid.height, transform=grid.transform)
    profile.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    profile.update(predictor=2, num_threads="ALL_CPUS")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(warped)
    return time.perf_counter() - started


def run_pipeline_only(args: argparse.Namespace) -> dict:
    """The real pipeline with a zero-cost model vs the I/O floor, best of --repeats each,
    interleaved so that both see the same machine."""
    generator = sr.Generator(StandIn(), "stand-in", "0" * 64, args.margin)
    options = SROptions(
        tile=args.tile, batch_size=args.batch, device=args.device, co_register=args.co_register
    )
    pipeline, floor, first_tile = [], [], []
    pipeline_cpu, floor_cpu = [], []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        scene, ref = make_inputs(folder, args.width, args.height, args.ref_crs)
        for repeat in range(args.repeats):
            out = folder / f"out{repeat}.tif"
            cpu_started = cpu_seconds()
            started = time.perf_counter()
            seen: list[float] = []

            def on_tiles(_count: int, seen=seen, started=started) -> None:
                if not seen:
                    seen.append(time.perf_counter() - started)

            plan = sr.plan(scene, ref, out, options, generator)
            sr.run(plan, generator, progress=on_tiles)
            pipeline.append(time.perf_counter() - started)
            pipeline_cpu.append(cpu_seconds() - cpu_started)
            first_tile.append(seen[0])
            cpu_started = cpu_seconds()
            floor.append(io_floor(scene, ref, folder / f"floor{repeat}.tif", plan.sr_grid))
            floor_cpu.append(cpu_seconds() - cpu_started)
    best, best_floor = min(pipeline), min(floor)
    cores = os.cpu_count() or 1
    return {
        "scene": f"{args.width}x{args.height}",
        "ref_crs": args.ref_crs,
        "tile": f"{plan.layout.tile}+{args.margin}",
        "pipeline_s": best,
        "floor_s": best_floor,
        "lr_mpix_per_s": args.width * args.height / best / 1e6,
        "first_tile_s": min(first_tile),
        "ratio": best / best_floor,
        "pipeline_cpu_s": pipeline_cpu[pipeline.index(best)],
        "floor_cpu_s": floor_cpu[floor.index(best_floor)],
        # Were the pipeline's CPU work shared perfectly over all cores from its first
        # moment, this is the ratio it would reach: the least its work allows.
        "least_ratio": pipeline_cpu[pipeline.index(best)] / cores / best_floor,
        "co_register": args.co_register,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def print_pipeline_only(row: dict) -> None:
    header = (
        "scene (LR)",
        "ref CRS",
        "tile",
        "pipeline s",
        "LR MP/s",
        "first tile s",
        "I/O floor s",
        "pipeline CPU s",
        "floor CPU s",
        "peak RSS MiB",
    )
    registered = "co-registration on" if row["co_register"] else "no co-registration"
    print(
        f"pipeline only (zero-cost model), {os.cpu_count()} CPUs, {registered}, best of the repeats"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print(
        f"| {row['scene']} | {row['ref_crs']} | {row['tile']} | {row['pipeline_s']:.2f} | "
        f"{row['lr_mpix_per_s']:.3f} | {row['first_tile_s']:.2f} | {row['floor_s']:.2f} | "
        f"{row['pipeline_cpu_s']:.2f} | {row['floor_cpu_s']:.2f} | {row['peak_rss_mib']:.0f} |"
    )
    print(
        f"least ratio the pipeline's CPU work allows on {os.cpu_count()} cores "
        f"(its CPU s / cores / floor s): {row['least_ratio']:.2f}"
    )
    print(f"pipeline/floor ratio {row['ratio']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128, help="LR width")
    parser.add_argument("--heights", default="64,256", help="LR heights, comma-separated")
    parser.add_argument("--height", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, help="LR tile side (default: the device's)")
    parser.add_argument("--margin", type=int, default=16, help="the shipped weights' margin")
    parser.add_argument("--batch", type=int, help="tiles per model call (default: the device's)")
    parser.add_argument("--nf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--groups", type=int, default=8, help="deformable groups (compact: 4)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--precision", default="auto", help="auto (as sr: bf16 on CUDA), fp32, bf16, fp16"
    )
    parser.add_argument(
        "--peak-tflops", type=float, help="the device's peak, to print model TFLOP/s as a %%"
    )
    parser.add_argument("--ref-crs", default="EPSG:3857", help="CRS of the reference")
    parser.add_argument(
        "--pipeline-only", action="store_true", help="zero-cost model; compare with the I/O floor"
    )
    parser.add_argument("--repeats", type=int, default=2, help="--pipeline-only runs, best kept")
    parser.add_argument(
        "--no-co-register",
        dest="co_register",
        action="store_false",
        help="skip measuring the reference's offset before the run (sr --no-co-register)",
    )
    parser.add_argument(
        "--return-freed-memory",
        action="store_true",
        help="leave glibc's default, which gives freed memory back to the kernel at once "
        "(rrsgan-geo keeps it for reuse: host_memory.py); to measure what that changes",
    )
    args = parser.parse_args()
    if not args.return_freed_memory:
        keep_freed_memory()  # as the rrsgan-geo command does
    if args.pipeline_only:
        args.height = args.height or int(args.heights.split(",")[-1])
        print_pipeline_only(run_pipeline_only(args))
        return
    if args.height is not None:  # child process: one size
        print(json.dumps(run_one(args)))
        return
    rows = []
    for height in args.heights.split(","):
        child = [sys.executable, __file__, *sys.argv[1:], "--height", height]
        output = subprocess.run(child, stdout=subprocess.PIPE, text=True, check=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    print(
        f"model nf={args.nf} blocks={args.blocks} groups={args.groups}, "
        f"tile {rows[0]['tile']} LR px, "
        f"batch {rows[0]['batch']}, device {rows[0]['device']}, {rows[0]['precision']}, "
        f"torch threads {torch.get_num_threads()}"
    )
    header = (
        "scene (LR)",
        "tiles",
        "tiles/s",
        "LR MP/s",
        "end-to-end s",
        "model-only s",
        "model-only LR MP/s",
        "model TFLOP/s",
        "overhead",
        "first tile s",
        "peak RSS MiB",
        "peak GPU MiB",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        tflops = f"{r['model_tflops']:.3f}"
        if args.peak_tflops:
            tflops += f" ({100 * r['model_tflops'] / args.peak_tflops:.1f}% of peak)"
        print(
            f"| {r['scene']} | {r['tiles']} | {r['tiles_per_s']:.2f} | {r['lr_mpix_per_s']:.4f} | "
            f"{r['end_to_end_s']:.1f} | {r['model_only_s']:.1f} | "
            f"{r['model_lr_mpix_per_s']:.4f} | {tflops} | {r['overhead']:.3f} | "
            f"{r['first_tile_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['peak_gpu_mib']:.0f} |"
        )
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(f"peak RSS ratio, tallest / shortest: {ratio:.3f}")


if __name__ == "__main__":
    main()
