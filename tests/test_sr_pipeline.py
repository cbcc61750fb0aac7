"""`sr` through the library on real GeoTIFFs: grids, reprojection, seams, coverage."""

import dataclasses
import json
import threading

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.enums import Resampling

from rrsgan_geo.devices import default_batch as pipeline_default_batch
from rrsgan_geo.geo.locations import HttpOptions
from rrsgan_geo.model import GeneratorConfig, RRSNet
from rrsgan_geo.model.degradation import down_up_4x
from rrsgan_geo.sr import planning
from rrsgan_geo.sr.inference import model_inputs
from rrsgan_geo.sr.pipeline import Generator, co_registered_plan, super_resolve
from rrsgan_geo.sr.planning import SROptions, plan_sr
from rrsgan_geo.sr.planning import default_tile as pipeline_default_tile
from rrsgan_geo.sr.sources import BLOCKWISE_WARPING, MAX_SPLIT_REFERENCES, TileReader, WarpedView
from rrsgan_geo.sr.tiling import TileLayout, fitted_tile
from tests.conftest import REPO, SHARED
from tests.rasters import lr_scene, mercator_reference, neon_path, write_raster

TINY = GeneratorConfig(nf=8, n_blocks=1, groups=2)
EXAMPLE = REPO / "examples" / "data"


def tiny_generator(margin: int = 8) -> Generator:
    """A fixed random-weight model with non-zero offset predictors, so the deformable
    sampling is exercised (a fresh layer would sample the regular grid)."""
    torch.manual_seed(0)
    model = RRSNet(TINY)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "conv_offset_mask"):
                module.conv_offset_mask.weight.normal_(std=0.01)
    return Generator(model, "tiny-random", "0" * 64, margin)


def run(scene, ref, out, margin=8, **options) -> tuple:
    opts = SROptions(**options)
    plan = plan_sr(scene, ref, out, opts, margin)
    return plan, super_resolve(plan, tiny_generator(margin), opts)


def test_utm_scene_with_mercator_reference_is_exactly_4x(tmp_path):
    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref3857.tif", shift_east_m=1.0)
    plan, report = run(scene, ref, tmp_path / "out.tif", tile=32)
    with rasterio.open(scene) as lr, rasterio.open(tmp_path / "out.tif") as sr:
        assert sr.crs == lr.crs
        assert sr.transform == lr.transform @ Affine.scale(0.25)
        assert (sr.width, sr.height) == (4 * lr.width, 4 * lr.height)
        assert sr.nodata == lr.nodata == 255
        assert sr.dtypes == lr.dtypes
        assert sr.count == 3
        tags = sr.tags()
        assert tags["RRSGAN_MODEL_SHA256"] == "0" * 64
        assert tags["RRSGAN_REFERENCE"] == ref.name  # a name, never a local path
        assert sr.profile["tiled"] and sr.profile["compress"] == "deflate"
    assert 0.97 < report.pixel_coverage <= 1.0
    assert report.tiles == report.tiles_run == 16
    assert not list(tmp_path.glob(".*part*"))


def first_tile_inputs(scene, ref, tmp_path):
    """What the reader hands the model for the top-left tile (96 LR px, margin 4)."""
    plan = plan_sr(scene, ref, tmp_path / "o.tif", SROptions(tile=96), 4)
    reader = TileReader(scene, plan.model_bands, plan.model_scaling, plan.layout, plan.references)
    try:
        return reader.read(plan.layout.tiles_in_row(0)[:1])
    finally:
        reader.close()


def test_reference_is_cropped_by_coordinates(tmp_path):
    """The 3857 reference, shifted 1 m east, lands on the UTM SR grid 10 px (0.1 m) east."""
    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif", shift_east_m=1.0)
    warped = first_tile_inputs(scene, ref, tmp_path).ref[0][16:-16, 16:-16]
    with rasterio.open(neon_path()) as src:
        truth = src.read(1).astype(np.float32) / 255
    errors = {
        dx: np.abs(warped[40:360, 60:360] - truth[40:360, 60 - dx : 360 - dx]).mean()
        for dx in range(0, 20)
    }
    assert min(errors, key=errors.get) == 10
    assert errors[10] < 0.5 * errors[0]


