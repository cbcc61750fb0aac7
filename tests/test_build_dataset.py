"""`build-dataset` on GeoTIFFs the tests write: HR in UTM, references in other CRSs."""

import json

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.model.degradation import downsample_4x
from rrsgan_geo.training import dataset_builder
from rrsgan_geo.training.data import RefSRDataset, find_samples
from rrsgan_geo.training.trainer import Trainer, load_config
from tests.folders import make_refsr_folder
from tests.rasters import mercator_reference, neon_path, reprojected, write_raster

FIVE = ("HR", "LR", "LR_UX4", "Ref", "Ref_DUX4")


def build(tmp_path, *extra, hr=None, refs=None):
    refs = refs or [mercator_reference(tmp_path / "ref3857.tif", shift_east_m=1.0)]
    args = ["build-dataset", str(hr or neon_path()), "-o", str(tmp_path / "out")]
    for ref in refs:
        args += ["--ref", str(ref)]
    return CliRunner().invoke(main, [*args, "--hr-size", "96", "--block", "2", *extra])


def test_five_folders_manifest_and_shared_degradation(tmp_path):
    # OSBS declares nodata=255, so saturated white counts as nodata: allow some here.
    result = build(tmp_path, "--max-nodata", "0.5", "--min-ref-coverage", "0.8")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "val"}
    assert len(records) == 16  # 400 // 96 = 4 samples a side
    for record in records:
        folder = out / record["split"]
        with rasterio.open(folder / "HR" / f"{record['id']}.tif") as hr:
            assert (hr.width, hr.height, hr.count) == (96, 96, 3)
            assert list(hr.bounds) == pytest.approx(record["bounds"])
            assert hr.crs.to_string() == record["crs"] == "EPSG:32617"
            hr_data = hr.read()
        with rasterio.open(folder / "LR" / f"{record['id']}.tif") as lr:
            assert (lr.width, lr.height) == (24, 24)
            assert lr.transform == hr.transform @ Affine.scale(4)
            expected = downsample_4x(torch.from_numpy(hr_data).float()[None] / 255)[0]
            assert np.array_equal(lr.read(), (expected * 255).round().byte().numpy())
        for name in ("LR_UX4", "Ref", "Ref_DUX4"):
            with rasterio.open(folder / name / f"{record['id']}.tif") as image:
                assert (image.width, image.height) == (96, 96)
                assert image.transform == hr.transform
        assert record["ref_coverage"] > 0.8
    # The split holds out whole 2 x 2 blocks: every val sample's block is all val.
    val_ids = {r["id"] for r in records if r["split"] == "val"}
    assert len(val_ids) % 4 == 0 and 0 < len(val_ids) < 16


def test_the_loader_reads_built_samples_as_aligned_tuples(tmp_path):
    assert build(tmp_path, "--max-nodata", "0.5").exit_code == 0
    dataset = RefSRDataset(find_samples(tmp_path / "out" / "train"))
    batch = dataset.batch(4, 8, seed=0, step=0)
    down = downsample_4x(batch["HR"])
    assert torch.abs(down - batch["LR"])[..., 2:-2, 2:-2].max() < 1.5 / 255


def test_training_and_evaluation_keep_the_split_the_build_made(tmp_path):
    """A config's `data` may name a build-dataset output: its train/ trains and its
    val/ validates (re-splitting crops by name would put neighbours on both sides);
    `evaluate --held-out` scores the same val/; the bare folder is refused with a hint."""
    assert build(tmp_path, "--max-nodata", "0.5").exit_code == 0
    out = tmp_path / "out"
    built = {split: {s.name for s in find_samples(out / split)} for split in ("train", "val")}
    assert built["train"] and built["val"]
    config = {
        "name": "built",
        "output_dir": str(tmp_path / "run"),
        "data": [str(out)],
        "model": {"nf": 8, "n_blocks": 1, "groups": 2},
        "steps": 1,
        "batch_size": 2,
        "lr_crop": 8,
        "val_images": 16,
        "val_every": 1,
    }
    config_path = tmp_path / "built.yaml"
    config_path.write_text(yaml.safe_dump(config))
    trainer = Trainer(load_config(config_path), torch.device("cpu"))
    assert {s.name for s in trainer.train_data.samples} == built["train"]
    assert set(trainer.val_places) == built["val"]
    trainer.run()

    weights = str(tmp_path / "run" / "latest.safetensors")
    refused = CliRunner().invoke(main, ["evaluate", str(out), "--weights", weights])
    assert refused.exit_code == 1 and "is a build-dataset output" in refused.output
    held_out = CliRunner().invoke(
        main,
        ["evaluate", str(out), "--weights", weights, "--held-out", str(config_path)]
        + ["--json", str(tmp_path / "eval.json")],
    )
    assert held_out.exit_code == 0, held_out.output
    scored = json.loads((tmp_path / "eval.json").read_text())
    assert scored["samples"] == len(built["val"])


