"""`rrsgan-geo sr` from the command line: every bad input gives one line, a non-zero
exit code and no output file; SIGTERM mid-run leaves nothing behind."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import WeightsNotFoundError
from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.weight_files import WeightsMetadata, save_weights
from rrsgan_geo.sr import planning
from tests.rasters import lr_scene, mercator_reference, write_raster
from tests.test_sr_pipeline import TINY


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sr_cli")
    torch.manual_seed(0)
    weights = root / "tiny.safetensors"
    save_weights(RRSNet(TINY).state_dict(), weights, WeightsMetadata(config=TINY, margin=4))
    rng = np.random.default_rng(0)
    utm = Affine(0.4, 0, 404000, 0, -0.4, 3285000)
    paths = {
        "weights": weights,
        "scene": lr_scene(root / "scene.tif"),
        "ref": mercator_reference(root / "ref.tif"),
        "no_crs": write_raster(root / "no_crs.tif", np.zeros((3, 8, 8), np.uint8), None, None),
        "no_transform": write_raster(
            root / "no_transform.tif", np.zeros((3, 8, 8), np.uint8), "EPSG:32617", None
        ),
        "singular": write_raster(
            root / "singular.tif",
            np.zeros((3, 8, 8), np.uint8),
            "EPSG:32617",
            Affine(0.4, 0.4, 404000, 0.4, 0.4, 3285000),
        ),
        "mars": write_raster(
            root / "mars.tif",
            np.zeros((3, 8, 8), np.uint8),
            rasterio.crs.CRS.from_wkt(
                'GEOGCS["Mars 2000",DATUM["D_Mars_2000",SPHEROID["Mars_2000_IAU_IAG",'
                '3396190.0,169.894447]],PRIMEM["Greenwich",0],UNIT["Degree",0.0174532925199433]]'
            ),
            Affine(0.0001, 0, 10, 0, -0.0001, 10),
        ),
        "local_cs": write_raster(
            root / "local.tif",
            np.zeros((3, 8, 8), np.uint8),
            rasterio.crs.CRS.from_wkt(
                'LOCAL_CS["site grid",UNIT["metre",1],AXIS["X",EAST],AXIS["Y",NORTH]]'
            ),
            Affine(0.4, 0, 0, 0, -0.4, 0),
        ),
        "ref_no_crs": write_raster(
            root / "ref_no_crs.tif", np.zeros((3, 8, 8), np.uint8), None, utm
        ),
        "far_ref": write_raster(
            root / "far.tif", np.zeros((3, 8, 8), np.uint8), "EPSG:32617", Affine(1, 0, 0, 0, -1, 0)
        ),
        "uint16": write_raster(
            root / "u16.tif", rng.integers(0, 4000, (3, 16, 16), dtype=np.uint16), "EPSG:32617", utm
        ),
        "corrupt": root / "corrupt.tif",
        "other_weights": root / "other.safetensors",
    }
    paths["corrupt"].write_bytes(b"II*\x00" + b"\x00garbage" * 50)
    save_weights({"x.weight": torch.zeros(2)}, paths["other_weights"], WeightsMetadata())
    return paths


def sr(files, tmp_path, *args, scene="scene", ref="ref"):
    command = ["sr", str(files[scene]), "-o", str(tmp_path / "out.tif")]
    if ref:
        command += ["--ref", str(files[ref])]
    if "--weights" not in args:
        command += ["--weights", str(files["weights"])]
    return CliRunner().invoke(main, [*command, "--tile", "32", *args])


def assert_clean_failure(result, tmp_path, message):
    assert result.exit_code != 0, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1
    assert not (tmp_path / "out.tif").exists()
    assert not list(tmp_path.glob(".*part*"))


@pytest.mark.parametrize(
    ("kwargs", "args", "message"),
    [
        ({"scene": "no_crs"}, (), "has no CRS"),
        ({"scene": "no_transform"}, (), "has no geotransform"),
        ({"scene": "singular"}, (), "is singular or not finite"),
        ({"scene": "mars"}, (), "cannot relate CRS 'Mars 2000' to EPSG:4326"),
        ({"scene": "local_cs"}, (), "cannot relate CRS 'site grid' to EPSG:4326"),
        ({"ref": "singular"}, (), "is singular or not finite"),
        ({"ref": "ref_no_crs"}, (), "has no CRS"),
        ({"ref": "far_ref"}, (), "does not overlap"),
        ({"scene": "corrupt"}, (), "cannot read scene"),
        ({"ref": "corrupt"}, (), "cannot read reference"),
        ({}, ("--rgb-bands", "1,2"), "give 3 band numbers or 1"),
        ({}, ("--bands", "1,2,5"), "band 5 does not exist"),
        ({}, ("--ref-bands", "4,3,2"), "band 4 does not exist"),
        ({"scene": "uint16"}, (), "--scale"),
        ({}, ("--scale", "banana"), "expected MIN,MAX"),
        ({}, ("--scale", "p98,p2"), "percentiles must rise"),
        ({}, ("--ref-scale", "9,1"), "'--ref-scale': '9,1': MIN must be below MAX"),
        ({}, ("--margin", "-2"), "'--margin': -2 is not in the range x>=0"),
        ({}, ("--weights", "missing.safetensors"), "weight file not found"),
        ({"scene": "scene"}, ("--weights", "OTHER"), "does not fit the generator"),
        ({}, ("--tile", "30"), "multiple of 4"),
        ({}, ("--tile", "0"), "multiple of 4"),
        ({}, ("--device", "cuda:7"), "cuda:7"),
        ({}, ("--co", "NOEQUALS"), "KEY=VALUE"),
    ],
)
def test_bad_input(files, tmp_path, monkeypatch, kwargs, args, message):
    monkeypatch.chdir(tmp_path)
    args = tuple(str(files["other_weights"]) if a == "OTHER" else a for a in args)
    assert_clean_failure(sr(files, tmp_path, *args, **kwargs), tmp_path, message)


def test_no_overlap_runs_with_allow_missing_ref(files, tmp_path):
    result = sr(files, tmp_path, "--allow-missing-ref", ref="far_ref")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.tif").exists()


def test_existing_output_needs_overwrite(files, tmp_path):
    (tmp_path / "out.tif").write_bytes(b"precious")
    result = sr(files, tmp_path)
    assert result.exit_code != 0 and "--overwrite" in result.output
    assert (tmp_path / "out.tif").read_bytes() == b"precious"


def sr_args(files):
    """scene, reference and weights: what every `sr` command line here starts with."""
    scene, ref, weights = (str(files[k]) for k in ("scene", "ref", "weights"))
    return ["sr", scene, "--ref", ref, "--weights", weights]


def test_output_folder_missing_or_not_writable(files, tmp_path):
    base = sr_args(files)
    missing = CliRunner().invoke(main, [*base, "-o", str(tmp_path / "nope" / "out.tif")])
    assert missing.exit_code != 0 and "does not exist" in missing.output
    if os.geteuid() == 0:
        locked = "/proc/out.tif"  # not writable even for root
    else:
        (tmp_path / "locked").mkdir(mode=0o555)
        locked = str(tmp_path / "locked" / "out.tif")
    result = CliRunner().invoke(main, [*base, "-o", locked])
    assert result.exit_code != 0 and "not writable" in result.output


def test_plain_geotiff_takes_creation_options(files, tmp_path):
    import rasterio

    result = sr(files, tmp_path, "--co", "COMPRESS=LZW", "--co", "BLOCKXSIZE=128")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.compression.name == "lzw" and out.block_shapes[0][1] == 128


def test_success_with_cog_creation_options_and_dry_run(files, tmp_path):
    import rasterio

    dry = sr(files, tmp_path, "--dry-run")
    assert dry.exit_code == 0 and "tiles" in dry.output and not (tmp_path / "out.tif").exists()
    assert "s of model time on cpu (timed on a 48 x 48 tile here, " in dry.output
    # The estimate is timed in the precision the run would use.
    for precision in ("fp32", "bf16"):
        timed = sr(files, tmp_path, "--dry-run", "--precision", precision)
        assert f"(timed on a 48 x 48 tile here, {precision})" in timed.output, timed.output
    result = sr(files, tmp_path, "--cog", "--co", "BLOCKSIZE=128", "--co", "LEVEL=9")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert out.overviews(1) == [2, 4]
        assert out.block_shapes[0] == (128, 128)
        assert out.tags()["RRSGAN_TILE"] == "32"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_interrupt_mid_run_leaves_no_file(files, tmp_path, signum):
    out = tmp_path / "out.tif"
    command = [sys.executable, "-m", "rrsgan_geo.cli.main", *sr_args(files), "-o", str(out)]
    command += ["--tile", "8", "--batch-size", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.tif.*.part.tif")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not list(tmp_path.glob(".out.tif.*.part.tif")):
        process.kill()
        pytest.fail(f"the run never started writing: {process.communicate()[1]}")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert not out.exists(), stderr
    assert not list(tmp_path.glob(".*part*"))


def _no_shipped_weights(_device_type: str = "cpu"):
    raise WeightsNotFoundError("no trained weights are installed (test): pass --weights FILE")


@pytest.mark.slow
def test_without_weights_a_run_refuses_and_a_dry_run_still_plans(files, tmp_path, monkeypatch):
    monkeypatch.setattr("rrsgan_geo.model.weight_files.shipped_weights_path", _no_shipped_weights)
    base = ["sr", str(files["scene"]), "--ref", str(files["ref"]), "-o", str(tmp_path / "o.tif")]
    refused = CliRunner().invoke(main, base)
    assert refused.exit_code == 1 and "no trained weights are installed" in refused.output
    planned = CliRunner().invoke(main, [*base, "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert "none installed" in planned.output and "GMAC" in planned.output
    assert not (tmp_path / "o.tif").exists()


def test_quiet_and_json_summary(files, tmp_path):
    summary = tmp_path / "run.json"
    result = sr(files, tmp_path, "--quiet", "--json", str(summary))
    assert result.exit_code == 0, result.output
    assert result.output == ""
    data = json.loads(summary.read_text())
    assert data["sr_size"] == [400, 400] and data["tiles"] > 0
    assert 0.9 < data["reference_coverage"] <= 1 and data["weights"]["file"] == "tiny.safetensors"
    # The notes --quiet keeps off the console (this reference's warp left untagged black).
    assert [n for n in data["notes"] if "of reference ref.tif's pixels are 0" in n]


def test_bounds_process_a_part_of_the_scene_as_the_whole_run_does(files, tmp_path):
    """Same grid, exactly; values within 1 DN (tiles start elsewhere and the reference
    is warped onto another extent, so uint8 rounding differs here and there)."""
    import rasterio

    whole = sr(files, tmp_path, "--co", "ZLEVEL=1")
    assert whole.exit_code == 0, whole.output
    (tmp_path / "out.tif").rename(tmp_path / "whole.tif")
    with rasterio.open(files["scene"]) as scene:
        t = scene.transform
        # Columns 30.5..70 and rows 20..60.2 of the LR scene: whole pixels 30..70, 20..61.
        bounds = (t.c + 30.5 * t.a, t.f + 60.2 * t.e, t.c + 70 * t.a, t.f + 20 * t.e)
    planned = sr(files, tmp_path, "--bounds", *map(str, bounds), "--dry-run")
    assert "of the part of the scene given by --bounds" in planned.output  # coverage of what
    part = sr(files, tmp_path, "--bounds", *map(str, bounds))
    assert part.exit_code == 0, part.output
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "out.tif") as b:
        assert (b.width, b.height) == (4 * 40, 4 * 41)
        assert b.transform == a.transform @ Affine.translation(4 * 30, 4 * 20)
        expected = a.read(window=rasterio.windows.Window(120, 80, 160, 164))
        differs = np.abs(b.read().astype(int) - expected.astype(int))
    assert differs.max() <= 1 and (differs > 0).mean() < 0.1
    outside = sr(files, tmp_path, "--bounds", "0", "0", "1", "1", "--overwrite")
    assert outside.exit_code == 1 and "do not meet the scene" in outside.output
    with rasterio.open(files["scene"]) as scene:  # and says where the scene is
        left, bottom, right, top = (f"{value:.10g}" for value in scene.bounds)
    assert f"spans ({left}, {bottom}, {right}, {top}) in its CRS EPSG:32617" in outside.output


@pytest.mark.slow
def test_sr_says_how_far_it_moved_the_reference(files, tmp_path):
    """The reference lies where the scene has it: measured and left (0 px); with
    --no-co-register nothing is measured."""
    moved = sr(files, tmp_path, "--overwrite")
    assert moved.exit_code == 0, moved.output
    assert "co-registered ref.tif: already in place (0 px;" in moved.output
    as_is = sr(files, tmp_path, "--overwrite", "--no-co-register")
    assert as_is.exit_code == 0, as_is.output
    assert "co-registered" not in as_is.output


def test_sr_notes_an_output_larger_than_the_free_disk_space(files, tmp_path, monkeypatch):
    """A run that would fill the disk is said to before it starts, not hours in."""
    import shutil
    from collections import namedtuple

    roomy = sr(files, tmp_path, "--dry-run")
    assert roomy.exit_code == 0 and "GB free" not in roomy.output
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9, 1000))
    full = sr(files, tmp_path, "--dry-run")
    assert full.exit_code == 0, full.output
    assert "GB before compression and" in full.output and "0.0 GB free" in full.output


def test_a_reference_no_finer_than_the_scene_is_left_out_and_said_so(files, tmp_path, monkeypatch):
    """The scene itself (its own pixels, 4x the output's) as reference is what a user
    with two dates of one sensor would give: it has no detail to add, and a model that
    trusts matching references would copy its interpolation, so sr leaves it out, says
    so (before reading its pixels for statistics), and writes what it writes without a
    reference. The Web Mercator reference at 0.125 Mercator metres is 0.1 ground metres
    at this latitude, the output's pixel: no note (the pixel is measured where the
    scene is)."""
    plan_json = str(tmp_path / "p.json")
    scaled = []
    choose_scaling = planning.choose_scaling
    monkeypatch.setattr(
        planning,
        "choose_scaling",
        lambda *args: scaled.append(args[-1]) or choose_scaling(*args),
    )
    coarse = sr(files, tmp_path, "--dry-run", "--json", plan_json, ref="scene")
    assert coarse.exit_code == 0, coarse.output
    assert scaled == ["scene"]
    monkeypatch.undo()
    assert "reference scene.tif was left out: its pixels are 4.0x the output's" in coarse.output
    plan = json.loads((tmp_path / "p.json").read_text())  # the plan, for scripts
    assert plan["dry_run"] and plan["references"] == [] and plan["tiles"] >= 1
    assert any("4.0x the output's" in note for note in plan["notes"])
    fine = sr(files, tmp_path, "--dry-run")
    assert fine.exit_code == 0 and "x the output's" not in fine.output
    outputs = {}
    for name, args in (("left out", ()), ("none", ("--allow-missing-ref",))):
        result = sr(files, tmp_path, "--overwrite", *args, ref="scene" if args == () else None)
        assert result.exit_code == 0, result.output
        with rasterio.open(tmp_path / "out.tif") as out:
            outputs[name] = out.read()
    assert np.array_equal(outputs["left out"], outputs["none"])


@pytest.mark.slow
def test_sr_measures_the_scene_blur_and_records_it(files, tmp_path):
    """The scene is the mosaic averaged 4x (area integration, no PSF) and the reference
    the mosaic itself: `auto` finds no PSF (bicubic-like); a given sigma is used as
    given; without a reference, the default. Each run says so, in the summary, --json
    and the output's tags."""
    runs = {}
    for value in ("auto", "0.8"):
        summary = tmp_path / f"{value}.json"
        result = sr(files, tmp_path, "--overwrite", "--scene-blur", value, "--json", str(summary))
        assert result.exit_code == 0, result.output
        with rasterio.open(tmp_path / "out.tif") as output:
            tag = json.loads(output.tags()["RRSGAN_SCENE_BLUR"])
        runs[value] = (result.output, json.loads(summary.read_text())["scene_blur"], tag)
    output, record, tag = runs["auto"]
    assert record == tag and record["source"] == "estimated" and record["fit_r2"] > 0.9
    assert (
        record["model"] == "bicubic"
        and "bicubic-like (no PSF), estimated from the reference" in output
    )
    # What was measured comes before the line that says the output was written.
    assert output.index("co-registered") < output.index("scene blur") < output.index("wrote")
    output, record, tag = runs["0.8"]
    assert record == tag and record["source"] == "given" and record["sigma_lr_px"] == 0.8
    assert "scene blur: PSF sigma 0.80 LR px (area integration), as given" in output
    no_reference = sr(files, tmp_path, "--overwrite", "--allow-missing-ref", ref="far_ref")
    assert no_reference.exit_code == 0, no_reference.output
    assert "scene blur: PSF sigma 0.50 LR px (area integration), the default (no reference)" in (
        no_reference.output
    )
    bad = sr(files, tmp_path, "--overwrite", "--scene-blur", "sharp")
    assert bad.exit_code == 1 and bad.output.startswith("Error: --scene-blur 'sharp'")