@pytest.mark.parametrize(
    "shape_transform",
    [
        ((37, 23), Affine(0.4, 0, 404000, 0, -0.4, 3285000)),
        ((21, 30), Affine(0.35, 0, 404000, 0, -0.5, 3285000)),
        ((25, 19), Affine(0.4, 0, 404000, 0, -0.4, 3285000) @ Affine.rotation(30)),
    ],
    ids=["odd", "non-square-pixels", "rotated"],
)
def test_odd_non_square_and_rotated_scenes_come_out_exactly_4x(tmp_path, shape_transform):
    (width, height), transform = shape_transform
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, height, width), dtype=np.uint8)
    scene = write_raster(tmp_path / "s.tif", data, "EPSG:32617", transform)
    ref_data = rng.integers(0, 255, (3, 200, 200), dtype=np.uint8)
    ref = write_raster(
        tmp_path / "r.tif", ref_data, "EPSG:32617", Affine(0.2, 0, 403990, 0, -0.2, 3285010)
    )
    _, report = run(scene, ref, tmp_path / "out.tif", tile=16)
    with rasterio.open(tmp_path / "out.tif") as sr:
        assert (sr.width, sr.height) == (4 * width, 4 * height)
        assert sr.transform == transform @ Affine.scale(0.25)
    assert report.pixel_coverage > 0


@pytest.mark.slow
def test_tiling_invariance(tmp_path):
    """Small tiles and one whole-scene pass agree within 1e-4 (float) in fp32; in bf16
    (`--precision auto` on hardware that computes it) within 1 DN, as bf16 rounds the
    same pixel differently in different tiles (measured: 1.8 % of pixels here), and
    within 1 DN of fp32."""
    scene = lr_scene(tmp_path / "scene.tif", factor=4, window_px=256)  # 64 x 64 LR
    ref = mercator_reference(tmp_path / "ref.tif", shift_east_m=0.5)
    margin = 36  # the tiny model's receptive field reaches ~18 LR px: crop margin/2
    common = {"scale": "0,255.0001", "ref_scale": "0,255.0001"}  # float scaling: exact
    outputs = {}
    for precision in ("fp32", "bf16"):
        for name, tile in (("tiled", 16), ("whole", 64)):
            out = tmp_path / f"{name}_{precision}.tif"
            run(scene, ref, out, margin=margin, tile=tile, precision=precision, **common)
            with rasterio.open(out) as dataset:
                outputs[name, precision] = dataset.read().astype(np.float32)
    tiled, whole = outputs["tiled", "fp32"], outputs["whole", "fp32"]
    assert np.abs(tiled - whole).max() <= 1  # uint8 output: rounding can differ by one
    assert (tiled != whole).mean() < 1e-3
    assert np.abs(outputs["tiled", "bf16"] - outputs["whole", "bf16"]).max() <= 1
    assert np.abs(outputs["tiled", "bf16"] - whole).max() <= 1


@pytest.mark.slow
def test_tiling_invariance_float(tmp_path):
    """The same on a float32 scene, where no rounding hides differences; the relevance
    map, blended as a 4th band, is tiling-invariant too."""
    with rasterio.open(lr_scene(tmp_path / "u8.tif", window_px=256)) as src:
        data = src.read().astype(np.float32)
        transform, crs = src.transform, src.crs
    scene = write_raster(tmp_path / "f32.tif", data, crs, transform)
    ref = mercator_reference(tmp_path / "ref.tif")
    options = {"scale": "0,255", "margin": 36, "precision": "fp32"}
    for name, tile in (("tiled", 16), ("whole", 64)):
        relevance = tmp_path / f"{name}_relevance.tif"
        run(scene, ref, tmp_path / f"{name}.tif", tile=tile, relevance_map=relevance, **options)
    with rasterio.open(tmp_path / "tiled.tif") as a, rasterio.open(tmp_path / "whole.tif") as b:
        assert a.dtypes[0] == "float32"
        difference = np.abs(a.read() - b.read()) / 255
    assert difference.max() < 1e-4
    with (
        rasterio.open(tmp_path / "tiled_relevance.tif") as a,
        rasterio.open(tmp_path / "whole_relevance.tif") as b,
    ):
        tiled, whole = a.read(1), b.read(1)
    assert whole.std() > 1e-4  # the tiny model's gate varies: a real comparison
    assert np.abs(tiled - whole).max() < 1e-4


