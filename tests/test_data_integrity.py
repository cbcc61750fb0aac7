"""No silent damage to real data: scaling, nodata, permissions, inputs, precision.

Each test runs `rrsgan-geo sr` on real imagery (the CC0 NEON tiles in examples/data)
and failed on the code before its fix."""

import os
import signal
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner
from rasterio.control import GroundControlPoint
from rasterio.enums import ColorInterp

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import OutputError
from rrsgan_geo.files import new_temp_file, write_text_atomically
from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.weight_files import WeightsMetadata, save_weights
from rrsgan_geo.sr.output import StreamingGeoTIFF, check_complete
from tests.conftest import REPO
from tests.rasters import lr_scene, mercator_reference, write_raster
from tests.test_sr_pipeline import TINY

EXAMPLE = REPO / "examples" / "data"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(RRSNet(TINY).state_dict(), path, WeightsMetadata(config=TINY, margin=4))
    return path


def run_sr(scene, out, weights, *args, ref=None):
    command = ["sr", str(scene), "-o", str(out), "--weights", str(weights), "--tile", "32"]
    command += ["--ref", str(ref)] if ref else ["--allow-missing-ref"]
    return CliRunner().invoke(main, [*command, *args])


def test_a_percentile_stretch_does_not_clip_bright_values(tmp_path, weights):
    """--scale p2,p98 once saturated the brightest 2 % (white roofs turned pink)."""
    with rasterio.open(lr_scene(tmp_path / "u8.tif")) as src:
        data, profile = src.read(), src.profile
    wide = (data.astype(np.uint16) * 40 + 1000).astype(np.uint16)  # a uint16 sensor range
    profile.update(dtype="uint16", nodata=None)
    scene = tmp_path / "u16.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(wide)
    result = run_sr(scene, tmp_path / "out.tif", weights, "--scale", "p2,p98")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out.tif") as out:
        sr = out.read()
        # --precision auto keeps a 16-bit output in fp32 whatever the hardware: bf16
        # would move it by about 1/255 of the stretch, tens of DN.
        assert out.tags()["RRSGAN_PRECISION"] == "fp32"
    assert "on cpu, fp32" in result.output
    for band, (lr_band, sr_band) in enumerate(zip(wide, sr, strict=True)):
        p98 = np.percentile(lr_band, 98)
        # Bright LR pixels come back above the stretch's top, as in the scene.
        assert sr_band.max() > p98 + 0.5 * (lr_band.max() - p98), band
        assert np.percentile(sr_band, 99.5) > p98


def test_valid_pixels_never_read_back_as_nodata_on_the_bundled_example(tmp_path, weights):
    """The README's own example gave 53 band-pixels at 255 (its nodata) though the
    scene's maximum is 245; here the example brightened to a maximum of 254 and random
    weights, whose overshoot at bright edges makes reaching the top certain."""
    with rasterio.open(EXAMPLE / "sjer_scene_0.4m_utm11n.tif") as src:
        pixels, profile = src.read(), src.profile
    scene = tmp_path / "bright_scene.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.clip(pixels.astype(np.float32) * 1.25 - 20, 0, 254).astype(np.uint8))
    ref = EXAMPLE / "sjer_reference_0.1m_epsg3857.tif"
    result = run_sr(scene, tmp_path / "out.tif", weights, ref=ref)
    assert result.exit_code == 0, result.output
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "out.tif") as out:
        assert out.nodata == src.nodata == 255
        valid = np.repeat(np.repeat(src.read_masks(1) > 0, 4, 0), 4, 1)
        sr = out.read()
    assert valid.all()  # every scene pixel is valid...
    assert (sr == 254).any()  # ...the model did reach the top (nudged off 255)
    assert not (sr == 255).any()


def test_a_band_is_nodata_only_where_that_band_is(tmp_path, weights):
    """Landsat 7 water: 0 (nodata) in two bands, valid in green. One nodata band
    once blanked all three (a bay came out 96 % nodata)."""
    with rasterio.open(lr_scene(tmp_path / "src.tif")) as src:
        data, profile = src.read(), src.profile
    data = np.clip(data, 1, 254)
    data[[0, 2], :, :40] = 0  # bands 1 and 3 missing on the left, band 2 valid
    profile.update(nodata=0)
    scene = tmp_path / "scene.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    result = run_sr(scene, tmp_path / "out.tif", weights)
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out.tif") as out:
        sr, mask = out.read(), out.dataset_mask()
    left = slice(0, 160)
    assert (sr[[0, 2], :, left] == 0).all()
    assert (sr[1, :, left] != 0).all()  # green survives
    assert (sr[:, :, 160:] != 0).all()
    assert (mask > 0).all()  # valid where any band is, as rasterio says