def test_an_output_that_appears_during_the_run_is_never_replaced(files, tmp_path, monkeypatch):
    """Two runs to one -o without --overwrite: the one that finishes second gets one
    line and the first one's file stays (the check at planning cannot see the other)."""
    from rrsgan_geo.sr import output as output_module

    real_check = output_module.check_complete

    def another_run_finishes_first(finished, destination, sparse_ok):
        real_check(finished, destination, sparse_ok)
        destination.write_bytes(b"the other run's result")

    monkeypatch.setattr(output_module, "check_complete", another_run_finishes_first)
    result = sr(files, tmp_path)
    assert result.exit_code == 1 and "appeared while this run was working" in result.output
    assert (tmp_path / "out.tif").read_bytes() == b"the other run's result"
    assert not list(tmp_path.glob(".*part*"))


def test_a_tile_larger_than_the_scene_is_fitted_to_it(files, tmp_path):
    result = sr(files, tmp_path, "--tile", "100000", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "100000" not in result.output


def test_a_failing_url_with_a_space_is_one_line(files, tmp_path):
    command = ["sr", str(files["scene"]), "--ref", "http://127.0.0.1:9/a b.tif"]
    result = CliRunner().invoke(main, [*command, "-o", str(tmp_path / "out.tif")])
    assert_clean_failure(result, tmp_path, "a b.tif")