@pytest.mark.slow
def test_half_covered_scene_uses_lr_ux4_where_the_reference_is_missing(tmp_path):
    scene = lr_scene(tmp_path / "scene.tif")
    half = mercator_reference(tmp_path / "half.tif", crop_right=0.5)
    # One blur for both runs: measured, it is the scene's, and the scene's is everywhere.
    plan, report = run(scene, half, tmp_path / "half_out.tif", tile=32, scene_blur="0.5")
    assert plan.footprint_coverage == pytest.approx(0.5, abs=0.03)
    assert report.pixel_coverage == pytest.approx(0.5, abs=0.03)
    run(scene, None, tmp_path / "none_out.tif", tile=32, allow_missing_ref=True, scene_blur="0.5")
    with (
        rasterio.open(tmp_path / "half_out.tif") as a,
        rasterio.open(tmp_path / "none_out.tif") as b,
    ):
        with_half, without = a.read().astype(int), b.read().astype(int)
    # Right half, away from the reference's edge by the receptive field: the same as a
    # run without any reference. Left half: the reference changed the result.
    right = np.s_[:, :, 280:]
    left = np.s_[:, :, :120]
    assert np.abs(with_half[right] - without[right]).max() <= 1
    changed_left = (with_half[left] != without[left]).mean()
    changed_right = (with_half[right] != without[right]).mean()
    assert changed_left > 10 * max(changed_right, 1e-4)


def test_missing_reference_pixels_take_lr_ux4(tmp_path):
    scene = lr_scene(tmp_path / "scene.tif")
    half = mercator_reference(tmp_path / "half.tif", crop_right=0.5)
    item = first_tile_inputs(scene, half, tmp_path)
    _, lr_ux4, ref, ref_dux4 = model_inputs(item, torch.device("cpu"))
    valid = torch.from_numpy(item.ref_valid)
    assert 0.3 < valid.float().mean() < 0.7
    assert torch.equal(ref[0][:, ~valid], lr_ux4[0][:, ~valid])
    assert torch.equal(ref[0][:, valid], torch.from_numpy(item.ref)[:, valid])
    torch.testing.assert_close(ref_dux4, down_up_4x(ref))


SENTINEL2 = SHARED / "data" / "sentinel2"


def test_every_output_band_has_a_description(tmp_path):
    """The scene's band descriptions where it has them, else the scene band each output
    band was made from, so that a reordered --bands stays legible in the output."""
    scene = lr_scene(tmp_path / "scene.tif")
    with rasterio.open(scene, "r+") as dataset:
        assert dataset.descriptions == (None, None, None)
        dataset.set_band_description(2, "green")
    run(
        scene,
        mercator_reference(tmp_path / "ref.tif"),
        tmp_path / "out.tif",
        tile=32,
        scene_bands=(3, 2, 1),
    )
    with rasterio.open(tmp_path / "out.tif") as sr:
        assert sr.descriptions == ("band 3", "green", "band 1")