def test_a_float_scenes_nan_fill_stays_nan(tmp_path, weights):
    """Reflectance as float32 with NaN as nodata (a common Sentinel-2 L2A export): the
    NaN rows came out with made-up values, as _to_output only masked finite nodata."""
    with rasterio.open(lr_scene(tmp_path / "src.tif")) as src:
        data, crs, transform = src.read().astype(np.float32) / 255, src.crs, src.transform
    data[:, :10] = np.nan
    scene = write_raster(tmp_path / "reflectance.tif", data, crs, transform, nodata=np.nan)
    result = run_sr(scene, tmp_path / "out.tif", weights, "--scale", "0,1")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out.tif") as out:
        sr, nodata = out.read(), out.nodata
    assert np.isnan(nodata)
    assert np.isnan(sr[:, :40]).all()  # 4x the 10 NaN rows, every band
    assert np.isfinite(sr[:, 40:]).all()


@pytest.mark.parametrize("cog", [False, True], ids=["GeoTIFF", "COG"])
def test_a_scene_with_an_alpha_band_gives_an_output_masked_under_its_holes(tmp_path, weights, cog):
    """RGBA (a mosaic, a warp with -dstalpha): alpha 0 marks no data and there is no
    nodata value. The output carried no mask at all, so the transparent rows read back
    as valid made-up pixels."""
    with rasterio.open(lr_scene(tmp_path / "src.tif")) as src:
        data, profile = src.read(), src.profile
    alpha = np.full((1, *data.shape[1:]), 255, np.uint8)
    alpha[:, :10] = 0
    alpha[:, :, 90:] = 0
    profile.update(count=4, nodata=None)
    scene = tmp_path / "rgba.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.concatenate([data, alpha]))
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    result = run_sr(scene, tmp_path / "out.tif", weights, *(["--cog"] if cog else []))
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.count == 3 and out.nodata is None
        mask = out.dataset_mask()
    expected = np.repeat(np.repeat(alpha[0] > 0, 4, axis=0), 4, axis=1)
    assert np.array_equal(mask > 0, expected)
    assert not list(tmp_path.glob("*.msk"))  # inside the file, no sidecar


def test_the_scenes_scale_offset_and_units_go_with_its_values(tmp_path, weights):
    """The output stores the scene's DNs; Landsat Collection 2 surface reflectance says
    in its scale and offset how DNs become reflectance. The output dropped them, so a
    reader of it could no longer tell reflectance from counts."""
    with rasterio.open(lr_scene(tmp_path / "src.tif")) as src:
        data, profile = src.read(), src.profile
    profile.update(dtype="uint16", nodata=0)
    scene = tmp_path / "sr_l2.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data.astype(np.uint16) * 40 + 7000)
        dst.scales = (2.75e-05,) * 3
        dst.offsets = (-0.2,) * 3
        dst.units = ("reflectance",) * 3
    result = run_sr(scene, tmp_path / "out.tif", weights, "--scale", "7000,17200")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "out.tif") as out:
        assert out.scales == pytest.approx((2.75e-05,) * 3)
        assert out.offsets == pytest.approx((-0.2,) * 3)
        assert out.units == ("reflectance",) * 3
    plain = run_sr(lr_scene(tmp_path / "u8.tif"), tmp_path / "plain.tif", weights)
    assert plain.exit_code == 0, plain.output
    with rasterio.open(tmp_path / "plain.tif") as out:  # nothing written where none was
        assert out.scales == (1.0,) * 3 and out.offsets == (0.0,) * 3


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(tmp_path, weights, umask):
    previous = os.umask(umask)
    try:
        result = run_sr(lr_scene(tmp_path / "s.tif", window_px=128), tmp_path / "o.tif", weights)
        assert result.exit_code == 0, result.output
        converted = tmp_path / "w.safetensors"
        result = CliRunner().invoke(main, ["weights", "convert", str(weights), str(converted)])
        assert result.exit_code == 0, result.output
        report = tmp_path / "report.json"
        write_text_atomically(report, "{}")
    finally:
        os.umask(previous)
    for path in (tmp_path / "o.tif", converted, report):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_the_output_may_not_be_an_input(tmp_path, weights):
    scene = lr_scene(tmp_path / "scene.tif", window_px=128)
    ref = mercator_reference(tmp_path / "ref.tif")
    before = {p: p.read_bytes() for p in (scene, ref)}
    for target in (scene, ref, tmp_path / "." / "scene.tif"):
        result = run_sr(scene, target, weights, "--overwrite", ref=ref)
        assert result.exit_code == 1 and "is an input of this run" in result.output
        assert "Traceback" not in result.output
    assert all(p.read_bytes() == data for p, data in before.items())


