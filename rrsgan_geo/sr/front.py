"""The front door of `sr`: a generator from a file, a plan, its run, its model time.

Each choice is made in one place: the weights and margin here; the device, precision,
batch, tile and memory in `planning.plan_sr`, which the run and the estimate read. The
command line, `batch` and the benchmarks only call these.
"""

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rrsgan_geo.devices import resolve_device
from rrsgan_geo.model import RRSNet, weight_files
from rrsgan_geo.model.self_ensemble import views_note
from rrsgan_geo.sr.inference import (
    count_macs_per_lr_pixel,
    measure_gmac_per_second,
)
from rrsgan_geo.sr.pipeline import Generator, SRReport, super_resolve
from rrsgan_geo.sr.planning import SROptions, SRPlan, plan_sr

__all__ = ["Generator", "ModelTime", "estimate", "load_generator", "plan", "record", "run"]


def load_generator(path: str | Path | None = None, device: str = "auto") -> Generator:
    """The generator in the weight file at `path` (default: the shipped weights for
    `device`), strictly loaded, with the name, sha256 and margin the output's tags
    record. The one place a generator is built from a file."""
    if path is None:
        path = weight_files.shipped_weights_path(resolve_device(device).type)
    model, weight_file = weight_files.load_generator(Path(path))
    return Generator(model, weight_file.path.name, weight_file.sha256, weight_file.metadata.margin)


def plan(
    scene: str | Path,
    references: str | Path | Sequence[str | Path] | None,
    output: str | Path,
    options: SROptions | None = None,
    generator: Generator | None = None,
    *,
    check_output: bool = True,
) -> SRPlan:
    """Check every input and the output, and make every choice a run needs, before
    anything is written (`planning.plan_sr`). The margin is `options.margin`, else the
    generator's own; the generator's size enters the memory plan. Without a generator
    (a dry run with no weights installed), the default margin and no model memory."""
    options = options or SROptions()
    if options.margin is not None:
        margin = options.margin
    else:
        margin = generator.margin if generator is not None else weight_files.DEFAULT_MARGIN_LR
    config = getattr(generator.model, "config", None) if generator is not None else None
    features = config.nf if config is not None else None  # a stand-in model has no size
    return plan_sr(
        scene,
        references,
        output,
        options,
        margin,
        check_output=check_output,
        model_features=features,
    )


def run(
    plan: SRPlan, generator: Generator, progress: Callable[[int], object] | None = None
) -> SRReport:
    """Run `plan` with `generator`: references co-registered, the scene's blur
    measured, tiles streamed to the output (`pipeline.super_resolve`), then the
    quicklook and the STAC Item if the options ask for them. `progress` is called
    with the number of tiles each step finished."""
    report = super_resolve(plan, generator, plan.options, on_tiles=progress)
    if plan.options.quicklook is not None:
        from rrsgan_geo.sr.quicklook import write_quicklook

        write_quicklook(plan, report, generator, Path(plan.options.quicklook))
    if plan.options.stac:  # once the output is in place; pystac only when asked for
        from rrsgan_geo.sr.item_facts import item_path
        from rrsgan_geo.sr.stac_item import stac_item, write_item

        write_item(stac_item(plan, report), item_path(plan.output_path))
    return report


def record(plan: SRPlan, report: SRReport | None) -> dict:
    """A scene's run as `sr --json` and each scene of `batch --json` write it: one shape,
    so scripts read both alike. Without a report (a scene not run), the plan's part
    only, the run's fields None."""
    ran = report is not None
    return {
        "output": str(plan.output_path),
        "lr_size": [plan.lr_grid.width, plan.lr_grid.height],
        "sr_size": [plan.sr_grid.width, plan.sr_grid.height],
        "tiles": plan.layout.count,
        "tiles_run": report.tiles_run if ran else None,
        "references": list(plan.ref_paths),
        "footprint_coverage": plan.footprint_coverage,
        "reference_coverage": report.pixel_coverage if ran else None,
        "reference_offsets": [asdict(o) for o in report.reference_offsets] if ran else [],
        "scene_blur": report.scene_blur.record() if ran and report.scene_blur else None,
        "device": report.device if ran else None,
        "precision": report.precision if ran else None,
        "batch_size": report.batch_size if ran else None,
        "oom_halvings": report.oom_halvings if ran else None,
        "seconds": report.seconds if ran else None,
        "model_seconds": report.model_seconds if ran else None,
        "mean_relevance": report.mean_relevance if ran else None,
        "tile_server_errors": report.tile_server_errors if ran else None,
        "low_contrast_tiles": report.low_contrast_tiles if ran else None,
        "weights": report.weights if ran else None,
        "notes": list(plan.notes),
    }


@dataclass(frozen=True)
class ModelTime:
    """The model work some plans need, and the time it takes on this device."""

    gmac: float
    seconds: float
    device: str
    precisions: tuple[str, ...]
    views: int

    def describe(self) -> str:
        return (
            f"{self.gmac:,.0f} GMAC: ~{self.seconds:,.0f} s of model time on {self.device} "
            f"(timed on a 48 x 48 tile here, {' and '.join(self.precisions)}"
            f"{views_note(self.views)})"
        )


def estimate(plans: Sequence[SRPlan], generator: Generator | None = None) -> ModelTime:
    """The model time `plans` need, from a short timed forward on each plan's device in
    its precision (the plan's decisions), once per view with self-ensemble. Without a
    generator, for the authors' full-size architecture (random weights: speed does not
    depend on them)."""
    model = generator.model if generator is not None else RRSNet()
    speeds: dict[tuple[str, str], float] = {}  # GMAC/s per device and precision
    gmac = seconds = 0.0
    views = max((p.options.self_ensemble for p in plans), default=1)
    gmac_per_pixel = count_macs_per_lr_pixel(model) / 1e9
    devices = []
    for each in plans:
        key = (each.device, each.precision)
        if key not in speeds:
            speeds[key] = measure_gmac_per_second(model, torch.device(each.device), each.precision)
        plan_gmac = (
            gmac_per_pixel
            * each.options.self_ensemble
            * each.layout.count
            * each.layout.lr_tile_size**2
        )
        gmac += plan_gmac
        seconds += plan_gmac / speeds[key]
        devices.append(each.device)
    precisions = tuple(sorted({precision for _, precision in speeds}))
    device_names = ", ".join(sorted(set(devices))) or str(resolve_device("auto"))
    return ModelTime(gmac, seconds, device_names, precisions, views)
