"""`sr` as a library: super-resolve a scene in three calls, as `rrsgan-geo sr` does.

    from rrsgan_geo import sr

    generator = sr.load_generator()  # the shipped weights for the device
    plan = sr.plan("scene.tif", "google.tif", "scene_x4.tif", generator=generator)
    report = sr.run(plan, generator)

`plan` checks every input and makes every choice (tile, margin, references, scaling,
memory) before anything is written; `run` reads only the plan. `estimate` gives the
model time a plan needs, as `--dry-run` prints it. The command line, `batch` (locally
and on Dask) and the benchmarks go through these four.
"""

from rrsgan_geo.planning import SROptions, SRPlan
from rrsgan_geo.sr.front import Generator, ModelTime, estimate, load_generator, plan, run

__all__ = [
    "Generator",
    "ModelTime",
    "SROptions",
    "SRPlan",
    "estimate",
    "load_generator",
    "plan",
    "run",
]