def test_fp16_on_the_cpu_is_refused_with_the_reason(tmp_path, weights):
    scene = write_raster(
        tmp_path / "s.tif",
        np.full((3, 16, 16), 100, np.uint8),
        "EPSG:32617",
        rasterio.Affine(0.4, 0, 404000, 0, -0.4, 3285000),
    )
    result = run_sr(scene, tmp_path / "o.tif", weights, "--precision", "fp16", "--device", "cpu")
    assert result.exit_code == 1 and "16x slower" in result.output
    assert not (tmp_path / "o.tif").exists() and not list(tmp_path.glob(".*part*"))


def test_only_geotiff_names_are_accepted(tmp_path, weights):
    scene = lr_scene(tmp_path / "scene.tif", window_px=128)
    result = run_sr(scene, tmp_path / "x.png", weights)
    assert result.exit_code == 1 and "name it .tif or .tiff" in result.output
    assert not (tmp_path / "x.png").exists()


def test_a_dead_runs_part_file_is_removed_by_the_next_run(tmp_path, weights):
    """After a SIGKILL the hidden .part file stayed forever; the next run on the same
    output removes it, and leaves a live run's file alone."""
    scene = lr_scene(tmp_path / "scene.tif", window_px=128)
    dead = tmp_path / ".o.tif.4999999.abc123.part.tif"  # beyond any pid in use here
    live = tmp_path / f".o.tif.{os.getpid()}.def456.part.tif"
    for path in (dead, live):
        path.write_bytes(b"half a GeoTIFF")
    result = run_sr(scene, tmp_path / "o.tif", weights)
    assert result.exit_code == 0, result.output
    assert not dead.exists() and live.exists()


def test_batch_creates_no_output_folder_for_bad_input(tmp_path, weights):
    out = tmp_path / "out"
    ref = EXAMPLE / "sjer_reference_0.1m_epsg3857.tif"
    command = ["batch", str(tmp_path / "missing_*.tif"), "--ref", str(ref), "-o", str(out)]
    result = CliRunner().invoke(main, [*command, "--weights", str(weights)])
    assert result.exit_code == 1 and "matches no file" in result.output
    assert not out.exists()


@pytest.mark.parametrize("role", ["scene", "reference"])
def test_a_paletted_raster_is_refused_with_the_way_out(tmp_path, weights, role):
    """A land-cover map's values are colour-table indices: super-resolved as grey levels
    they came out as other classes, silently."""
    with rasterio.open(lr_scene(tmp_path / "rgb.tif")) as src:
        profile = src.profile
    profile.update(count=1, nodata=None, photometric="palette")
    classes = tmp_path / "classes.tif"
    with rasterio.open(classes, "w", **profile) as dst:
        dst.write((np.arange(100 * 100).reshape(1, 100, 100) % 4).astype(np.uint8))
        dst.write_colormap(1, {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)})
    scene, ref = (classes, None) if role == "scene" else (tmp_path / "rgb.tif", classes)
    result = run_sr(scene, tmp_path / "o.tif", weights, ref=ref)
    assert result.exit_code == 1 and f"{role} {classes} band 1 is paletted" in result.output
    assert "gdal_translate -expand rgb" in result.output and not (tmp_path / "o.tif").exists()


def test_a_scene_placed_by_ground_control_points_is_refused_with_the_way_out(tmp_path, weights):
    """A level-1 product or a scanned map is georeferenced by GCPs, with no grid: the
    message said 'has no CRS', which sent users looking for a CRS it does have."""
    gcps = [
        GroundControlPoint(row, col, 252000 + 0.4 * col, 4107400 - 0.4 * row)
        for row in (0, 100)
        for col in (0, 100)
    ]
    scene = tmp_path / "l1.tif"
    profile = {"driver": "GTiff", "width": 100, "height": 100, "count": 3, "dtype": "uint8"}
    with rasterio.open(scene, "w", **profile, gcps=gcps, crs="EPSG:32611") as dst:
        dst.write(np.full((3, 100, 100), 7, np.uint8))
    result = run_sr(scene, tmp_path / "o.tif", weights)
    assert result.exit_code == 1
    assert "is placed by 4 ground control points, not on a grid" in result.output
    assert "gdalwarp -t_srs EPSG:32611 IN.tif OUT.tif" in result.output


