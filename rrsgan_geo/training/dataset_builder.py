"""`build-dataset`: RRSSRD-style training samples cut from georeferenced imagery.

Each sample is an HR window of `hr_size` pixels on an HR raster's own grid; LR,
LR_UX4 and Ref_DUX4 come from the shared degradation helper (the same one `sr` and
the loader use), and Ref is the reference warped by coordinates onto the sample's HR
grid. Samples are written as GeoTIFFs into `train/` and `val/`, each with the five
RRSSRD folders, and a manifest (JSON lines) says where each came from. The split is
by blocks of samples, so neighbouring crops never straddle it.
"""

import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
import torch
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.windows import Window

from rrsgan_geo.errors import ConfigError, CoverageError, OutputError
from rrsgan_geo.files import interrupts_deferred, new_temp_file, publish
from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.geo.locations import display_name
from rrsgan_geo.geo.rasters import (
    band_validity,
    declaring_nodata,
    georeferenced_grid,
    naming_read_failures,
    open_raster,
    select_bands,
    to_model_bands,
    warp_to_grid,
)
from rrsgan_geo.geo.references import ReferenceIndex, expand_rasters
from rrsgan_geo.geo.scaling import ValueScaling, choose_scaling
from rrsgan_geo.model.degradation import down_up_4x, downsample_4x, upsample_4x
from rrsgan_geo.sr.output import check_complete
from rrsgan_geo.training.data import MANIFEST, find_samples, place_key, spatial_split
from rrsgan_geo.upscaling import SCALE

FOLDERS = ("HR", "LR", "LR_UX4", "Ref", "Ref_DUX4")
OUTPUT_ENTRIES = ("train", "val", MANIFEST)
"""What a build writes into its output folder."""


@dataclass(frozen=True)
class BuildOptions:
    hr_size: int = 480
    min_ref_coverage: float = 0.9
    max_nodata: float = 0.01
    val_fraction: float = 0.25
    block: int = 4
    """Samples per side of a split block: whole blocks go to train or val."""
    seed: int = 0
    hr_bands: tuple[int, ...] | None = None
    ref_bands: tuple[int, ...] | None = None
    scale: str | None = None
    ref_scale: str | None = None
    nodata: float | None = None
    """The HR sources' fill value where the files tag none (`locations.with_nodata`)."""
    ref_nodata: float | None = None
    """The references' fill value where the files tag none."""
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.hr_size <= 0 or self.hr_size % SCALE:
            raise ConfigError(f"sample size {self.hr_size} is not a positive multiple of {SCALE}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("min_ref_coverage", "max_nodata"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} is a share: in [0, 1], got {getattr(self, name)}")
        if self.block < 1:
            raise ConfigError(f"block must be at least 1 sample per side, got {self.block}")


@dataclass
class BuildReport:
    written: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    manifest: Path | None = None


