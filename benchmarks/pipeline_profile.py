"""Where `sr`'s pipeline spends its time: seconds per part, beside the I/O floor.

`sr_bench.py --pipeline-only` says how far the pipeline is from the I/O floor; this says
why. It runs the same pipeline (the same scene, reference and zero-cost stand-in model)
with a timer around each part and prints, per run, the seconds each part took, summed
over its calls. Reader-thread parts run beside the main thread's, so the rows do not add
up to the total; their sum, less the waiting, is the CPU work the cores must share.

    python benchmarks/pipeline_profile.py                  # 512^2 LR, EPSG:3857 reference
    python benchmarks/pipeline_profile.py --no-co-register --repeats 3
"""

import argparse
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from sr_bench import StandIn, io_floor, make_inputs

from rrsgan_geo import output, pipeline, sources
from rrsgan_geo.pipeline import Generator, SROptions, plan_sr, super_resolve

# (owner, attribute, label, thread): the parts timed. Reader parts run on the reader
# pool; the others on the main thread (the writer compresses on its own thread, inside
# "write rows" waits and "close output").
PARTS = (
    (pipeline, "co_registered_plan", "co-registration (before the run)", "main"),
    (sources, "_read_reflected", "read scene", "readers"),
    (sources.TileReader, "_read_references", "warp reference", "readers"),
    (pipeline._Prefetcher, "_next", "wait for a strip", "main"),
    (pipeline, "model_inputs", "degradations (LR_UX4, Ref_DUX4)", "main"),
    (pipeline, "_blend_strip", "blend tiles", "main"),
    (pipeline.RowBandBlender, "finish_row", "finish rows", "main"),
    (pipeline, "_to_output", "convert rows to the output dtype", "main"),
    (output.StreamingGeoTIFF, "write_rows", "write rows", "main"),
    (output.StreamingGeoTIFF, "__exit__", "close output (last blocks, tags)", "main"),
)


class PartTimer:
    """Wraps each part in a timer that adds its wall time to a per-part total."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[label] += time.perf_counter() - started

        setattr(owner, name, timed)


def profile(args: argparse.Namespace, timer: PartTimer) -> list[tuple[float, float]]:
    """(pipeline s, floor s) per repeat; `timer.seconds` holds the last repeat's parts."""
    generator = Generator(StandIn(), "stand-in", "0" * 64, args.margin)
    options = SROptions(tile=args.tile, device="cpu", co_register=args.co_register)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        scene, ref = make_inputs(folder, args.width, args.height, args.ref_crs)
        for repeat in range(args.repeats):
            timer.seconds.clear()
            started = time.perf_counter()
            plan = plan_sr(scene, ref, folder / f"out{repeat}.tif", options, args.margin)
            super_resolve(plan, generator, options)
            took = time.perf_counter() - started
            floor = io_floor(scene, ref, folder / f"floor{repeat}.tif", plan.sr_grid)
            runs.append((took, floor))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512, help="LR width")
    parser.add_argument("--height", type=int, default=512, help="LR height")
    parser.add_argument("--tile", type=int, help="LR tile side (default: the CPU's)")
    parser.add_argument("--margin", type=int, default=16, help="the shipped weights' margin")
    parser.add_argument("--ref-crs", default="EPSG:3857", help="CRS of the reference")
    parser.add_argument("--repeats", type=int, default=2, help="runs; parts of the last")
    parser.add_argument("--no-co-register", dest="co_register", action="store_false")
    args = parser.parse_args()
    timer = PartTimer()
    for owner, name, label, _ in PARTS:
        timer.wrap(owner, name, label)
    runs = profile(args, timer)
    for took, floor in runs:
        print(f"pipeline {took:.3f} s, I/O floor {floor:.3f} s, ratio {took / floor:.2f}")
    print("| part | thread | s (last run) |")
    print("|---|---|---|")
    for _, _, label, thread in PARTS:
        print(f"| {label} | {thread} | {timer.seconds.get(label, 0.0):.3f} |")


if __name__ == "__main__":
    main()
