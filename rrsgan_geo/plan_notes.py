"""What a user may want to change before trusting an `sr` run, said before it starts.

`planning.plan_sr` puts these in the plan (`SRPlan.notes`), measured once, before any
output is written: `sr` and `batch` print them and their --json reports carry them.
"""

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rrsgan_geo.scaling import UNIT_LIMIT

if TYPE_CHECKING:
    from rrsgan_geo.planning import SRPlan

UNTAGGED_ZEROS_NOTE = 0.01
"""Share of all-zero pixels in a scene that tags no nodata from which the run suggests
--nodata 0 (real imagery is rarely 0 in every band; fill often is)."""
COARSE_REFERENCE_NOTE = 2.0
"""Reference pixel / output pixel from which the run says the reference is too coarse
to add the output's detail (the model learnt from references at the HR's pixel size)."""


def plan_notes(plan: "SRPlan") -> tuple[str, ...]:
    """Untagged fill, references too coarse to help, an output the disk cannot hold."""
    untagged = [("the scene", plan.untagged_zeros, "--nodata")]
    untagged += [
        (f"reference {name}", share, "--ref-nodata") for name, share in plan.untagged_ref_zeros
    ]
    notes = [
        f"about {share:.0%} of {what}'s pixels are 0 in every band and it tags "
        f"no nodata value: if they are fill, pass {option} 0"
        for what, share, option in untagged
        if share >= UNTAGGED_ZEROS_NOTE
    ]
    non_finite, clipped = plan.unusable_values
    if non_finite:
        notes.append(
            f"{non_finite} of the scene's values are NaN or infinite: they are treated as "
            "nodata (filled from their neighbours for the model, nodata in the output)"
        )
    if clipped:
        notes.append(
            f"{clipped} of the scene's values lie more than {UNIT_LIMIT:g} times the scaling's "
            "range outside it and were clipped there: check --scale"
        )
    sr_pixel = plan.sr_grid.pixel_size_in(plan.sr_grid.crs, plan.sr_grid.centre())
    notes += [
        f"reference {name}'s pixels are {size / sr_pixel:.1f}x the output's ({size:.3g} vs "
        f"{sr_pixel:.3g} CRS units): it has no detail of the output's scale to give; the "
        "model expects a reference at the output's pixel size or finer"
        for name, size in plan.ref_pixel_sizes
        if size >= COARSE_REFERENCE_NOTE * sr_pixel
    ]
    return (*notes, *disk_space_notes([plan]))


def disk_space_notes(plans: list["SRPlan"]) -> list[str]:
    """A run that would fill the disk fails at its end, hours in: say so before it
    starts. The outputs' size before compression is what the runs may need (deflate
    usually saves a third to two thirds of it on imagery, less on noisy data); outputs
    on one disk are added up (batch)."""
    needed: dict[Path, int] = {}
    for plan in plans:
        grid = plan.sr_grid
        size = grid.width * grid.height * len(plan.scene_bands) * np.dtype(plan.dtype).itemsize
        folder = plan.output_path.absolute().parent
        while not folder.exists():  # batch plans outputs in a folder it has not made yet
            folder = folder.parent
        needed[folder] = needed.get(folder, 0) + size
    notes = []
    for folder, size in needed.items():
        free = shutil.disk_usage(folder).free
        if free < size:
            what = "the output is" if len(plans) == 1 else f"the {len(plans)} outputs are"
            notes.append(
                f"{what} {size / 1e9:.1f} GB before compression and {folder} has "
                f"{free / 1e9:.1f} GB free: compression may not save enough; free some "
                "space or write elsewhere"
            )
    return notes
