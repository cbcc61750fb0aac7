"""--nodata and --ref-nodata: fill values the files do not tag (0 around a Landsat scene,
black around a mosaic) are declared, and then kept out of the stretch, the model's
reference and the output, as if the files had tagged them."""

import json

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.transform import Affine

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import InputError, OutputError
from rrsgan_geo.geo.locations import display_name, undeclared, with_nodata
from rrsgan_geo.geo.rasters import untagged_zeros
from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.weight_files import WeightsMetadata, save_weights
from rrsgan_geo.sr.planning import SROptions, plan_sr
from tests.rasters import lr_scene, mercator_reference, neon_path, write_raster
from tests.test_sr_pipeline import TINY, run

FILL_ROWS, FILL_COLS = 5, 6  # of the LR scene, 0 in every band, no nodata tag


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A uint16 scene (the NEON LR x 40 + 5000: never 0 where valid) with an untagged
    fill of 0 along its top and left edges; references in EPSG:3857 and UTM."""
    root = tmp_path_factory.mktemp("declared_nodata")
    with rasterio.open(lr_scene(root / "lr.tif")) as src:
        values = src.read().astype(np.uint16) * 40 + 5000
        crs, transform = src.crs, src.transform
    values[:, :FILL_ROWS] = 0
    values[:, :, :FILL_COLS] = 0
    scene = write_raster(root / "scene_u16.tif", values, crs, transform)
    with rasterio.open(neon_path()) as src:
        hr = src.read()
        hr[:, :, 3 * hr.shape[2] // 4 :] = 0  # a black border of the mosaic, untagged
        black_border = write_raster(root / "ref_black.tif", hr, src.crs, src.transform)
    return {
        "root": root,
        "scene": scene,
        "ref": mercator_reference(root / "ref3857.tif"),
        "black_border": black_border,
    }


def test_declared_fill_is_left_out_of_the_stretch_and_is_nodata_in_the_output(inputs, tmp_path):
    scene, ref = inputs["scene"], inputs["ref"]
    fill_share = 1 - (1 - FILL_ROWS / 100) * (1 - FILL_COLS / 100)  # the LR is 100 x 100
    untagged = plan_sr(scene, ref, tmp_path / "a.tif", SROptions(scale="p2,p98"), 8)
    assert untagged.untagged_zeros == pytest.approx(fill_share, abs=0.1)  # sampled
    assert untagged.scaling.low == (0.0, 0.0, 0.0)  # the fill drags the stretch down

    plan, _ = run(scene, ref, tmp_path / "out.tif", tile=32, scale="p2,p98", nodata=0)
    assert plan.nodata == 0 and plan.untagged_zeros == 0.0
    assert min(plan.scaling.low) >= 5000  # percentiles of real pixels only
    with rasterio.open(tmp_path / "out.tif") as sr:
        assert sr.nodata == 0
        values = sr.read()
        tags = sr.tags()
    fill = np.zeros(values.shape[1:], bool)
    fill[: 4 * FILL_ROWS] = True
    fill[:, : 4 * FILL_COLS] = True
    assert (values[:, fill] == 0).all()
    assert (values[:, ~fill] != 0).all()  # a valid pixel never reads back as nodata
    assert tags["RRSGAN_SCENE"] == scene.name  # a name, never the vrt:// wrapping
    assert json.loads(tags["RRSGAN_OPTIONS"])["nodata"] == 0


@pytest.mark.slow
def test_declared_reference_fill_is_no_reference(inputs, tmp_path):
    scene, ref = lr_scene(tmp_path / "scene.tif"), inputs["black_border"]
    plan, as_tagged = run(scene, ref, tmp_path / "a.tif", tile=32)
    ((name, share),) = plan.untagged_ref_zeros  # what sr's note reports
    assert name == ref.name and share == pytest.approx(0.25, abs=0.1)
    plan, declared = run(scene, ref, tmp_path / "b.tif", tile=32, ref_nodata=0)
    assert plan.untagged_ref_zeros == ((ref.name, 0.0),)  # declared: masked, no note
    assert as_tagged.pixel_coverage > 0.99  # the black border taken for texture
    assert declared.pixel_coverage == pytest.approx(0.75, abs=0.02)


def test_an_input_read_with_declared_nodata_is_never_overwritten(inputs):
    scene = inputs["scene"]
    options = SROptions(scale="0,20000", nodata=0, overwrite=True)
    with pytest.raises(OutputError, match="is an input"):
        plan_sr(scene, inputs["ref"], scene, options, 8)


def test_locations_with_declared_nodata(inputs):
    wrapped = with_nodata(inputs["scene"], 0)
    assert wrapped.startswith("vrt://") and undeclared(wrapped) == str(inputs["scene"])
    assert display_name(wrapped) == inputs["scene"].name
    with rasterio.open(wrapped) as src:
        assert src.nodata == 0
    with pytest.raises(InputError, match="declare it in a VRT"):
        with_nodata("https://host/scene.tif?token=abc", 0)
    with pytest.raises(InputError, match="not found"):
        plan_sr(
            inputs["root"] / "missing.tif", None, inputs["root"] / "o.tif", SROptions(nodata=0), 8
        )


def test_sr_suggests_and_reports_a_declared_nodata(inputs, tmp_path):
    weights = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    save_weights(RRSNet(TINY).state_dict(), weights, WeightsMetadata(config=TINY, margin=4))
    args = ["sr", str(inputs["scene"]), "--ref", str(inputs["ref"]), "--weights", str(weights)]
    args += ["-o", str(tmp_path / "out.tif"), "--scale", "p2,p98", "--dry-run"]
    runner = CliRunner()
    plain = runner.invoke(main, args)
    assert plain.exit_code == 0, plain.output
    note = "are 0 in every band and it tags no nodata value: if they are fill, pass --nodata 0"
    assert "of the scene's pixels " + note in plain.output
    black = runner.invoke(main, [*args, "--ref", str(inputs["black_border"])])
    assert black.exit_code == 0, black.output
    assert "of reference ref_black.tif's pixels are 0 in every band" in black.output
    assert "pass --ref-nodata 0" in black.output
    declared = runner.invoke(main, [*args, "--nodata", "0"])
    assert declared.exit_code == 0, declared.output
    assert f"scene       {inputs['scene']}: 100 x 100 px" in declared.output
    assert "uint16, nodata 0" in declared.output and "--nodata 0" not in declared.output


@pytest.mark.parametrize("tiled", [True, False])
def test_untagged_zeros_sees_a_thin_edge_of_fill_at_about_its_share(tmp_path, tiled):
    """A sliver of fill along two edges (2.3 % of a 1000 x 900 raster, the kind a
    Landsat scene has) is found, tiled or in strips, and its share is not overstated by
    the corner windows standing for as much as the middle ones."""
    values = np.full((3, 900, 1000), 7, np.uint8)
    values[:, :, :12] = 0
    values[:, -12:] = 0
    share = float((values == 0).all(axis=0).mean())
    blocks = {"tiled": True, "blockxsize": 256, "blockysize": 256} if tiled else {}
    transform = Affine(10, 0, 300000, 0, -10, 4100000)
    path = write_raster(tmp_path / "sliver.tif", values, "EPSG:32611", transform, **blocks)
    with rasterio.open(path) as raster:
        estimate = untagged_zeros(raster, (1, 2, 3))
    assert share / 2 < estimate < 2.5 * share


def test_errors_about_a_declared_raster_name_the_file_not_its_vrt_wrapping(inputs, tmp_path):
    """What the user is told names the file they gave: the `vrt://...?a_nodata=`
    connection string that declares the value is an implementation detail."""
    scene = inputs["scene"]
    for options, message in (
        (SROptions(nodata=0), "is uint16, not uint8"),  # no --scale
        (SROptions(nodata=0, scale="0,20000", scene_bands=(1, 2, 4)), "band 4 does not exist"),
    ):
        with pytest.raises(InputError, match=message) as raised:
            plan_sr(scene, inputs["ref"], tmp_path / "out.tif", options, 8)
        assert f"scene {scene} " in str(raised.value) and "vrt://" not in str(raised.value)


def test_non_finite_and_overflowing_values_never_spread(tmp_path):
    """One infinity, 25 untagged NaNs and a 3e38 in a float32 scene with no nodata tag:
    the run succeeds, says what it found, and only the affected 4 x 4 output blocks are
    masked; every other output pixel is finite."""
    rng = np.random.default_rng(1)
    values = rng.uniform(100, 900, (1, 48, 48)).astype(np.float32)
    values[0, 10, 10] = np.inf
    values[0, 30:35, 20:25] = np.nan
    values[0, 40, 5] = 3e38
    scene = write_raster(
        tmp_path / "float.tif", values, "EPSG:32617", Affine(0.4, 0, 404000, 0, -0.4, 3285000)
    )
    out = tmp_path / "out.tif"
    args = ["sr", str(scene), "-o", str(out), "--allow-missing-ref", "--scale", "0,1000"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "26 of the scene's values are NaN or infinite" in result.output
    assert "1 of the scene's values lie more than" in result.output
    with rasterio.open(out) as written:
        data, mask = written.read(1), written.read_masks(1)
    invalid = mask == 0
    assert invalid.sum() == 26 * 16
    assert invalid[40:44, 40:44].all() and invalid[120:140, 80:100].all()
    assert np.isfinite(data[~invalid]).all()
