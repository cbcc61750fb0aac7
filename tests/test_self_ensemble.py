"""Geometric self-ensemble: views are moved back before averaging, inputs move together,
and `TileModel` and `sr` run it."""

import numpy as np
import pytest
import rasterio
import torch

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model.self_ensemble import VIEW_COUNTS, ensembled
from rrsgan_geo.sr.inference import TileModel, resolve_precision
from rrsgan_geo.sr.planning import SROptions
from tests.rasters import lr_scene, mercator_reference, write_raster
from tests.test_sr_cli import files, sr  # noqa: F401 (the module's fixture)
from tests.test_sr_pipeline import run, tiny_generator

SIDE = 8


def _column_ramp_model(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """LR_UX4 plus the reference's difference from it, plus a ramp across the columns:
    aligned inputs give LR_UX4 + ramp back; the ramp is not equivariant to the moves."""
    _lr, lr_ux4, ref, _ref_dux4 = inputs
    ramp = torch.arange(lr_ux4.shape[-1], dtype=torch.float32).expand_as(lr_ux4)
    return lr_ux4 + (ref - lr_ux4) + ramp


def _inputs() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    lr = torch.rand(2, 3, SIDE, SIDE)
    lr_ux4, ref = torch.rand(2, 2, 3, 4 * SIDE, 4 * SIDE)
    return lr, lr_ux4, ref, ref


@pytest.mark.parametrize("views", VIEW_COUNTS)
def test_each_view_is_moved_back_before_the_average(views):
    """The reference follows the scene in every view (it comes back in place), and the
    ramp, which no move preserves, averages to its middle over 2, 4 or 8 views."""
    _, _, ref, _ = inputs = _inputs()
    ramp = torch.arange(4 * SIDE, dtype=torch.float32)
    expected_ramp = ramp if views == 1 else torch.full_like(ramp, (4 * SIDE - 1) / 2)
    output = ensembled(_column_ramp_model, inputs, views)
    torch.testing.assert_close(output, ref + expected_ramp)


def test_the_cli_offers_the_view_counts_the_library_defines():
    """`cli.options` spells the counts out (importing the library would import torch
    and slow every --help), so this keeps the two lists one."""
    from rrsgan_geo.cli.options import self_ensemble_option

    @self_ensemble_option
    def command(self_ensemble: int) -> None: ...

    (option,) = command.__click_params__
    assert tuple(int(choice) for choice in option.type.choices) == VIEW_COUNTS


def test_unknown_view_counts_are_refused():
    with pytest.raises(ConfigError, match="use one of"):
        ensembled(_column_ramp_model, _inputs(), 3)
    with pytest.raises(ConfigError, match="use one of"):
        SROptions(self_ensemble=6)


def test_tile_model_averages_the_views_of_the_image_and_of_the_relevance():
    """TileModel with 8 views: the image equals the average of the generator over the
    moved inputs, and the relevance channel (blended as a 4th band) is averaged too."""
    model = tiny_generator().model.eval()
    lr, lr_ux4, ref, _ = _inputs()
    inputs = (lr, lr_ux4, ref, lr_ux4)
    single = TileModel(model, torch.device("cpu"), with_relevance=True)(inputs)
    raw = {"with_relevance": True, "flat_field_correction": False}  # the model's own output
    ensemble = TileModel(model, torch.device("cpu"), views=8, **raw)(inputs)
    with torch.no_grad():
        expected = ensembled(lambda view: model(*view), inputs, 8)
    torch.testing.assert_close(ensemble[:, :3], expected, atol=1e-5, rtol=1e-5)
    assert ensemble.shape == single.shape == (2, 4, 4 * SIDE, 4 * SIDE)
    assert (ensemble[:, 3] - single[:, 3]).abs().max() > 1e-4  # the relevance changed
    assert ensemble[:, 3].min() >= 0 and ensemble[:, 3].max() <= 1


@pytest.mark.slow
def test_self_ensemble_is_tiling_invariant(tmp_path):
    """Turned and mirrored tiles keep their margins on every side, so 4 tiles and one
    whole-scene pass agree as with one view (float32 scene: no rounding hides
    differences), the relevance map included."""
    with rasterio.open(lr_scene(tmp_path / "u8.tif", window_px=128)) as src:  # 32^2 LR
        data, transform, crs = src.read().astype(np.float32), src.transform, src.crs
    scene = write_raster(tmp_path / "f32.tif", data, crs, transform)
    ref = mercator_reference(tmp_path / "ref.tif")
    options = {"scale": "0,255", "margin": 36, "self_ensemble": 8, "precision": "fp32"}
    for name, tile in (("tiled", 16), ("whole", 32)):
        relevance = tmp_path / f"{name}_relevance.tif"
        run(scene, ref, tmp_path / f"{name}.tif", tile=tile, relevance_map=relevance, **options)
    for suffix in ("", "_relevance"):
        with (
            rasterio.open(tmp_path / f"tiled{suffix}.tif") as a,
            rasterio.open(tmp_path / f"whole{suffix}.tif") as b,
        ):
            tiled, whole = a.read(), b.read()
        assert tiled.dtype == np.float32 and whole.std() > 1e-3
        assert np.abs(tiled - whole).max() / (255 if suffix == "" else 1) < 1e-4


@pytest.mark.slow
def test_sr_self_ensemble_is_recorded_and_estimated(files, tmp_path):  # noqa: F811
    ran = resolve_precision("auto", torch.device("cpu"), "uint8")  # bf16 or fp32 here
    dry = sr(files, tmp_path, "--dry-run", "--self-ensemble", "4")
    assert dry.exit_code == 0, dry.output
    assert f"{ran}, 4 views a tile)" in dry.output
    result = sr(files, tmp_path, "--self-ensemble", "4")
    assert result.exit_code == 0, result.output
    assert f"on cpu, {ran}, 4 views a tile" in result.output
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.tags()["RRSGAN_SELF_ENSEMBLE"] == "4"
        assert out.tags()["RRSGAN_PRECISION"] == ran  # what ran, not "auto"
    refused = sr(files, tmp_path, "--self-ensemble", "3", "--overwrite")
    assert refused.exit_code == 2 and "'3' is not one of '1', '2', '4', '8'" in refused.output
