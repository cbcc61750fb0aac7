"""`sr` as a library: super-resolve a scene in three calls, as `rrsgan-geo sr` does.

    from rrsgan_geo import sr

    generator = sr.load_generator()  # the shipped weights for the device
    plan = sr.plan("scene.tif", "google.tif", "scene_x4.tif", generator=generator)
    report = sr.run(plan, generator)

`plan` checks every input and makes every choice (tile, margin, references, scaling,
memory) before anything is written; `run` reads only the plan. `estimate` gives the
model time a plan needs, as `--dry-run` prints it. The command line, `batch` (locally
and on Dask) and the benchmarks go through these four (`front`). Inside: planning,
the streamed run (`pipeline`, `sources`, `inference`, `blending`, `output`), tiles,
co-registration, the scene's blur, multispectral bands, diagnostic maps, batches.
"""

from rrsgan_geo.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Generator": "front",
        "ModelTime": "front",
        "estimate": "front",
        "load_generator": "front",
        "plan": "front",
        "run": "front",
        "record": "front",
        "SROptions": "planning",
        "SRPlan": "planning",
        "SRReport": "pipeline",
    },
)
__all__ = __dir__()