def test_a_scene_placed_by_rpcs_is_refused_with_the_way_out(tmp_path, weights):
    """A satellite level-1 scene carries its sensor model (RPCs) and no grid."""
    from rasterio.rpc import RPC

    identity = [1.0] + [0.0] * 19
    rpc = RPC(
        height_off=100, height_scale=500, lat_off=36.8, lat_scale=0.01, long_off=-119.7,
        long_scale=0.01, line_off=50, line_scale=50, samp_off=50, samp_scale=50,
        line_num_coeff=[0.0, 0.0, -1.0] + [0.0] * 17, line_den_coeff=identity,
        samp_num_coeff=[0.0, 1.0] + [0.0] * 18, samp_den_coeff=identity,
    )  # fmt: skip
    scene = tmp_path / "l1.tif"
    profile = {"driver": "GTiff", "width": 100, "height": 100, "count": 3, "dtype": "uint8"}
    with rasterio.open(scene, "w", **profile, rpcs=rpc) as dst:
        dst.write(np.full((3, 100, 100), 7, np.uint8))
    result = run_sr(scene, tmp_path / "o.tif", weights)
    assert result.exit_code == 1, result.output
    assert "is placed by its sensor model (RPCs), not on a grid" in result.output
    assert "gdalwarp -rpc" in result.output


def test_a_seven_band_scene_must_say_which_bands_are_visible(tmp_path, weights):
    """A 7-band Landsat-like file once silently got bands 1, 2, 3: untagged, it must
    name its visible bands (all 7 are written) or pick 3 bands to write."""
    with rasterio.open(lr_scene(tmp_path / "rgb.tif", window_px=128)) as src:
        data, profile = src.read(), src.profile
    seven = np.concatenate([data, data, data[:1]])
    profile.update(count=7)
    scene = tmp_path / "seven.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(seven)
        dst.descriptions = tuple(f"B{i}" for i in range(1, 8))
    result = run_sr(scene, tmp_path / "o.tif", weights)
    assert result.exit_code == 1 and "has 7 bands (1=B1" in result.output
    assert "--rgb-bands 3,2,1" in result.output
    result = run_sr(scene, tmp_path / "o.tif", weights, "--bands", "3,2,1", "--threads", "1")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.descriptions == ("B3", "B2", "B1")
    result = run_sr(scene, tmp_path / "all.tif", weights, "--rgb-bands", "3,2,1")
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "all.tif") as out:
        assert out.count == 7 and out.descriptions == tuple(f"B{i}" for i in range(1, 8))


def test_batch_takes_the_processing_options_of_sr(tmp_path, weights):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    lr_scene(scenes / "a.tif", window_px=128)
    out = tmp_path / "out"
    ref = mercator_reference(tmp_path / "ref.tif")
    command = ["batch", str(scenes), "--ref", str(ref), "-o", str(out), "--weights", str(weights)]
    options = ["--bands", "3,2,1", "--cog", "--co", "LEVEL=1", "--ref-resampling", "cubic"]
    result = CliRunner().invoke(main, [*command, "--tile", "32", "--threads", "1", *options])
    assert result.exit_code == 0, result.output
    with rasterio.open(out / "a_x4.tif") as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"  # --cog reached it
        tags = dataset.tags()
    assert tags["RRSGAN_REF_RESAMPLING"] == "cubic"
    # Provenance names the files, never a local path.
    assert tags["RRSGAN_SCENE"] == "a.tif" and tags["RRSGAN_REFERENCE"] == "ref.tif"


def test_an_all_nodata_scene_is_refused(tmp_path, weights):
    with rasterio.open(lr_scene(tmp_path / "src.tif", window_px=128)) as src:
        profile = src.profile
    profile.update(nodata=7)
    scene = tmp_path / "empty.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.full((3, profile["height"], profile["width"]), 7, np.uint8))
    result = run_sr(scene, tmp_path / "o.tif", weights)
    assert result.exit_code == 1 and "has no valid pixel" in result.output
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--co", "COMPRESS=BOGUS"), "unexpected value for COMPRESS"),
        (("--cog", "--co", "BANANA=1"), "COG does not support creation option BANANA"),
    ],
)
def test_creation_options_gdal_warns_about_are_errors(tmp_path, weights, args, message):
    """COMPRESS=BOGUS was accepted and the output silently uncompressed."""
    scene = lr_scene(tmp_path / "scene.tif", window_px=128)
    result = run_sr(scene, tmp_path / "o.tif", weights, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "o.tif").exists()


