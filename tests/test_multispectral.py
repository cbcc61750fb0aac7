"""Every band of a multispectral scene at 4x: the visible ones through the model, the
others by detail injection (`band_injection`), scored by Wald's protocol on the
bundled 7-band Landsat 7 window (USGS, public domain), with the shipped model."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.enums import ColorInterp

from rrsgan_geo.cli.main import main
from rrsgan_geo.training.wald import bicubic_of, degrade_scene, spectral_scores

LANDSAT = Path(__file__).resolve().parents[1] / "examples/data/landsat7_gsl_30m_7band.tif"
NAMES = ("B1", "B2", "B3", "B4", "B5", "B6_VCID_2", "B7")


def sr(scene: Path, out: Path, *args: str):
    command = ["sr", str(scene), "-o", str(out), "--allow-missing-ref", "--quiet", *args]
    return CliRunner().invoke(main, command)


def area_mean(image: np.ndarray) -> np.ndarray:
    bands, height, width = image.shape
    return image.reshape(bands, height // 4, 4, width // 4, 4).mean(axis=(2, 4))


@pytest.fixture(scope="module")
def wald(tmp_path_factory):
    """The window degraded 4x with the evaluation sensor, and super-resolved back by
    `sr --rgb-bands 3,2,1` with the shipped weights and its defaults."""
    folder = tmp_path_factory.mktemp("wald")
    truth = degrade_scene(LANDSAT, folder / "lr.tif")
    result = sr(folder / "lr.tif", folder / "sr.tif", "--rgb-bands", "3,2,1")
    assert result.exit_code == 0, result.output
    return folder, truth


def test_every_band_is_written_with_its_description_and_colour(wald):
    folder, _ = wald
    with rasterio.open(folder / "lr.tif") as lr, rasterio.open(folder / "sr.tif") as out:
        assert out.count == 7 and out.descriptions == NAMES
        assert out.colorinterp == lr.colorinterp
        assert out.dtypes == ("uint8",) * 7
        assert out.transform.a == pytest.approx(lr.transform.a / 4)
        assert out.transform.e == pytest.approx(lr.transform.e / 4)
        assert out.crs == lr.crs
        options = out.tags()["RRSGAN_OPTIONS"]
    assert '"rgb_bands": [3, 2, 1]' in options


def test_wald_protocol_every_band_at_least_bicubic(wald):
    """Each band's PSNR >= bicubic's (within 0.02 dB: the thermal band, coarser than its
    pixels, is left as it is), SAM and ERGAS below bicubic's; the visible bands gain."""
    folder, truth = wald
    with rasterio.open(folder / "sr.tif") as out:
        output = out.read().astype(np.float32) / 255
    bicubic = spectral_scores(bicubic_of(folder / "lr.tif"), truth)
    scores = spectral_scores(output, truth)
    for band, (ours, theirs) in enumerate(zip(scores["psnr"], bicubic["psnr"], strict=True)):
        assert ours >= theirs - 0.02, (NAMES[band], ours, theirs)
    assert min(s - b for s, b in zip(scores["psnr"][:3], bicubic["psnr"][:3], strict=True)) > 0.3
    assert scores["sam_degrees"] < bicubic["sam_degrees"]
    assert scores["ergas"] < bicubic["ergas"]


def test_each_band_keeps_its_lr_means(wald):
    """The injected bands' 4 x 4 means stay within 1 DN of their LR pixels on
    average, no further than the model's visible bands' do."""
    folder, _ = wald
    with rasterio.open(folder / "lr.tif") as lr, rasterio.open(folder / "sr.tif") as out:
        low = lr.read().astype(np.float32)
        means = area_mean(out.read().astype(np.float32))
    deviation = np.abs(means - low).mean(axis=(1, 2))
    assert (deviation[3:] < 1.0).all(), deviation
    assert (deviation[3:] <= deviation[:3].max()).all(), deviation


@pytest.mark.slow
def test_water_in_nir_is_not_sharpened(tmp_path):
    """Over the lake NIR (B4) does not follow the visible bands: it gets no detail,
    where over land it gets the visible bands' detail. Measured (mean DN added, land /
    water): 0.84 / 0.27 with phase 5's sensor network, 0.75 / 0.26 with phase 7's, which
    adds less over land: the water's stays, hence a factor of 2.5."""
    out = tmp_path / "x4.tif"
    assert sr(LANDSAT, out, "--rgb-bands", "3,2,1", "--bands", "4").exit_code == 0
    with rasterio.open(LANDSAT) as scene, rasterio.open(out) as result:
        nir = scene.read(4).astype(np.float32)
        injected = result.read(1).astype(np.float32) / 255
    bicubic = bicubic_of(LANDSAT)[3]
    water = np.kron(nir < 20, np.ones((4, 4), bool))
    land = np.kron(nir > 60, np.ones((4, 4), bool))
    assert water.mean() > 0.1 and land.mean() > 0.1
    detail = np.abs(injected - bicubic) * 255
    assert detail[land].mean() > 2.5 * detail[water].mean(), (
        detail[land].mean(),
        detail[water].mean(),
    )


def test_the_visible_bands_are_the_same_as_a_three_band_run(wald, tmp_path):
    folder, _ = wald
    three = tmp_path / "rgb.tif"
    assert sr(folder / "lr.tif", three, "--bands", "3,2,1").exit_code == 0
    with rasterio.open(three) as rgb, rasterio.open(folder / "sr.tif") as seven:
        assert (rgb.read(1) == seven.read(3)).all()  # B3
        assert (rgb.read(3) == seven.read(1)).all()  # B1


def test_visible_bands_are_found_by_colour_or_description(tmp_path):
    """RGB + NIR tagged red, green, blue: 4 bands, no flag. Descriptions naming the
    colours do the same; without either the message names --rgb-bands."""
    with rasterio.open(LANDSAT) as scene:
        profile, data = scene.profile, scene.read([3, 2, 1, 4], window=((0, 64), (0, 64)))
    profile.update(count=4, width=64, height=64, alpha="UNSPECIFIED")  # top-left: same transform
    tagged = tmp_path / "tagged.tif"
    with rasterio.open(tagged, "w", **profile) as out:
        out.write(data)
        out.colorinterp = [
            ColorInterp.red,
            ColorInterp.green,
            ColorInterp.blue,
            ColorInterp.undefined,
        ]
    profile.update(photometric="MINISBLACK")  # grey and undefined: no colours
    named = tmp_path / "named.tif"
    with rasterio.open(named, "w", **profile) as out:
        out.write(data[[3, 2, 1, 0]])
        out.descriptions = ("NIR", "Blue", "Green", "Red")
    for scene, nir in ((tagged, 4), (named, 1)):
        out = tmp_path / f"{scene.stem}_x4.tif"
        result = sr(scene, out)
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as written:
            assert written.count == 4
            assert '"rgb_bands": [' in written.tags()["RRSGAN_OPTIONS"]
            rgb_bands = written.tags()["RRSGAN_OPTIONS"].split('"rgb_bands": [')[1].split("]")[0]
            assert str(nir) not in rgb_bands.split(", ")
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", **profile) as out:
        out.write(data)
    result = sr(plain, tmp_path / "plain_x4.tif")
    assert result.exit_code == 1
    assert "none is tagged red, green or blue" in result.output and "--rgb-bands" in result.output
    assert not (tmp_path / "plain_x4.tif").exists()