def test_single_band_uint16_scene_with_percentile_stretch_and_nodata(tmp_path):
    """A real bi-temporal pair: the 29 May Sentinel-2 band averaged to 40 m is the
    scene, the 8 June 10 m image the reference. One uint16 band, nodata=0 along the
    tile's edge, a whole-scene percentile stretch: the output is one uint16 band at
    10 m, masked where the scene is, in the scene's units."""
    target = SENTINEL2 / "tgt_S2A_20160529T153631_T33UUU_sub.tif"
    reference = SENTINEL2 / "ref_S2A_20160608T153121_T33UUU_sub.tif"
    if not target.is_file():
        pytest.skip(f"shared Sentinel-2 pair absent ({SENTINEL2})")
    with rasterio.open(target) as src:
        window = rasterio.windows.Window(60, 1800, 160, 192)  # crosses the nodata edge
        truth = src.read(1, window=window)
        lr = src.read(1, window=window, out_shape=(48, 40), resampling=Resampling.average)
        lr[src.read_masks(1, window=window, out_shape=(48, 40)) == 0] = 0
        transform = src.window_transform(window) @ Affine.scale(4)
        scene = write_raster(tmp_path / "s2_40m.tif", lr[None], src.crs, transform, nodata=0)
    assert 0.02 < (lr == 0).mean() < 0.5
    plan, report = run(
        scene, reference, tmp_path / "out.tif", tile=16, scale="p2,p98", ref_scale="p2,p98"
    )
    assert plan.scaling.method == "percentile p2,p98" and plan.scaling.high[0] > 1000
    with rasterio.open(tmp_path / "out.tif") as out:
        assert (out.count, out.dtypes[0], out.nodata) == (1, "uint16", 0)
        assert out.transform == transform @ Affine.scale(0.25)
        assert out.res == (10.0, 10.0)
        assert "percentile" in out.tags()["RRSGAN_SCALING"]
        sr = out.read(1)
    scene_valid = np.repeat(np.repeat(lr > 0, 4, axis=0), 4, axis=1)
    assert (sr[~scene_valid] == 0).all() and (sr[scene_valid] > 0).all()
    # In the scene's units: close to the 10 m truth where both are valid.
    both = scene_valid & (truth > 0)
    assert np.corrcoef(sr[both].astype(float), truth[both].astype(float))[0, 1] > 0.8
    assert report.pixel_coverage > 0.5


@pytest.mark.slow
def test_a_folder_of_reference_tiles_in_mixed_crss_is_composited(tmp_path):
    """Half a reference covers half the scene; a folder holding that half (Web
    Mercator) and the other half (UTM) covers all of it, tile by tile."""
    scene = lr_scene(tmp_path / "scene.tif")
    tiles = tmp_path / "ref_tiles"
    tiles.mkdir()
    left = mercator_reference(tiles / "left_3857.tif", crop_right=0.5)
    with rasterio.open(neon_path()) as src:
        right_half = src.read()[:, :, 190:]
        write_raster(
            tiles / "right_utm.tif",
            right_half,
            src.crs,
            src.transform @ Affine.translation(190, 0),
            nodata=src.nodata,
        )
    half_plan, half = run(scene, left, tmp_path / "half.tif", tile=32)
    plan, report = run(scene, tiles, tmp_path / "both.tif", tile=32)
    assert len(plan.references) == 2 and len(half_plan.references) == 1
    assert half.pixel_coverage == pytest.approx(0.5, abs=0.03)
    assert plan.footprint_coverage == pytest.approx(1.0, abs=0.01)
    assert report.pixel_coverage > 0.97
    with rasterio.open(tmp_path / "both.tif") as out:
        assert len(out.tags()["RRSGAN_REFERENCE"].split(";")) == 2


def read_strip(scene, ref, tmp_path, tiles: slice, scale: str | None = None):
    """What the reader hands the model for tiles `tiles` of the first tile row
    (tile 24 LR px, margin 4: a 100 x 100 LR scene has 5 per row)."""
    options = SROptions(tile=24, scale=scale)
    plan = plan_sr(scene, ref, tmp_path / "o.tif", options, 4)
    reader = TileReader(scene, plan.model_bands, plan.model_scaling, plan.layout, plan.references)
    try:
        return reader.read(plan.layout.tiles_in_row(1)[tiles])
    finally:
        reader.close()


