"""The relevance and consistency maps: on the right grids, streamed, blended like the
image, NaN where the scene is nodata, and equal to what they claim to measure."""

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import OutputError
from rrsgan_geo.model.weight_files import load_generator
from rrsgan_geo.sr.pipeline import Generator, super_resolve
from rrsgan_geo.sr.planning import SROptions, plan_sr
from tests.conftest import REPO
from tests.rasters import lr_scene, mercator_reference, write_raster
from tests.test_sr_pipeline import tiny_generator

GATE_BIAS = 1.2  # sigmoid(1.2) = 0.7685


def holed_scene(tmp_path):
    """The NEON LR scene as float32 (no rounding hides differences) with a nodata hole."""
    with rasterio.open(lr_scene(tmp_path / "u8.tif", window_px=256)) as src:
        data, crs, transform = src.read().astype(np.float32), src.crs, src.transform
    data[:, 40:52, 10:30] = -1
    return write_raster(tmp_path / "scene.tif", data, crs, transform, nodata=-1)


def run_with_maps(tmp_path, generator, name, **options):
    scene, ref = holed_scene(tmp_path), mercator_reference(tmp_path / "ref.tif")
    opts = SROptions(
        scale="0,255",
        relevance_map=tmp_path / f"{name}_relevance.tif",
        consistency_map=tmp_path / f"{name}_consistency.tif",
        **options,
    )
    plan = plan_sr(scene, ref, tmp_path / f"{name}.tif", opts, generator.margin)
    return scene, super_resolve(plan, generator, opts)


def test_the_relevance_map_is_the_attentions_gate_on_the_output_grid(tmp_path):
    """With the x4 attention's gate fixed to sigmoid(1.2) everywhere, the map is that
    value on every valid output pixel, NaN in the scene's hole, on the output grid."""
    generator = tiny_generator(8)
    with torch.no_grad():
        attention = generator.model.texture_transfer.ram_head_large
        attention.mul_conv2.weight.zero_()
        attention.mul_conv2.bias.fill_(GATE_BIAS)
    # fp32: in bf16 (the default on CPUs that compute it) the gate is bf16's 0.7695
    scene, report = run_with_maps(tmp_path, generator, "fixed", tile=32, precision="fp32")
    expected = 1 / (1 + np.exp(-GATE_BIAS))
    assert report.mean_relevance == pytest.approx(expected, abs=1e-5)
    with (
        rasterio.open(tmp_path / "fixed.tif") as out,
        rasterio.open(tmp_path / "fixed_relevance.tif") as relevance,
    ):
        assert (relevance.crs, relevance.transform, relevance.shape) == (
            out.crs, out.transform, out.shape,
        )  # fmt: skip
        assert relevance.dtypes[0] == "float32" and relevance.descriptions == ("relevance",)
        values = relevance.read(1)
        hole = out.read_masks(1) == 0
    assert hole.sum() == 48 * 80
    assert np.isnan(values[hole]).all()
    np.testing.assert_allclose(values[~hole], expected, atol=1e-5)


def test_the_consistency_map_is_the_4x4_mean_of_the_output_minus_the_scene(tmp_path):
    scene, _ = run_with_maps(tmp_path, tiny_generator(8), "run", tile=32)
    with (
        rasterio.open(scene) as lr,
        rasterio.open(tmp_path / "run.tif") as sr,
        rasterio.open(tmp_path / "run_consistency.tif") as consistency,
    ):
        assert (consistency.crs, consistency.transform, consistency.shape) == (
            lr.crs, lr.transform, lr.shape,
        )  # fmt: skip
        lr_values, valid = lr.read(), lr.dataset_mask() > 0
        output = sr.read()
        values = consistency.read(1)
    down = output.reshape(3, 64, 4, 64, 4).mean(axis=(2, 4))
    expected = np.abs(down - lr_values).mean(axis=0)
    assert np.isnan(values[~valid]).all()
    np.testing.assert_allclose(values[valid], expected[valid], atol=1e-3)
    assert 0.5 < expected[valid].mean() < 50  # the random tiny model disagrees, some


def test_the_maps_from_the_command_line(tmp_path):
    scene = lr_scene(tmp_path / "scene.tif", window_px=128)
    ref = mercator_reference(tmp_path / "ref.tif")
    base = ["sr", str(scene), "--ref", str(ref), "--device", "cpu", "--tile", "32"]
    result = CliRunner().invoke(
        main,
        [*base, "-o", str(tmp_path / "out.tif"), "--relevance-map", str(tmp_path / "rel.tif"),
         "--consistency-map", str(tmp_path / "con.tif"), "--quiet", "--json",
         str(tmp_path / "run.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "rel.tif").exists() and (tmp_path / "con.tif").exists()
    assert '"mean_relevance": 0.' in (tmp_path / "run.json").read_text()
    clash = CliRunner().invoke(
        main, [*base, "-o", str(tmp_path / "b.tif"), "--relevance-map", str(tmp_path / "b.tif")]
    )
    assert clash.exit_code == 1 and "must differ" in clash.output


def test_a_map_path_that_exists_is_refused_before_any_work(tmp_path):
    (tmp_path / "rel.tif").write_bytes(b"keep me")
    options = SROptions(relevance_map=tmp_path / "rel.tif")
    with pytest.raises(OutputError, match="exists"):
        plan_sr(lr_scene(tmp_path / "s.tif"), None, tmp_path / "o.tif", options, 8)
    assert (tmp_path / "rel.tif").read_bytes() == b"keep me"


GATE_PROBE = REPO / "tests" / "data" / "gate_probe_compact.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("replacement", ["rotated", "grey"])
def test_the_relevance_map_is_higher_where_the_reference_matches(tmp_path, replacement):
    """A model whose attention learnt to gate (weights/provenance/
    rrsnet_compact_gate_probe_cpu.yaml) on the NEON scene, with the right half of the
    reference replaced by the image rotated 180 degrees or by grey: the map, read back
    from the file, is higher on the left, where the reference is the scene itself
    (measured: 0.563 vs 0.517 and 0.514)."""
    scene = lr_scene(tmp_path / "scene.tif")
    with rasterio.open(mercator_reference(tmp_path / "truth.tif")) as src:
        data, crs, transform = src.read(), src.crs, src.transform
    half = data.shape[2] // 2
    data[:, :, half:] = data[:, ::-1, ::-1][:, :, half:] if replacement == "rotated" else 128
    ref = write_raster(tmp_path / "half.tif", data, crs, transform)
    model, weight_file = load_generator(GATE_PROBE)
    generator = Generator(model, GATE_PROBE.name, weight_file.sha256, weight_file.metadata.margin)
    options = SROptions(tile=64, relevance_map=tmp_path / "relevance.tif")
    plan = plan_sr(scene, ref, tmp_path / "out.tif", options, generator.margin)
    super_resolve(plan, generator, options)
    with rasterio.open(tmp_path / "relevance.tif") as relevance:
        values = relevance.read(1)
    width = values.shape[1]
    matching = np.nanmean(values[:, 40 : width // 2 - 60])  # away from the seam and edges
    replaced = np.nanmean(values[:, width // 2 + 60 : -40])
    assert matching > replaced + 0.03
