"""Low-contrast tiles stretched around the model (`contrast`), with the shipped model on
the CC0 NEON mosaic."""

import pytest
import torch

from rrsgan_geo.model.degradation import downsample_4x, upsample_4x
from rrsgan_geo.model.weight_files import load_generator, shipped_weights_path
from rrsgan_geo.sr.contrast import MAX_GAIN, MIN_SPREAD, ContrastStretch
from rrsgan_geo.sr.inference import TileModel
from tests.rasters import neon_path, read_unit

SCENE = neon_path().parent / "sjer_scene_0.4m_utm11n.tif"


def test_the_stretch_leaves_contrasty_tiles_alone_and_undoes_what_it_applies():
    torch.manual_seed(0)
    contrasty = torch.rand(2, 3, 16, 16)
    assert ContrastStretch.for_tiles(contrasty) is None
    assert ContrastStretch.for_tiles(torch.full((1, 3, 16, 16), 0.3)) is None  # flat
    dim = torch.cat([0.2 + 0.05 * contrasty[:1], 0.9 + 0.001 * contrasty[1:]])
    stretch = ContrastStretch.for_tiles(dim)
    assert stretch is not None
    gains = stretch.gain.flatten().tolist()
    assert gains[0] == pytest.approx(MIN_SPREAD / 0.049, rel=0.05) and gains[1] == MAX_GAIN
    stretched = stretch.apply(dim)
    spreads = stretched.flatten(1).quantile(0.99, dim=1) - stretched.flatten(1).quantile(
        0.01, dim=1
    )
    assert spreads[0] == pytest.approx(MIN_SPREAD, rel=1e-3)
    assert float(stretched.min()) > 0 and float(stretched.max()) < 1  # kept in the range
    torch.testing.assert_close(stretch.undo(stretched), dim)


def _phase_spread(difference: torch.Tensor) -> float:
    """Max - min over the 16 places of the 4 x 4 block of the mean of a 3 x H x W image."""
    blocks = difference.unflatten(-1, (-1, 4)).unflatten(-3, (-1, 4))
    means = blocks.mean(dim=(0, 1, 3))
    return float(means.max() - means.min())


def test_a_dim_scene_comes_out_as_the_model_makes_a_contrasty_one():
    """The NEON scene squeezed into 4 % of the range (a dark field in a wide 16-bit
    stretch), super-resolved with the shipped model and scaled back: with the stretch
    it matches the full-contrast result far more closely, and without the model's own
    4 x 4 dot pattern magnified 25x."""
    model, _ = load_generator(shipped_weights_path("cpu"))
    lr = downsample_4x(read_unit(neon_path())[None, :, 64:320, 64:320])
    squeeze = 0.04

    def super_resolved(scene: torch.Tensor, stretch: bool) -> torch.Tensor:
        grid = upsample_4x(scene)
        runner = TileModel(model, torch.device("cpu"), stretch_contrast=stretch)
        return runner((scene, grid, grid, grid))[0, :, 16:-16, 16:-16]

    full = super_resolved(lr, stretch=True)
    dim = 0.05 + squeeze * lr
    bicubic = (upsample_4x(dim)[0, :, 16:-16, 16:-16] - 0.05) / squeeze
    errors, spreads = {}, {}
    for stretch in (True, False):
        back = (super_resolved(dim, stretch) - 0.05) / squeeze
        errors[stretch] = float((back - full).abs().mean())
        spreads[stretch] = _phase_spread(back - bicubic)
    assert errors[True] < errors[False] / 3, errors
    assert spreads[True] < spreads[False] / 3, spreads
    assert spreads[True] * 255 < 1.5, spreads


@pytest.mark.slow
def test_a_dim_16_bit_scene_runs_its_stretched_tiles_over_four_views(tmp_path, monkeypatch):
    """The bundled scene as a 16-bit product whose bright corner (a cloud) makes the
    whole-scene p2,p98 stretch wide: the run says its tiles were low in contrast and ran
    over 4 views, which brings the spread of the 16 places' mean SR - bicubic to under
    half of what the stretch alone leaves (the issue's Sentinel-2 window: 3.4 -> 1.1 DN)."""
    import json

    import numpy as np
    import rasterio
    from click.testing import CliRunner

    from rrsgan_geo.cli.main import main
    from rrsgan_geo.sr import contrast

    with rasterio.open(SCENE) as source:
        pixels, profile = source.read(window=((0, 64), (0, 64))).astype(np.uint16), source.profile
    profile.update(width=64, height=64)
    dim = 1000 + 4 * pixels
    dim[:, :, :4] = 60000  # a bright strip (a cloud's edge): the 98th percentile lands on it
    profile.update(dtype="uint16", nodata=None)
    scene = tmp_path / "dim.tif"
    with rasterio.open(scene, "w", **profile) as out:
        out.write(dim)
    spreads = {}
    for views in (1, 4):  # 1: the stretch alone, as before stretched tiles took 4 views
        monkeypatch.setattr(contrast, "STRETCHED_VIEWS", views)
        out = tmp_path / f"x4_{views}.tif"
        command = ["sr", str(scene), "--allow-missing-ref", "--scale", "p2,p98", "--tile", "32"]
        summary = tmp_path / f"run_{views}.json"
        result = CliRunner().invoke(main, [*command, "-o", str(out), "--json", str(summary)])
        assert result.exit_code == 0, result.output
        tiles = json.loads(summary.read_text())["low_contrast_tiles"]
        assert tiles >= 1
        assert f"{tiles} of 4 tiles were low in contrast" in result.output
        with rasterio.open(out) as output:
            sr = output.read().astype(np.float64)[:, 16:-16, 16:-16]
        lr = torch.from_numpy(dim.astype(np.float64))[None]
        bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic")
        difference = torch.from_numpy(sr) - bicubic[0, :, 16:-16, 16:-16]
        # Columns past the first tile's: the tiles holding the bright strip span contrast
        # enough to run unstretched, with one view.
        spreads[views] = _phase_spread(difference[:, 16:, 144:].float())
    assert "ran stretched and over 4 views" in result.output
    assert spreads[4] < spreads[1] / 2, spreads