def test_a_strip_of_tiles_holds_exactly_what_each_tile_reads_alone(tmp_path):
    """Strips read the tiles' shared overlaps once; each tile's window of the strip
    equals that tile read on its own, and the degradations, made once per strip,
    equal the per-tile ones except within the bicubic kernel's reach of the seams
    between tiles (where the strip has real neighbours instead of edge replication)."""
    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif", crop_right=0.6)  # valid and missing
    strip = read_strip(scene, ref, tmp_path, slice(0, 4))
    assert 0.3 < strip.ref_valid.mean() < 0.9
    strip_inputs = model_inputs(strip, torch.device("cpu"))
    assert strip_inputs[0].shape == (4, 3, 32, 32)
    assert [t.shape[-1] for t in strip_inputs[1:]] == [128] * 3
    for index in range(4):
        alone = read_strip(scene, ref, tmp_path, slice(index, index + 1))
        np.testing.assert_array_equal(strip.lr[:, :, strip.lr_columns(index)], alone.lr)
        alone_inputs = model_inputs(alone, torch.device("cpu"))
        torch.testing.assert_close(strip_inputs[0][index], alone_inputs[0][0])
        strip_valid = strip.ref_valid[:, strip.sr_columns(index)]
        if alone.ref is None:  # the tile is past the reference's edge
            assert not strip_valid.any()
        else:
            np.testing.assert_array_equal(strip_valid, alone.ref_valid)
            strip_ref = strip.ref[:, :, strip.sr_columns(index)]
            np.testing.assert_array_equal(strip_ref[:, strip_valid], alone.ref[:, strip_valid])
            valid = torch.from_numpy(alone.ref_valid)
            assert torch.equal(strip_inputs[2][index][:, valid], alone_inputs[2][0][:, valid])
        inner = np.s_[:, :, 24:-24]  # beyond the kernels' reach of the tile's sides
        for made_per_strip, made_per_tile in zip(strip_inputs[1:], alone_inputs[1:], strict=True):
            torch.testing.assert_close(made_per_strip[index][inner], made_per_tile[0][inner])


def test_tiles_without_valid_lr_are_left_out_of_the_model_inputs(tmp_path):
    """The strip's tiles are a view when all are run; with one empty tile the others
    are copied out, and they are the same pixels."""
    with rasterio.open(lr_scene(tmp_path / "full.tif")) as src:
        data, profile = src.read(), src.profile
    data[:, 20:52, 20:52] = 255  # tile (1, 1) with its margins: nodata only
    profile.update(nodata=255)
    scene = write_raster(
        tmp_path / "holed.tif", data, profile["crs"], profile["transform"], nodata=255
    )
    ref = mercator_reference(tmp_path / "ref.tif")
    strip = read_strip(scene, ref, tmp_path, slice(0, 3))
    assert [strip.is_empty(index) for index in range(3)] == [False, True, False]
    kept = model_inputs(strip, torch.device("cpu"))
    assert kept[0].shape[0] == 2
    full = read_strip(lr_scene(tmp_path / "again.tif"), ref, tmp_path, slice(0, 3))
    assert not any(full.is_empty(index) for index in range(3))
    every = model_inputs(full, torch.device("cpu"))
    torch.testing.assert_close(kept[2], every[2][[0, 2]])