def test_mixed_crs_references_and_coverage_skips(tmp_path):
    """Left half of the reference in Web Mercator, right half in WGS84: both are used.
    A third of the HR area has no reference: those samples are skipped and counted."""
    with rasterio.open(neon_path()) as src:
        data, transform, crs = src.read(), src.transform, src.crs
    left = mercator_reference(tmp_path / "left3857.tif", crop_right=0.5)
    right_utm = write_raster(
        tmp_path / "right_utm.tif", data[:, :260, 200:], crs, transform @ Affine.translation(200, 0)
    )
    right = tmp_path / "right4326.tif"
    with rasterio.open(right_utm) as src:
        warped, t = reprojected(src, "EPSG:4326")
    write_raster(right, warped, "EPSG:4326", t, nodata=0)
    result = build(tmp_path, "--max-nodata", "0.5", refs=[left, right])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "reference coverage below 90%" in result.output
    records = [json.loads(x) for x in (tmp_path / "out/manifest.jsonl").read_text().splitlines()]
    assert {r["ref_source"] for r in records} == {left.name, right.name}  # no local paths
    assert not any(str(tmp_path) in json.dumps(r) for r in records)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_overlap", "no sample written"),
        ("empty_ref_folder", "holds no raster"),
        ("size", "not a positive multiple of 4"),
        ("block", "Invalid value for '--block'"),
        ("share", "Invalid value for '--max-nodata'"),
        ("not_empty", "not empty"),
    ],
)
def test_bad_input(tmp_path, case, message):
    refs, extra = None, ()
    if case == "no_overlap":
        far = write_raster(
            tmp_path / "far.tif",
            np.ones((3, 50, 50), np.uint8),
            "EPSG:32617",
            Affine(1, 0, 0, 0, -1, 0),
        )
        refs = [far]
    elif case == "empty_ref_folder":
        (tmp_path / "refs").mkdir()
        refs = [tmp_path / "refs"]
    elif case == "size":
        extra = ("--hr-size", "98")
    elif case == "block":
        extra = ("--block", "0")
    elif case == "share":
        extra = ("--max-nodata", "-1")
    else:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.txt").write_text("mine")
    result = build(tmp_path, *extra, refs=refs)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
    if case == "not_empty":
        assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    else:
        assert not (tmp_path / "out").exists()


def test_a_failed_build_into_an_empty_folder_of_ones_own_keeps_the_folder(tmp_path):
    (tmp_path / "out").mkdir()
    failed = build(tmp_path, "--min-ref-coverage", "1.0", "--max-nodata", "0")
    assert failed.exit_code == 1 and "no sample written" in failed.output, failed.output
    assert (tmp_path / "out").is_dir() and not any((tmp_path / "out").iterdir())


def test_from_images_indexes_rrssrd(tmp_path):
    from tests.conftest import SHARED

    folder = SHARED / "data" / "rrssrd_val" / "val_1st"
    if not folder.is_dir():
        pytest.skip(f"shared RRSSRD pairs absent ({folder})")
    result = CliRunner().invoke(
        main, ["build-dataset", str(folder), "--from-images", "-o", str(tmp_path / "idx")]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (tmp_path / "idx/manifest.jsonl").read_text().splitlines()]
    assert len(records) == 40 and {r["split"] for r in records} == {"train", "val"}
    assert not list((tmp_path / "idx").glob("*/*.jpg"))  # indexed, never copied