def prepare_output(out_dir: Path, overwrite: bool) -> None:
    """An empty output folder. --overwrite replaces an earlier build's output, and
    nothing else: a folder holding anything this command does not write (`-o ~/data` by
    mistake) is refused rather than deleted."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise OutputError(f"{out_dir} is not empty; pass --overwrite to replace it")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUT_ENTRIES)
        if foreign:
            raise OutputError(
                f"{out_dir} holds files a build does not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}): --overwrite replaces an earlier "
                "build's output only; choose an empty or new folder"
            )
        shutil.rmtree(out_dir)
    if not out_dir.parent.is_dir():
        raise OutputError(f"output folder's parent does not exist: {out_dir.parent}")
    out_dir.mkdir(exist_ok=True)


def tile_name(grid: RasterGrid, index: int) -> str:
    """RRSSRD's naming: the zoom-18 web-map tile under the sample's centre, then a
    running index: L18_<x>_<y>_s<index>."""
    x, y = grid.transform @ (grid.width / 2, grid.height / 2)
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    n = 2**18
    tile_x = int((lon + 180) / 360 * n)
    tile_y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return f"L18_{tile_x}_{tile_y}_s{index:03d}"


def _write(path: Path, unit: torch.Tensor, grid: RasterGrid) -> None:
    data = (unit.clamp(0, 1) * 255).round().byte().numpy()
    profile = {"driver": "GTiff", "count": 3, "dtype": "uint8", "crs": grid.crs}
    profile.update(transform=grid.transform, width=grid.width, height=grid.height)
    profile.update(compress="deflate", predictor=2, photometric="RGB")
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)


def _write_sample(images: dict[str, tuple[torch.Tensor, RasterGrid]], paths: list[Path]) -> None:
    """All five images of a sample or none: each is written to a hidden temp file
    beside its destination (`files.new_temp_file`; not an image name, so no reader
    picks it up) and all are renamed into place once all are written. An interrupted
    build leaves complete samples only, each listed in the manifest (written after)."""
    temps: list[Path] = []
    try:
        for (image, grid), path in zip(images.values(), paths, strict=True):
            temp = new_temp_file(path, ".part", temps)
            _write(temp, image[0], grid)
            check_complete(temp, path)  # a full disk is only a message from GDAL
        with interrupts_deferred():  # never some of the five renamed, some not
            for temp, path in zip(temps, paths, strict=True):
                publish(temp, path)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def _split_of_blocks(block_ids: list[tuple[int, int, int]], options: BuildOptions) -> set:
    keys = sorted(set(block_ids))
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(options.seed))
    count = round(options.val_fraction * len(keys))
    if options.val_fraction > 0 and len(keys) > 1:
        count = max(1, count)
    return {keys[i] for i in order[:count].tolist()}


def build_dataset(
    hr_sources: list[str | Path],
    ref_sources: list[str | Path],
    out_dir: Path,
    options: BuildOptions,
    on_sample: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> BuildReport:
    """Cut, check, degrade and write samples; return counts written and skipped by reason.
    `on_start` is told how many samples will be tried, `on_sample` each one's outcome
    ("written" or why it was skipped).

    Every HR source and every reference a sample will use is opened and checked (bands,
    value scaling) before the output folder is touched, so that a bad input neither
    leaves an empty skeleton that blocks the next run nor, with --overwrite, deletes the
    earlier build first. A build that fails before its first sample leaves nothing."""
    out_dir = Path(out_dir)
    hr_paths = expand_rasters(hr_sources, "HR source")
    references = ReferenceIndex.build(ref_sources)
    hr_rasters = _OpenRasters(options.hr_bands, options.scale, options.nodata, "HR source")
    ref_rasters = _OpenRasters(
        options.ref_bands, options.ref_scale, options.ref_nodata, "reference"
    )
    with hr_rasters, ref_rasters:
        jobs = _plan_samples(hr_paths, references, hr_rasters, ref_rasters, options)
        largest = max(
            ((r.dataset.width, r.dataset.height) for r in hr_rasters.open.values()),
            key=lambda size: min(size),
            default=None,
        )
        folder_existed = out_dir.is_dir()
        prepare_output(out_dir, options.overwrite)
        if on_start is not None:
            on_start(len(jobs))
        report = BuildReport()
        try:
            _write_samples(jobs, out_dir, hr_rasters, ref_rasters, options, report, on_sample)
        except BaseException:
            if not report.written:  # nothing usable: leave nothing
                _remove_build(out_dir, folder_existed)
            raise
    if not report.written:
        _remove_build(out_dir, folder_existed)
        reasons = "; ".join(f"{n} {reason}" for reason, n in report.skipped.most_common())
        largest_text = f" (the largest is {largest[0]} x {largest[1]} px)" if largest else ""
        too_small = (
            f"the HR sources are smaller than one {options.hr_size} x {options.hr_size} px "
            f"sample{largest_text}: give a smaller --hr-size (a multiple of 4)"
        )
        raise CoverageError(f"no sample written ({reasons or too_small})")
    report.manifest = out_dir / MANIFEST
    return report


def _remove_build(out_dir: Path, keep_folder: bool) -> None:
    """Remove what a build that wrote no sample made: the folder itself, or only its
    contents where the folder was the user's (an empty one made for the build)."""
    if not keep_folder:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for entry in out_dir.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