@pytest.mark.slow
def test_several_reader_threads_give_the_same_output(tmp_path, monkeypatch):
    """Strips read by a pool of readers are consumed in order: the file is identical
    to the one a single reader makes."""
    import rrsgan_geo.sr.pipeline as pipeline

    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif")
    monkeypatch.setattr(pipeline, "reader_threads", lambda: 1)
    run(scene, ref, tmp_path / "one.tif", tile=16, batch_size=2)
    monkeypatch.setattr(pipeline, "reader_threads", lambda: 3)
    run(scene, ref, tmp_path / "three.tif", tile=16, batch_size=2)
    with rasterio.open(tmp_path / "one.tif") as a, rasterio.open(tmp_path / "three.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


def test_a_reference_warped_in_column_parts_reads_what_one_view_reads(tmp_path, monkeypatch):
    """Each strip's reference, warped by three threads in column parts (cut at the
    VRT's block edges), is the same pixels and validity as one view warps, strips
    that span one part or several alike."""
    # The scene at the reference's own pixel size, for its width: only reading is tested
    # here, so the reference is kept, as it would not be in a run.
    monkeypatch.setattr(planning, "NO_FINER_THAN_SCENE", float("inf"))
    scene = lr_scene(tmp_path / "scene.tif", factor=1)  # 400^2 LR: 1664 SR columns
    ref = mercator_reference(tmp_path / "ref.tif", crop_right=0.4)  # valid and missing
    plan = plan_sr(scene, ref, tmp_path / "o.tif", SROptions(tile=64), 8)
    readers = {
        parts: TileReader(
            scene,
            plan.model_bands,
            plan.model_scaling,
            plan.layout,
            plan.references,
            column_parts=parts,
        )
        for parts in (1, 3)
    }
    try:
        assert readers[3].references[0][1].starts == [0, 512, 1024]
        strips = [plan.layout.tiles_in_row(row) for row in range(plan.layout.rows)]
        strips += [plan.layout.tiles_in_row(2)[:2], plan.layout.tiles_in_row(3)[3:5]]
        for tiles in strips:
            with rasterio.Env(**BLOCKWISE_WARPING):  # as `sr` reads
                one, split = (readers[parts].read(tiles) for parts in (1, 3))
            assert 0.0 < one.ref_valid.mean() < 1.0 or len(tiles) < plan.layout.cols
            np.testing.assert_array_equal(split.ref, one.ref)
            np.testing.assert_array_equal(split.ref_valid, one.ref_valid)
    finally:
        for reader in readers.values():
            reader.close()


def test_a_reader_shares_its_warp_threads_and_splits_few_references(tmp_path, monkeypatch):
    """The helper threads are the reader's, one per extra part whatever the number of
    references; a mosaic of more than `MAX_SPLIT_REFERENCES` tiles keeps one VRT each
    (open files stay one per tile); closing the reader ends its threads."""
    # The scene at the reference's own pixel size, for its width: only reading is tested
    # here, so the reference is kept, as it would not be in a run.
    monkeypatch.setattr(planning, "NO_FINER_THAN_SCENE", float("inf"))
    scene = lr_scene(tmp_path / "scene.tif", factor=1)
    refs = [mercator_reference(tmp_path / f"ref{i}.tif") for i in range(MAX_SPLIT_REFERENCES + 1)]
    plan = plan_sr(scene, refs, tmp_path / "o.tif", SROptions(tile=64), 8)
    specs = plan.references
    args = (scene, plan.model_bands, plan.model_scaling, plan.layout)
    few = TileReader(*args, specs[:2], column_parts=3)
    many = TileReader(*args, specs, column_parts=3)
    try:
        assert len(few.helpers) == 2
        assert all(view.helpers is few.helpers for _, view in few.references)
        assert many.helpers == []
        assert all(isinstance(view, WarpedView) for _, view in many.references)
    finally:
        few.close()
        many.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("rrsgan-warp")]


def test_the_output_does_not_depend_on_how_the_reference_is_read(tmp_path, monkeypatch):
    """One strip spanning the whole padded view (528 SR columns here) read by one VRT or
    in two column parts gives the same file: GDAL warps a whole-width request through
    its own dataset-level path (GDAL 3.9+), which differs from the block-by-block warp
    by up to 18 DN, so a 2-core machine and a 16-core one made different outputs of the
    same scene until every read was made block by block."""
    import rrsgan_geo.sr.pipeline as pipeline

    scene = EXAMPLE / "sjer_scene_0.4m_utm11n.tif"  # 100 x 100 LR
    ref = EXAMPLE / "sjer_reference_0.1m_epsg3857.tif"
    outputs = []
    for parts in (1, 2):
        monkeypatch.setattr(pipeline, "reference_column_parts", lambda _readers, p=parts: p)
        out = tmp_path / f"parts{parts}.tif"
        run(scene, ref, out, margin=16, tile=100, precision="fp32")
        with rasterio.open(out) as dataset:
            outputs.append(dataset.read())
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_tile_and_batch_default_to_the_devices_choice(tmp_path):
    """CPU: one tile of 128 at a time; GPU: batches of 4 tiles of 256; a scene that
    needs less gets a smaller tile (this one is 100 x 100 LR px). A run records what it
    used."""
    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif")
    plan, report = run(scene, ref, tmp_path / "o.tif", device="cpu")
    assert pipeline_default_tile(torch.device("cpu")) == 128 and plan.layout.tile == 100
    assert report.batch_size == pipeline_default_batch(torch.device("cpu")) == 1
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.tags()["RRSGAN_TILE"] == "100"
        assert json.loads(out.tags()["RRSGAN_OPTIONS"])["batch_size"] == 1
    assert pipeline_default_tile(torch.device("cuda")) == 256
    assert pipeline_default_batch(torch.device("cuda")) == 4


