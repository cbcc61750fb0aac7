"""Where the generator's time goes on a GPU: model-only LR MP/s per setting, then the
kernels that take it.

The model runs as `sr` runs it (channels_last, autocast, inference mode) on batches
of tiles of the device's default size, with random weights and inputs (speed depends
on neither). Settings, each printed as soon as it is measured, so that a run cut short
by its time limit still says what it got:

  eager           as `sr` runs it today
  cudnn.benchmark the same with cuDNN choosing its algorithms by timing them (the
                  shapes never change within a run, so the choice is made once)
  batch x2        twice the tiles per call
  compiled        torch.compile (default mode) on top of cudnn.benchmark, with the
                  seconds the compilation took (--compile; minutes on a CPU)

and a torch.profiler table of the cudnn.benchmark setting's kernels over four calls
(--profile-rows).
Imports the model only (no rasterio), so it runs where the geospatial stack is not
installed.

    python benchmarks/model_profile.py --device cuda --compile
    python benchmarks/model_profile.py --device cpu --nf 16 --blocks 2 --groups 4 --tile 64
"""

import argparse
import time

import torch

from rrsgan_geo.devices import PRECISIONS
from rrsgan_geo.model import SCALE, GeneratorConfig, RRSNet


def make_batch(batch: int, size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(LR, LR_UX4, Ref, Ref_DUX4) of `batch` tiles of `size` LR pixels, channels_last."""
    shapes = [(batch, 3, size, size)] + [(batch, 3, SCALE * size, SCALE * size)] * 3
    return tuple(
        torch.rand(shape, device=device).contiguous(memory_format=torch.channels_last)
        for shape in shapes
    )


def seconds_per_call(model, inputs, dtype, device, iterations: int) -> float:
    """Mean seconds of one model call, after two calls of warm-up."""

    def call() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype is not None),
        ):
            model(*inputs)

    for _ in range(2):
        call()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(iterations):
        call()
    synchronize(device)
    return (time.perf_counter() - started) / iterations


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def report(name: str, seconds: float, batch: int, tile: int, note: str = "") -> None:
    """One row: tiles' cores (margins left out, as sr_bench counts) per second."""
    mpix = batch * tile * tile / seconds / 1e6
    print(f"| {name} | {batch} | {seconds * 1000:.1f} | {mpix:.3f} | {note} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", help="fp32, bf16 or fp16")
    parser.add_argument("--tile", type=int, default=256, help="LR tile core (sr's CUDA default)")
    parser.add_argument("--margin", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4, help="tiles per call (sr's CUDA default)")
    parser.add_argument("--nf", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--profile-rows", type=int, default=15, help="0: no profile")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = PRECISIONS[args.precision]
    torch.manual_seed(0)
    config = GeneratorConfig(nf=args.nf, n_blocks=args.blocks, groups=args.groups)
    model = RRSNet(config).to(device, memory_format=torch.channels_last).eval()
    size = args.tile + 2 * args.margin
    inputs = make_batch(args.batch, size, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"model nf={args.nf} blocks={args.blocks} groups={args.groups}, tile "
        f"{args.tile}+{args.margin} LR px, {args.precision}, {name}, torch {torch.__version__}"
    )
    print("| setting | tiles per call | ms per call | LR MP/s (cores) | note |")
    print("|---|---|---|---|---|")
    seconds = seconds_per_call(model, inputs, dtype, device, args.iterations)
    report("eager", seconds, args.batch, args.tile)
    torch.backends.cudnn.benchmark = True
    seconds = seconds_per_call(model, inputs, dtype, device, args.iterations)
    report("cudnn.benchmark", seconds, args.batch, args.tile)
    double = make_batch(2 * args.batch, size, device)
    seconds = seconds_per_call(model, double, dtype, device, args.iterations)
    report("cudnn.benchmark, batch x2", seconds, 2 * args.batch, args.tile)
    del double
    if args.profile_rows:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profile:
            seconds_per_call(model, inputs, dtype, device, 2)
        key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(profile.key_averages().table(sort_by=key, row_limit=args.profile_rows), flush=True)
    if args.compile:
        started = time.perf_counter()
        compiled = torch.compile(model)
        seconds_per_call(compiled, inputs, dtype, device, 1)  # compiles on its first call
        compile_seconds = time.perf_counter() - started
        seconds = seconds_per_call(compiled, inputs, dtype, device, args.iterations)
        report("compiled", seconds, args.batch, args.tile, f"{compile_seconds:.0f} s to compile")


if __name__ == "__main__":
    main()
