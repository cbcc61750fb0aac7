"""`batch` over folders of scenes: references by footprint, resume, errors, Dask."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pystac
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.weight_files import WeightsMetadata, save_weights
from tests.rasters import lr_scene, mercator_reference, neon_path, write_raster
from tests.test_sr_pipeline import TINY


@pytest.fixture
def workspace(tmp_path):
    """Three real scenes (strips of the NEON LR scene), a corrupt one, references in
    Web Mercator and UTM, and tiny random weights."""
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    with rasterio.open(lr_scene(tmp_path / "whole.tif")) as whole:
        data, transform, crs = whole.read(), whole.transform, whole.crs
    for name, first in (("a", 0), ("b", 32), ("c", 64)):
        write_raster(
            scenes / f"scene_{name}.tif",
            data[:, :, first : first + 36],
            crs,
            transform @ Affine.translation(first, 0),
            nodata=255,
        )
    refs = tmp_path / "refs"
    refs.mkdir()
    mercator_reference(refs / "left_3857.tif", crop_right=0.45)
    with rasterio.open(neon_path()) as src:
        write_raster(
            refs / "right_utm.tif",
            src.read()[:, :, 200:],
            src.crs,
            src.transform @ Affine.translation(200, 0),
            nodata=255,
        )
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(RRSNet(TINY).state_dict(), weights, WeightsMetadata(config=TINY, margin=4))
    return tmp_path, weights


def batch_args(tmp_path, weights, out, *extra, scenes=None):
    return [
        "batch",
        *(scenes or [str(tmp_path / "scenes")]),
        "--ref",
        str(tmp_path / "refs"),
        "-o",
        str(out),
        "--weights",
        str(weights),
        "--tile",
        "16",
        "--threads",
        "1",
        *extra,
    ]


def test_local_batch_picks_references_and_summarises(workspace):
    tmp_path, weights = workspace
    result = CliRunner().invoke(main, batch_args(tmp_path, weights, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "3 done, 0 skipped, 0 failed" in result.output
    for name in ("a", "b", "c"):
        with rasterio.open(tmp_path / "out" / f"scene_{name}_x4.tif") as out:
            assert (out.width, out.height) == (144, 400)
            reference = out.tags()["RRSGAN_REFERENCE"]
            # Each scene takes the references meeting it, best-covering first
            # (b: 92 HR columns of the left one, 72 of the right one).
            expected = {
                "a": ["left_3857.tif"],
                "b": ["left_3857.tif", "right_utm.tif"],
                "c": ["right_utm.tif"],
            }[name]
            assert [Path(p).name for p in reference.split(";")] == expected


def test_batch_notes_untagged_fill_per_scene_and_reference_coverage(workspace):
    """What `sr` notes before a run (fill the file does not tag) `batch` notes per
    scene too, and its table says how much of each output had a reference."""
    tmp_path, weights = workspace
    with rasterio.open(tmp_path / "scenes" / "scene_a.tif") as scene:
        values, crs, transform = scene.read(), scene.crs, scene.transform
    values[:, :20] = 0  # 5 % of the rows: fill, and no nodata tag
    filled = tmp_path / "filled"
    filled.mkdir()
    write_raster(filled / "scene_fill.tif", values, crs, transform)
    summary = tmp_path / "batch.json"
    args = batch_args(
        tmp_path, weights, tmp_path / "out", "--json", str(summary), scenes=[str(filled)]
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "note: scene_fill.tif: about " in result.output
    assert "if they are fill, pass --nodata 0" in result.output
    assert "reference on 100% of pixels" in result.output
    (filled_record,) = json.loads(summary.read_text())  # --json
    assert Path(filled_record["scene"]).name == "scene_fill.tif"
    assert filled_record["status"] == "done" and filled_record["reference_coverage"] == 1.0
    assert filled_record["sr_size"] == [144, 400] and filled_record["seconds"] > 0
    assert any("--nodata 0" in note for note in filled_record["notes"])
    (offset,) = filled_record["reference_offsets"]  # what co-registration did
    assert offset["reference"] == "left_3857.tif" and offset["windows"] >= 0


def test_a_scene_no_given_reference_meets_says_so(workspace):
    """A scene away from every reference of the folder fails with that reason (it
    used to read "no reference given"), in the run and in the dry run; with
    --allow-missing-ref it runs on LR_UX4."""
    tmp_path, weights = workspace
    far = tmp_path / "far"
    far.mkdir()
    with rasterio.open(tmp_path / "scenes" / "scene_a.tif") as scene:
        data, transform, crs = scene.read(), scene.transform, scene.crs
    write_raster(far / "far.tif", data, crs, Affine.translation(10_000, 0) @ transform)
    reason = "none of the 2 references given meets this scene; pass --allow-missing-ref"
    for extra in ((), ("--dry-run",)):
        args = batch_args(tmp_path, weights, tmp_path / "out", *extra, scenes=[str(far)])
        result = CliRunner().invoke(main, [*args, "--on-error", "skip"])
        assert "0 skipped, 1 failed" in result.output and reason in result.output
    args = batch_args(tmp_path, weights, tmp_path / "out", scenes=[str(far)])
    result = CliRunner().invoke(main, [*args, "--allow-missing-ref"])
    assert result.exit_code == 0 and "1 done" in result.output, result.output


def test_dry_run_plans_every_scene_and_writes_nothing(workspace):
    """--dry-run: each scene planned as its run would be (references found, size,
    tiles), notes printed, nothing written, not even the output folder; a scene that
    would fail fails the dry run."""
    tmp_path, weights = workspace
    out = tmp_path / "planned"
    result = CliRunner().invoke(main, batch_args(tmp_path, weights, out, "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "3 planned, 0 skipped, 0 failed" in result.output
    assert "scene_b.tif  planned  144 x 400 px, 21 tiles, 2 reference(s) covering 100%" in (
        result.output
    )
    assert "s of model time on cpu (timed on a 48 x 48 tile" in result.output  # all 3
    assert not out.exists()
    (tmp_path / "scenes" / "scene_0_corrupt.tif").write_bytes(b"II*\x00" + b"junk" * 64)
    failing = CliRunner().invoke(main, batch_args(tmp_path, weights, out, "--dry-run"))
    assert failing.exit_code == 1 and "3 planned, 0 skipped, 1 failed" in failing.output
    assert not out.exists()


def test_dry_run_adds_up_the_outputs_against_the_free_disk_space(workspace, monkeypatch):
    """Each output fits the disk alone, the three together do not: the dry run says so
    (each scene's own note would not)."""
    import shutil
    from collections import namedtuple

    tmp_path, weights = workspace
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9, 200_000))
    result = CliRunner().invoke(main, batch_args(tmp_path, weights, tmp_path / "o", "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "the output is" not in result.output  # no scene alone is too large
    assert "the 3 outputs are" in result.output and "0.0 GB free" in result.output


@pytest.mark.slow
def test_an_interrupted_batch_says_what_is_done_and_resumes(workspace, monkeypatch):
    """Ctrl-C (or SIGTERM) during the second scene: the table and --json list the
    scene done, the message says how to go on, and the same command does the rest."""
    from rrsgan_geo.sr import batch

    tmp_path, weights = workspace
    out, summary = tmp_path / "out", tmp_path / "run.json"
    real_run_scene, calls = batch.run_scene, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_scene(*args, **kwargs)

    monkeypatch.setattr(batch, "run_scene", interrupted_on_the_second)
    args = batch_args(tmp_path, weights, out, "--json", str(summary))
    stopped = CliRunner().invoke(main, args)
    assert stopped.exit_code == 1 and "Traceback" not in stopped.output
    assert "1 done, 0 skipped, 0 failed" in stopped.output
    assert "interrupted after 1 of 3 scenes" in stopped.output
    assert [r["status"] for r in json.loads(summary.read_text())] == ["done"]
    assert len(list(out.glob("*_x4.tif"))) == 1 and not list(out.glob(".*"))

    monkeypatch.undo()
    resumed = CliRunner().invoke(main, args)
    assert resumed.exit_code == 0, resumed.output
    assert "2 done, 1 skipped, 0 failed" in resumed.output


@pytest.mark.slow
def test_corrupt_scene_skipped_or_fatal(workspace):
    tmp_path, weights = workspace
    (tmp_path / "scenes" / "scene_0_corrupt.tif").write_bytes(b"II*\x00" + b"junk" * 64)
    skipped = CliRunner().invoke(main, batch_args(tmp_path, weights, tmp_path / "skip"))
    assert skipped.exit_code == 1
    assert "3 done, 0 skipped, 1 failed" in skipped.output and "cannot read scene" in skipped.output
    assert len(list((tmp_path / "skip").glob("*_x4.tif"))) == 3
    failed = CliRunner().invoke(
        main, batch_args(tmp_path, weights, tmp_path / "fail", "--on-error", "fail")
    )
    assert failed.exit_code == 1 and "scene_0_corrupt.tif failed" in failed.output
    assert "3 not run" in failed.output
    assert not list((tmp_path / "fail").glob("*_x4.tif"))


@pytest.mark.slow
def test_killed_batch_resumes_with_only_the_missing_outputs(workspace):
    tmp_path, weights = workspace
    out = tmp_path / "out"
    command = [sys.executable, "-m", "rrsgan_geo.cli.main", *batch_args(tmp_path, weights, out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("*_x4.tif")) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*_x4.tif")}
    assert 1 <= len(finished) < 3, "the kill should land between the first and last scene"
    result = CliRunner().invoke(main, batch_args(tmp_path, weights, out))
    assert result.exit_code == 0, result.output
    assert f"{3 - len(finished)} done, {len(finished)} skipped" in result.output
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime  # not redone
    assert len(list(out.glob("*_x4.tif"))) == 3


@pytest.mark.slow
def test_dask_local_cluster_gives_byte_identical_outputs(workspace):
    pytest.importorskip("distributed")
    tmp_path, weights = workspace
    local = CliRunner().invoke(main, batch_args(tmp_path, weights, tmp_path / "local"))
    assert local.exit_code == 0, local.output
    dask_args = ["--scheduler", "dask", "--dask-workers", "2"]
    distributed = CliRunner().invoke(
        main, batch_args(tmp_path, weights, tmp_path / "dask", *dask_args)
    )
    assert distributed.exit_code == 0, distributed.output
    assert "3 done" in distributed.output
    for name in ("a", "b", "c"):
        file = f"scene_{name}_x4.tif"
        with (
            rasterio.open(tmp_path / "local" / file) as a,
            rasterio.open(tmp_path / "dask" / file) as b,
        ):
            assert (a.read() == b.read()).all()
        # The bytes too, apart from nothing: no timestamps, same tags.
        assert (tmp_path / "local" / file).read_bytes() == (tmp_path / "dask" / file).read_bytes()
    # Run again: every output is there, so no cluster is started (an unreachable
    # scheduler address is never contacted) and every scene is skipped.
    again = CliRunner().invoke(
        main,
        batch_args(
            tmp_path,
            weights,
            tmp_path / "dask",
            "--scheduler",
            "dask",
            "--dask-address",
            "tcp://127.0.0.1:9",
        ),
    )
    assert again.exit_code == 0, again.output
    assert "0 done, 3 skipped, 0 failed" in again.output


def test_files_in_a_scene_folder_that_are_not_rasters_are_named(workspace):
    tmp_path, weights = workspace
    scenes = tmp_path / "scenes"
    (scenes / "scene_d.png").write_bytes(b"not a GeoTIFF")
    (scenes / "notes.txt").write_text("field notes")
    (scenes / "scene_a.tif.aux.xml").write_text("<PAMDataset/>")  # a sidecar: no note
    result = CliRunner().invoke(main, batch_args(tmp_path, weights, tmp_path / "out", "--dry-run"))
    assert result.exit_code == 0, result.output
    note = next(line for line in result.output.splitlines() if line.startswith("note: left out"))
    assert "left out 2 file(s)" in note and "notes.txt, scene_d.png" in note, note


def test_tile_services_and_stac_documents_are_resolved_per_scene():
    from rrsgan_geo.sr.batch import split_references

    rasters, per_scene = split_references(
        ["refs/", "https://h/{z}/{x}/{y}.png", "search.json", "https://h/a.tif"]
    )
    assert rasters == ["refs/", "https://h/a.tif"]
    assert per_scene == ("https://h/{z}/{x}/{y}.png", "search.json")


def test_sr_and_batch_write_a_scene_in_one_json_shape(workspace):
    tmp_path, weights = workspace
    batch_json, sr_json = tmp_path / "batch.json", tmp_path / "sr.json"
    scene = tmp_path / "scenes" / "scene_a.tif"
    batch = CliRunner().invoke(
        main,
        batch_args(
            tmp_path, weights, tmp_path / "out", "--json", str(batch_json), scenes=[str(scene)]
        ),
    )
    assert batch.exit_code == 0, batch.output
    # The same command line, as sr: one scene, one output file.
    args = batch_args(
        tmp_path, weights, tmp_path / "a.tif", "--json", str(sr_json), scenes=[str(scene)]
    )
    single = CliRunner().invoke(main, ["sr", *args[1:]])
    assert single.exit_code == 0, single.output
    (record,) = json.loads(batch_json.read_text())
    alone = json.loads(sr_json.read_text())
    assert set(record) == {"scene", "status", "reason"} | set(alone)
    assert record["reference_coverage"] == alone["reference_coverage"] > 0
    assert record["weights"] == alone["weights"] and record["scene_blur"] == alone["scene_blur"]


def test_the_batch_report_has_a_row_and_a_quicklook_per_scene(workspace):
    """The page is static HTML: parsed here, one row, one image and one output link
    per scene, each a path relative to the page that exists."""
    from html.parser import HTMLParser

    tmp_path, weights = workspace
    out, page = tmp_path / "out", tmp_path / "out" / "report.html"
    out.mkdir()
    extra = ("--quicklook", "--report", str(page), "--stac", "--stac-datetime", "2018-06-01")
    result = CliRunner().invoke(main, batch_args(tmp_path, weights, out, *extra))
    assert result.exit_code == 0, result.output
    assert f"wrote {page}" in result.output
    item = pystac.Item.from_file(str(out / "scene_a_x4.stac.json"))
    assert item.assets["quicklook"].roles == ["overview"]
    assert item.assets["quicklook"].href == "./scene_a_x4.png"

    class Page(HTMLParser):
        rows, images, links, in_body = 0, [], [], False

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            self.in_body |= tag == "tbody"
            if tag == "tr" and self.in_body:
                self.rows += 1
            if tag == "img":
                self.images.append(attrs["src"])
            if tag == "a":
                self.links.append(attrs["href"])

    parsed = Page()
    parsed.feed(page.read_text())
    assert parsed.rows == 3
    assert sorted(parsed.images) == [f"scene_{n}_x4.png" for n in "abc"]
    assert {f"scene_{n}_x4.tif" for n in "abc"} <= set(parsed.links)
    assert all((out / href).is_file() for href in parsed.images + parsed.links)
    missing = CliRunner().invoke(
        main, batch_args(tmp_path, weights, out, "--report", str(tmp_path / "no" / "r.html"))
    )
    assert missing.exit_code == 1 and "--report folder does not exist" in missing.output