def test_a_ctrl_c_the_moment_a_temp_file_appears_cannot_leak_it(tmp_path, monkeypatch):
    """The interrupt lands right after mkstemp created the file, before anything
    recorded it (where test_interrupt_mid_run_leaves_no_file's Ctrl-C sometimes landed
    under load): it is held until the file is recorded, so the caller's cleanup, which
    removes what the record lists, removes it."""
    created = tempfile.mkstemp

    def mkstemp_then_interrupted(*args, **kwargs):
        result = created(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_interrupted)
    record: list[Path] = []
    with pytest.raises(KeyboardInterrupt):
        new_temp_file(tmp_path / "out.tif", ".part.tif", record)
    assert len(record) == 1 and record[0].exists()  # recorded: cleanup can find it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored

    with pytest.raises(KeyboardInterrupt):  # the same moment in the output writer
        StreamingGeoTIFF(tmp_path / "out.tif", {"driver": "GTiff"}).__enter__()
    assert list(tmp_path.iterdir()) == [record[0]]


def test_a_report_is_written_whole_or_not_at_all(tmp_path):
    """A JSON report that cannot be put in place (here a folder holds its name) is an
    OutputError naming it, and leaves no temp file behind."""
    (tmp_path / "report.json").mkdir()
    with pytest.raises(OutputError, match="cannot write .*report.json"):
        write_text_atomically(tmp_path / "report.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_an_output_the_disk_could_not_hold_is_an_error_not_a_published_file(
    tmp_path, weights, monkeypatch
):
    """A full disk: GDAL only prints its write errors, and the run said "wrote ..." and
    published a file that could not be opened (seen on a 200 kB tmpfs). The written
    file is checked before it is published; here its end is cut off, as a full disk
    leaves it."""
    from rrsgan_geo.sr import output

    real_check = output.check_complete

    def disk_filled_up(path, destination, sparse_ok=False):
        with open(path, "r+b") as written:
            written.truncate(path.stat().st_size // 2)
        real_check(path, destination, sparse_ok)

    monkeypatch.setattr(output, "check_complete", disk_filled_up)
    scene = lr_scene(tmp_path / "s.tif", window_px=128)
    result = run_sr(scene, tmp_path / "o.tif", weights)
    assert result.exit_code == 1 and "writing" in result.output and "failed" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.tif").exists() and not list(tmp_path.glob(".o.tif*"))


def test_a_gdal_error_while_writing_the_cog_is_one_line(tmp_path, weights, monkeypatch):
    """The COG copy on a full disk raised GDAL's own error as a traceback."""
    from rasterio._err import CPLE_AppDefinedError

    from rrsgan_geo.sr import output

    def copy_on_a_full_disk(*_args, **_kwargs):
        raise CPLE_AppDefinedError(1, 1, "TIFFAppendToStrip:Seek error at scanline 0")

    monkeypatch.setattr(output.rasterio.shutil, "copy", copy_on_a_full_disk)
    scene = lr_scene(tmp_path / "s.tif", window_px=128)
    result = run_sr(scene, tmp_path / "o.tif", weights, "--cog")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "failed: TIFFAppendToStrip:Seek error at scanline 0" in result.output
    assert not (tmp_path / "o.tif").exists() and not list(tmp_path.glob(".o.tif*"))


def test_check_complete_finds_a_missing_block_unless_sparse_files_were_asked_for(tmp_path):
    data = np.zeros((1, 512, 512), np.uint8)
    data[:, :256, :256] = 7  # three of the four blocks empty: SPARSE_OK leaves them out
    transform = rasterio.Affine(0.4, 0, 404000, 0, -0.4, 3285000)
    tiling = {"tiled": True, "blockxsize": 256, "blockysize": 256, "sparse_ok": True}
    sparse = write_raster(tmp_path / "sparse.tif", data, "EPSG:32617", transform, **tiling)
    check_complete(sparse, sparse, sparse_ok=True)
    with pytest.raises(OutputError, match="block 1,0 of band 1 is missing"):
        check_complete(sparse, sparse)


@pytest.mark.parametrize("damaged", ["scene", "reference"])
def test_a_truncated_input_is_one_line_naming_it(tmp_path, weights, damaged):
    """A file cut short (a download that stopped): planning reads pixels for its
    statistics, and rasterio's 'Read failed. See previous exception for details.'
    came out as the whole message, naming neither the file nor what failed."""
    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif")
    cut = scene if damaged == "scene" else ref
    with open(cut, "r+b") as file:
        file.truncate(cut.stat().st_size * 6 // 10)
    result = run_sr(scene, tmp_path / "o.tif", weights, ref=ref)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"reading {damaged} {cut.name} failed: " in result.output
    assert "previous exception" not in result.output
    assert not (tmp_path / "o.tif").exists() and not list(tmp_path.glob(".o.tif*"))
