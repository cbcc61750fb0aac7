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
import threading
import time
from collections import defaultdict

from sr_bench import run_pipeline_only

from rrsgan_geo.host_memory import keep_freed_memory
from rrsgan_geo.sr import output, pipeline, sources

# (owner, attribute, label, thread): the parts timed. Reader parts run on the reader
# pool; the others on the main thread (the writer compresses on its own thread, inside
# "write rows" waits and "close output"). "VRT reads" sums every WarpedVRT read on
# every thread: the reader's helper threads warp the other column parts, and
# co-registration reads its windows on the main thread.
PARTS = (
    (pipeline, "co_registered_plan", "co-registration (before the run)", "main"),
    (sources, "_read_reflected", "read scene", "readers"),
    (sources.TileReader, "_read_references", "warp reference", "readers"),
    (sources.WarpedView, "read", "VRT reads, all threads (co-registration too)", "all"),
    (pipeline._Prefetcher, "_next", "wait for a strip", "main"),
    (pipeline, "model_inputs", "degradations (LR_UX4, Ref_DUX4)", "main"),
    (pipeline, "_blend_strip", "blend tiles", "main"),
    (pipeline.RowBandBlender, "finish_row", "finish rows", "main"),
    (pipeline, "_to_output", "convert rows to the output dtype", "main"),
    (output.StreamingGeoTIFF, "write_rows", "write rows", "main"),
    (output.StreamingGeoTIFF, "__exit__", "close output (last blocks, tags)", "main"),
)


class PartTimer:
    """Wraps each part in a timer that adds its wall time and its thread's CPU time to
    per-part totals. Wall time alone misleads on a busy machine: a reader thread's part
    stretches while the main thread holds the core."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def wrap(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args: object, **kwargs: object) -> object:
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[label] += time.perf_counter() - started
                    self.cpu_seconds[label] += time.thread_time() - cpu_started

        setattr(owner, name, timed)


def profile(args: argparse.Namespace, timer: PartTimer) -> list[dict]:
    """`sr_bench.run_pipeline_only`'s results, one run per repeat; `timer.seconds` holds
    the last run's parts."""
    runs = []
    for _ in range(args.repeats):
        timer.seconds.clear()
        timer.cpu_seconds.clear()
        runs.append(run_pipeline_only(argparse.Namespace(**{**vars(args), "repeats": 1})))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512, help="LR width")
    parser.add_argument("--height", type=int, default=512, help="LR height")
    parser.add_argument("--tile", type=int, help="LR tile side (default: the CPU's)")
    parser.add_argument("--batch", type=int, help="tiles per model call (default: the CPU's)")
    parser.add_argument("--margin", type=int, default=16, help="the shipped weights' margin")
    parser.add_argument("--ref-crs", default="EPSG:3857", help="CRS of the reference")
    parser.add_argument("--repeats", type=int, default=2, help="runs; parts of the last")
    parser.add_argument("--no-co-register", dest="co_register", action="store_false")
    args = parser.parse_args()
    keep_freed_memory()  # as the rrsgan-geo command does
    args.device = "cpu"
    timer = PartTimer()
    for owner, name, label, _ in PARTS:
        timer.wrap(owner, name, label)
    runs = profile(args, timer)
    for run in runs:
        pipeline_s, floor_s = run["pipeline_s"], run["floor_s"]
        print(f"pipeline {pipeline_s:.3f} s, I/O floor {floor_s:.3f} s, ratio {run['ratio']:.2f}")
    print("| part | thread | wall s (last run) | CPU s (its thread) |")
    print("|---|---|---|---|")
    for _, _, label, thread in PARTS:
        wall, cpu = timer.seconds.get(label, 0.0), timer.cpu_seconds.get(label, 0.0)
        print(f"| {label} | {thread} | {wall:.3f} | {cpu:.3f} |")


if __name__ == "__main__":
    main()