@pytest.mark.slow
def test_inputs_are_made_with_the_cores_the_readers_leave_and_the_model_gets_all(
    tmp_path, monkeypatch
):
    """With readers warping beside it, the degradation runs with fewer torch threads
    (all of them oversubscribed 2 cores: 1.6x slower); the model runs with the caller's
    count, which is also what is left when the run ends."""
    import rrsgan_geo.sr.pipeline as pipeline

    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif")
    seen = {"inputs": set(), "model": set()}
    make_inputs = pipeline.model_inputs

    def counting_inputs(strip, device, sensor):
        seen["inputs"].add(torch.get_num_threads())
        return make_inputs(strip, device, sensor)

    generator = tiny_generator()
    generator.model.register_forward_pre_hook(lambda *_: seen["model"].add(torch.get_num_threads()))
    monkeypatch.setattr(pipeline, "model_inputs", counting_inputs)
    monkeypatch.setattr(pipeline, "reader_threads", lambda: 2)
    caller = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        options = SROptions(tile=16, batch_size=2)
        plan = plan_sr(scene, ref, tmp_path / "out.tif", options, 8)
        super_resolve(plan, generator, options)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(caller)
    assert seen == {"inputs": {1}, "model": {3}}


@pytest.mark.slow
def test_a_reference_metres_off_is_moved_onto_the_scene(tmp_path):
    """The Web Mercator reference lies 1 m (10 output px) east of where the UTM scene
    has it: co-registration moves it 10 px west, the same for any tiling, and the output
    records it; without co-registration it stays."""
    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif", shift_east_m=1.0)
    offsets = {}
    for tile in (32, 64):
        _, report = run(scene, ref, tmp_path / f"out{tile}.tif", tile=tile)
        (offsets[tile],) = report.reference_offsets
        with rasterio.open(tmp_path / f"out{tile}.tif") as sr:
            assert sr.tags()["RRSGAN_REF_OFFSETS"] == "0,-10"
    assert offsets[32] == offsets[64]
    assert (offsets[32].rows, offsets[32].cols) == (0, -10)
    assert offsets[32].agreeing == offsets[32].windows >= 1
    assert "moved 10 px west (1.00 CRS units;" in offsets[32].describe((0.1, 0.1))
    unmeasured = dataclasses.replace(offsets[32], windows=0, agreeing=0)
    assert "not measured, no window of the scene lies on it" in unmeasured.describe((0.1, 0.1))
    _, report = run(scene, ref, tmp_path / "as_is.tif", tile=32, co_register=False)
    assert report.reference_offsets == ()
    with rasterio.open(tmp_path / "as_is.tif") as sr:
        assert sr.tags()["RRSGAN_REF_OFFSETS"] == "0,0"


def test_the_moved_reference_is_what_the_tiles_read(tmp_path):
    """After co-registration the first tile's reference is the truth at no shift."""
    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif", shift_east_m=1.0)
    plan = plan_sr(scene, ref, tmp_path / "o.tif", SROptions(tile=96), 4)
    plan, _ = co_registered_plan(plan, HttpOptions())
    reader = TileReader(scene, plan.model_bands, plan.model_scaling, plan.layout, plan.references)
    try:
        warped = reader.read(plan.layout.tiles_in_row(0)[:1]).ref[0][16:-16, 16:-16]
    finally:
        reader.close()
    with rasterio.open(neon_path()) as src:
        truth = src.read(1).astype(np.float32) / 255
    errors = {
        dx: np.abs(warped[40:360, 40:340] - truth[40:360, 40 - dx : 340 - dx]).mean()
        for dx in range(-5, 6)
    }
    assert min(errors, key=errors.get) == 0


@pytest.mark.parametrize(
    ("width", "height", "fitted"),
    [
        (100, 100, 100),
        (300, 300, 100),
        (512, 512, 128),
        (300, 500, 128),
        (1000, 50, 128),
        (130, 130, 68),
        (4, 4, 4),
    ],
)
def test_the_default_tile_is_no_larger_than_the_scene_needs(width, height, fitted):
    """As many tiles as tiles of 128 would take, never more, each a multiple of 4 and
    no larger than that: less of the last tile computed past the scene's edge."""
    tile = fitted_tile(128, width, height)
    assert tile == fitted
    before, after = TileLayout(width, height, 128, 16), TileLayout(width, height, tile, 16)
    assert (after.rows, after.cols) == (before.rows, before.cols)