@dataclass(frozen=True)
class _SampleJob:
    hr_path: Path
    row: int
    col: int
    block: tuple[int, int, int]
    """(source, block row, block col): whole blocks go to train or val."""
    ref_path: Path | None
    """The best-covering reference, None where none overlaps."""
    grid: RasterGrid
    """The sample's HR grid."""


def _plan_samples(
    hr_paths: list[Path],
    references: ReferenceIndex,
    hr_rasters: "_OpenRasters",
    ref_rasters: "_OpenRasters",
    options: BuildOptions,
) -> list[_SampleJob]:
    """Every sample's place and reference, each raster opened and checked on the way."""
    jobs = []
    for source_index, path in enumerate(hr_paths):
        source_grid = georeferenced_grid(hr_rasters.raster(path).dataset, "HR source")
        size = options.hr_size
        for row in range(source_grid.height // size):
            for col in range(source_grid.width // size):
                block = (source_index, row // options.block, col // options.block)
                grid = source_grid.shifted(col * size, row * size, size, size)
                covering = references.covering(grid)
                ref_path = covering[0][0] if covering else None
                if ref_path is not None:
                    ref_rasters.raster(ref_path)  # opened and checked now, not mid-build
                jobs.append(_SampleJob(path, row, col, block, ref_path, grid))
    return jobs


def _write_samples(
    jobs: list[_SampleJob],
    out_dir: Path,
    hr_rasters: "_OpenRasters",
    ref_rasters: "_OpenRasters",
    options: BuildOptions,
    report: BuildReport,
    on_sample: Callable[[str], None] | None,
) -> None:
    held_out = _split_of_blocks([job.block for job in jobs], options)
    for split in ("train", "val"):
        for folder in FOLDERS:
            (out_dir / split / folder).mkdir(parents=True)
    with open(out_dir / MANIFEST, "w") as manifest:
        for index, job in enumerate(jobs):
            split = "val" if job.block in held_out else "train"
            hr = hr_rasters.raster(job.hr_path)
            ref = None if job.ref_path is None else ref_rasters.raster(job.ref_path)
            record = _make_sample(hr, ref, job, index, split, out_dir, options)
            if "skipped" in record:
                report.skipped[record["skipped"]] += 1
            else:
                report.written[split] += 1
                manifest.write(json.dumps(record) + "\n")
            if on_sample is not None:
                on_sample(record.get("skipped", "written"))


class _OpenRasters:
    """Each raster opened once, its bands and value scaling fixed once for the whole
    file: a percentile stretch per sample would normalise every sample differently."""

    def __init__(
        self,
        bands: tuple[int, ...] | None,
        scale: str | None,
        nodata: float | None,
        what: str,
    ) -> None:
        self.bands, self.scale, self.nodata, self.what = bands, scale, nodata, what
        self.open: dict[Path, _Raster] = {}

    def raster(self, path: Path) -> "_Raster":
        """The raster at `path`, opened and checked on first use."""
        if path not in self.open:
            location = declaring_nodata(path, self.nodata, self.what)
            dataset = open_raster(location, self.what)
            bands = select_bands(dataset, self.bands, self.what)
            with naming_read_failures(self.what, path):  # a stretch reads pixels
                scaling = choose_scaling(dataset, bands, self.scale, self.what)
            self.open[path] = _Raster(path, dataset, bands, scaling)
        return self.open[path]

    def __enter__(self) -> "_OpenRasters":
        return self

    def __exit__(self, *exc_info: object) -> None:
        for raster in self.open.values():
            raster.dataset.close()


@dataclass(frozen=True)
class _Raster:
    path: Path
    dataset: rasterio.io.DatasetReader
    bands: tuple[int, ...]
    scaling: ValueScaling


def _make_sample(hr_raster, ref_raster, job, index, split, out_dir, options) -> dict:
    size, grid = options.hr_size, job.grid
    window = Window(job.col * size, job.row * size, size, size)
    with naming_read_failures("HR source", hr_raster.path):
        valid = band_validity(hr_raster.dataset, hr_raster.bands, window)
        # A training pixel needs every band: one missing band makes it unusable.
        nodata_fraction = 0.0 if valid is None else 1.0 - float(valid.all(axis=0).mean())
        if nodata_fraction > options.max_nodata:
            return {"skipped": f"HR nodata above {options.max_nodata:.0%}"}
        if ref_raster is None:
            return {"skipped": "no reference overlaps"}
        values = hr_raster.dataset.read(hr_raster.bands, window=window)
    hr = torch.from_numpy(to_model_bands(hr_raster.scaling.to_unit(values)))
    with (
        naming_read_failures("reference", ref_raster.path),
        warp_to_grid(ref_raster.dataset, grid, Resampling.bilinear) as vrt,
    ):
        ref_valid = torch.from_numpy(vrt.dataset_mask() > 0)
        coverage = float(ref_valid.float().mean())
        if coverage < options.min_ref_coverage:
            return {"skipped": f"reference coverage below {options.min_ref_coverage:.0%}"}
        ref_values = ref_raster.scaling.to_unit(vrt.read(ref_raster.bands))
    ref = torch.from_numpy(to_model_bands(ref_values))
    lr = downsample_4x(hr[None])
    lr_ux4 = upsample_4x(lr)
    ref = torch.where(ref_valid, ref, lr_ux4[0])[None]  # LR_UX4 stands in, as in `sr`
    name = tile_name(grid, index)
    lr_grid = RasterGrid(
        grid.crs, grid.transform @ Affine.scale(SCALE), size // SCALE, size // SCALE
    )
    images = {
        "HR": (hr[None], grid),
        "LR": (lr, lr_grid),
        "LR_UX4": (lr_ux4, grid),
        "Ref": (ref, grid),
        "Ref_DUX4": (down_up_4x(ref), grid),
    }
    _write_sample(images, [out_dir / split / folder / f"{name}.tif" for folder in images])
    return {
        "id": name,
        "split": split,
        "crs": grid.crs.to_string(),
        "bounds": list(rasterio.transform.array_bounds(size, size, grid.transform)),
        # Names only: a data set is shared, the machine it was cut on is not.
        "hr_source": display_name(str(hr_raster.path)),
        "ref_source": display_name(str(ref_raster.path)),
        "ref_coverage": round(coverage, 6),
        "nodata_fraction": round(nodata_fraction, 6),
    }


def index_images(folder: Path, out_dir: Path, options: BuildOptions) -> BuildReport:
    """--from-images: a manifest for an existing RRSSRD folder (no georeference), split
    by blocks of web-map tiles as training does."""
    samples = find_samples(folder)
    _, val = spatial_split(samples, options.val_fraction, 32, options.seed)
    val_names = {s.name for s in val}
    prepare_output(out_dir, options.overwrite)
    report = BuildReport(manifest=out_dir / MANIFEST)
    with open(report.manifest, "w") as manifest:
        for sample in samples:
            split = "val" if sample.name in val_names else "train"
            record = {
                "id": sample.name,
                "split": split,
                "place": place_key(sample.name, 32),
                # Relative to the manifest, so the index moves with the data beside it.
                "hr": os.path.relpath(sample.hr, out_dir),
                "lr": os.path.relpath(sample.lr, out_dir),
                "ref": os.path.relpath(sample.ref, out_dir),
            }
            manifest.write(json.dumps(record) + "\n")
            report.written[split] += 1
    return report