def test_from_images_records_paths_relative_to_the_manifest(tmp_path):
    """The index names its images relative to itself: no local path, and it still
    finds them when the index and the data move together."""
    folder = make_refsr_folder(tmp_path / "data" / "area", count=3)
    out = tmp_path / "data" / "index"
    result = CliRunner().invoke(
        main, ["build-dataset", str(folder), "--from-images", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        assert record["hr"] == f"../area/HR/{record['id']}.png" and str(tmp_path) not in str(record)
        assert (out / record["lr"]).is_file() and (out / record["ref"]).is_file()


def test_percentile_stretch_is_computed_once_per_source(tmp_path):
    """A uint16 source, dark on the left, bright on the right: a per-sample stretch
    would make every sample span the full range; one per file keeps the contrast."""
    rng = np.random.default_rng(0)
    data = rng.integers(1000, 1100, (3, 192, 192), dtype=np.uint16)
    data[:, :, 96:] += 2000
    transform = Affine(0.1, 0, 404000, 0, -0.1, 3285000)
    hr = write_raster(tmp_path / "hr_u16.tif", data, "EPSG:32617", transform)
    ref = write_raster(tmp_path / "ref.tif", (data // 16).astype(np.uint8), "EPSG:32617", transform)
    result = build(tmp_path, "--scale", "p1,p99", "--val-fraction", "0", hr=hr, refs=[ref])
    assert result.exit_code == 0, result.output
    means = {}
    manifest = (tmp_path / "out/manifest.jsonl").read_text().splitlines()
    for record in map(json.loads, manifest):
        with rasterio.open(tmp_path / "out/train/HR" / f"{record['id']}.tif") as sample:
            means[record["bounds"][0]] = sample.read().mean()
    left, right = (means[x] for x in sorted(means)[:: len(means) - 1])
    assert left < 60 and right > 190


def test_declared_fill_of_hr_and_reference_is_counted_as_missing(tmp_path):
    """--nodata / --ref-nodata: fill the files do not tag (a black right quarter of the
    reference, a 0 top band of the HR) skips the samples it covers."""
    with rasterio.open(neon_path()) as src:
        data, crs, transform = src.read(), src.crs, src.transform
    hr, ref = data.copy(), data.copy()
    hr[:, :96] = 0  # the first row of samples
    ref[:, :, 300:] = 0  # the last column of samples
    hr_path = write_raster(tmp_path / "hr.tif", hr, crs, transform)
    ref_path = write_raster(tmp_path / "ref.tif", ref, crs, transform)
    as_tagged = build(tmp_path, "--max-nodata", "0.5", hr=hr_path, refs=[ref_path])
    assert as_tagged.exit_code == 0, as_tagged.output
    assert "skipped" not in as_tagged.output  # all 16 samples, fill and all
    declared = build(
        tmp_path,
        "--overwrite",
        "--max-nodata",
        "0.5",
        "--nodata",
        "0",
        "--ref-nodata",
        "0",
        hr=hr_path,
        refs=[ref_path],
    )
    assert declared.exit_code == 0, declared.output
    assert "skipped 4: HR nodata above 50%" in declared.output
    assert "skipped 3: reference coverage below 90%" in declared.output


def test_an_interrupted_build_leaves_complete_samples_each_in_the_manifest(tmp_path, monkeypatch):
    """Ctrl-C (or a scheduler's SIGTERM) in the middle of a sample's five images: the
    samples before it are whole and listed, the interrupted one leaves nothing, not
    even its hidden temp files."""
    written = []
    write = dataset_builder._write

    def interrupted_on_the_13th_image(path, unit, grid):
        if len(written) == 12:  # the 3rd image of the 3rd sample
            raise KeyboardInterrupt
        written.append(path)
        write(path, unit, grid)

    monkeypatch.setattr(dataset_builder, "_write", interrupted_on_the_13th_image)
    result = build(tmp_path, "--max-nodata", "0.5", "--min-ref-coverage", "0.8")
    assert result.exit_code == 1 and "interrupted: the 2 samples written are complete" in (
        result.output
    )
    out = tmp_path / "out"
    listed = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(listed) == 2
    images = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.jsonl")
    assert {p.stem for p in images} == {r["id"] for r in listed}
    assert len(images) == 2 * len(FIVE)  # no temp file, no part of the 3rd sample
    for record in listed:
        assert len(find_samples(out / record["split"])) >= 1

    monkeypatch.undo()
    again = build(tmp_path, "--max-nodata", "0.5", "--overwrite")  # starts over
    assert again.exit_code == 0, again.output


def test_overwrite_replaces_a_build_and_never_a_folder_of_other_files(tmp_path):
    """-o pointed at a folder of one's own by mistake: --overwrite must not delete it."""
    mine = tmp_path / "out"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    refused = build(tmp_path, "--max-nodata", "0.5", "--overwrite")
    assert refused.exit_code == 1 and "holds files a build does not write (thesis.docx)" in (
        refused.output
    )
    assert (mine / "thesis.docx").read_text() == "years of work"


def _with_fourth_band(source, path):
    """`source`'s RGB and a fourth band, nothing saying which is which (as in many
    RGB+NIR exports): a build must be told which bands to use."""
    with rasterio.open(source) as src:
        data, profile = src.read(), src.profile
    profile.update(count=4, photometric="MINISBLACK")
    with rasterio.open(path, "w", **profile) as out:
        out.write(np.concatenate([data, data[:1] // 2]))
    return path


def test_many_band_sources_take_bands_and_are_checked_before_any_output(tmp_path):
    hr = _with_fourth_band(neon_path(), tmp_path / "rgbn.tif")
    ref = _with_fourth_band(
        mercator_reference(tmp_path / "ref3857.tif", shift_east_m=1.0), tmp_path / "ref4.tif"
    )
    refused = build(tmp_path, "--max-nodata", "0.5", hr=hr, refs=[ref])
    assert refused.exit_code == 1 and "has 4 bands" in refused.output
    assert "with --bands, e.g. --bands 3,2,1" in refused.output, refused.output
    assert not (tmp_path / "out").exists()  # nothing half-made to block the next run
    ref_refused = build(tmp_path, "--max-nodata", "0.5", "--bands", "1,2,3", hr=hr, refs=[ref])
    assert ref_refused.exit_code == 1 and "--ref-bands" in ref_refused.output
    assert not (tmp_path / "out").exists()

    chosen = ("--bands", "1,2,3", "--ref-bands", "1,2,3", "--max-nodata", "0.5")
    result = build(tmp_path, *chosen, hr=hr, refs=[ref])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out/manifest.jsonl").read_text().splitlines()[0])
    with rasterio.open(tmp_path / "out" / record["split"] / "HR" / f"{record['id']}.tif") as s:
        sample, bounds = s.read(), s.bounds
    with rasterio.open(neon_path()) as src:
        window = rasterio.windows.from_bounds(*bounds, transform=src.transform)
        expected = src.read(window=window.round_offsets().round_lengths())
    np.testing.assert_array_equal(sample, expected)


def test_a_failed_overwrite_keeps_the_earlier_build(tmp_path):
    """--overwrite deletes the earlier build only once the new one's inputs are checked."""
    first = build(tmp_path, "--max-nodata", "0.5")
    assert first.exit_code == 0, first.output
    manifest = (tmp_path / "out/manifest.jsonl").read_text()
    hr = _with_fourth_band(neon_path(), tmp_path / "rgbn.tif")
    failed = build(tmp_path, "--max-nodata", "0.5", "--overwrite", hr=hr)
    assert failed.exit_code == 1 and "has 4 bands" in failed.output
    assert (tmp_path / "out/manifest.jsonl").read_text() == manifest


def test_an_operating_system_error_is_one_line(tmp_path, monkeypatch):
    """A disk that fills while the manifest is written: Python's OSError, one line."""
    import errno

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out/manifest.jsonl"))

    monkeypatch.setattr(dataset_builder, "_write_samples", disk_full)
    result = build(tmp_path, "--max-nodata", "0.5")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error: No space left on device: " in result.output and "manifest.jsonl" in result.output


def test_a_truncated_reference_is_one_line_naming_it(tmp_path):
    """A reference cut short fails where a sample first reads its missing part: one
    line naming it with GDAL's words (it was rasterio's 'Read failed. See previous
    exception for details.' alone); the samples written before it stay whole."""
    ref = mercator_reference(tmp_path / "ref3857.tif")
    with open(ref, "r+b") as file:
        file.truncate(ref.stat().st_size * 6 // 10)
    result = build(tmp_path, refs=[ref])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "reading reference ref3857.tif failed: " in result.output, result.output
    assert "previous exception" not in result.output


def test_sources_smaller_than_one_sample_name_the_size_and_the_way_out(tmp_path):
    failed = build(tmp_path, "--hr-size", "4000")
    assert failed.exit_code == 1, failed.output
    assert "smaller than one 4000 x 4000 px sample (the largest is " in failed.output
    assert "px): give a smaller --hr-size" in failed.output
