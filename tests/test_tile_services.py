"""XYZ/TMS tile services as references, through GDAL's WMS driver, against a tile
pyramid served on 127.0.0.1 and made from the CC0 NEON image."""

import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from rrsgan_geo.errors import CoverageError, InputError
from rrsgan_geo.geo.grids import RasterGrid
from rrsgan_geo.geo.locations import HttpOptions
from rrsgan_geo.geo.tile_services import HALF_WORLD_M, TileService, zoom_for
from tests.http_server import serve, stalling_server
from tests.rasters import lr_scene
from tests.test_sr_pipeline import run
from tests.tile_pyramid import tile_size_m, write_pyramid, write_wmts_capabilities

ZOOM = 20  # 0.13 m ground pixels at 29.7 N: tiles of 33 m, the scene is 40 m wide
XYZ = "/{z}/{x}/{y}.png"


@pytest.fixture
def pyramid(tmp_path):
    folder = tmp_path / "tiles"
    tiles, mosaic = write_pyramid(folder, ZOOM)
    return folder, tiles, mosaic, lr_scene(tmp_path / "scene.tif")


def read(path):
    with rasterio.open(path) as dataset:
        return dataset.read().astype(int)


def close_where_valid(a, b, valid):
    """Within 1 DN on 99% of the pixels where the reference exists."""
    return (np.abs(a - b)[:, valid] <= 1).mean() >= 0.99


@pytest.mark.slow
def test_an_xyz_service_gives_the_output_of_the_same_tiles_as_a_local_raster(pyramid, tmp_path):
    folder, tiles, mosaic, scene = pyramid
    _, local = run(scene, mosaic, tmp_path / "local.tif", tile=32, ref_zoom=ZOOM)
    cache = tmp_path / "cache"
    with serve(folder) as (url, behaviour):
        plan, report = run(
            scene, url + XYZ + "?key=secret", tmp_path / "xyz.tif", tile=32, ref_zoom=ZOOM,
            ref_cache=cache,
        )  # fmt: skip
        # Each tile once, and only those under the scene and its tiles' margins (3 x 3
        # here: the padded tile grid reaches 11 m past the scene's right and bottom).
        fetched = sum(behaviour.requests.values())
        assert max(behaviour.requests.values()) == 1 and 0 < fetched <= 9
        again = url + XYZ + "?key=secret"  # the same service: the cache is per URL
        run(scene, again, tmp_path / "again.tif", tile=32, ref_zoom=ZOOM, ref_cache=cache)
        # The re-run read the tiles it had from the cache; only those the server does
        # not have (404, never cached) were asked again.
        existing = {f"/{ZOOM}/{x}/{y}.png" for x, y in tiles}
        assert all(behaviour.requests[path] == 1 for path in existing)
        assert sum(behaviour.requests.values()) < 2 * fetched
    assert report.pixel_coverage == pytest.approx(local.pixel_coverage, abs=1e-3)
    assert report.pixel_coverage > 0.97
    valid = np.ones(read(tmp_path / "xyz.tif").shape[1:], bool)
    assert close_where_valid(read(tmp_path / "xyz.tif"), read(tmp_path / "local.tif"), valid)
    np.testing.assert_array_equal(read(tmp_path / "again.tif"), read(tmp_path / "xyz.tif"))
    with rasterio.open(tmp_path / "xyz.tif") as out:
        assert out.tags()["RRSGAN_REFERENCE"] == url + XYZ  # no key recorded


@pytest.mark.slow
def test_a_wmts_capabilities_url_goes_through_gdals_wmts_driver(pyramid, tmp_path):
    """The same tiles described by a WMTS capabilities document: recognised by its
    URL, opened with GDAL's WMTS driver, the same output as the local mosaic."""
    folder, _, mosaic, scene = pyramid
    run(scene, mosaic, tmp_path / "local.tif", tile=32)
    with serve(folder) as (url, _):
        write_wmts_capabilities(folder, url, ZOOM)
        _, report = run(scene, f"{url}/WMTSCapabilities.xml", tmp_path / "wmts.tif", tile=32)
    a, b = read(tmp_path / "wmts.tif"), read(tmp_path / "local.tif")
    assert report.pixel_coverage > 0.97
    assert close_where_valid(a, b, np.ones(a.shape[1:], bool))


@pytest.mark.slow
def test_a_tms_service_counts_rows_from_the_bottom(tmp_path):
    folder = tmp_path / "tms"
    _, mosaic = write_pyramid(folder, ZOOM, tms=True)
    scene = lr_scene(tmp_path / "scene.tif")
    run(scene, mosaic, tmp_path / "local.tif", tile=32)
    with serve(folder) as (url, _):
        run(scene, url + "/{z}/{x}/{-y}.png", tmp_path / "tms.tif", tile=32, ref_zoom=ZOOM)
    a, b = read(tmp_path / "tms.tif"), read(tmp_path / "local.tif")
    assert close_where_valid(a, b, np.ones(a.shape[1:], bool))


@pytest.mark.slow
def test_missing_tiles_are_missing_reference_counted_and_equal_to_no_reference(pyramid, tmp_path):
    """One tile in ten answers 404 (the one under the scene's centre is kept, as the
    run checks it): the run completes, its coverage shows the gap, and inside the
    missing tile (beyond the model's reach of its edges) the output is that of a run
    without any reference."""
    folder, tiles, mosaic, scene = pyramid
    with rasterio.open(scene) as src:
        crs, sr_transform = src.crs, src.transform @ Affine.scale(0.25)
        sr_shape = (4 * src.height, 4 * src.width)
    size = tile_size_m(ZOOM)

    def sr_window(tile):
        """The tile's rows and columns on the SR grid, shrunk by the tiny model's reach
        (18 LR px), clipped to the scene."""
        x, y = tile
        left, top = x * size - HALF_WORLD_M, HALF_WORLD_M - y * size
        bounds = transform_bounds("EPSG:3857", crs, left, top - size, left + size, top)
        col0, row1 = ~sr_transform @ (bounds[0], bounds[1])
        col1, row0 = ~sr_transform @ (bounds[2], bounds[3])
        reach = 18 * 4
        rows = slice(max(int(row0), 0) + reach, min(int(row1), sr_shape[0]) - reach)
        cols = slice(max(int(col0), 0) + reach, min(int(col1), sr_shape[1]) - reach)
        return rows, cols

    def area(tile):
        rows, cols = sr_window(tile)
        return max(rows.stop - rows.start, 0) * max(cols.stop - cols.start, 0)

    # 1 of the 9 tiles the run reads (the others under the padded tiles are 404 anyway).
    missing = [max(tiles, key=area)]
    _, full = run(scene, mosaic, tmp_path / "full.tif", tile=32, ref_zoom=ZOOM)
    with serve(folder) as (url, behaviour):
        for x, y in missing:
            behaviour.status_for[f"/{ZOOM}/{x}/{y}.png"] = 404
        _, gappy = run(scene, url + XYZ, tmp_path / "gappy.tif", tile=32, ref_zoom=ZOOM)
    run(scene, None, tmp_path / "none.tif", tile=32, allow_missing_ref=True)
    assert 0.1 < gappy.pixel_coverage < full.pixel_coverage - 0.1
    rows, cols = sr_window(missing[0])
    gap = read(tmp_path / "gappy.tif")[:, rows, cols]
    none = read(tmp_path / "none.tif")[:, rows, cols]
    assert gap.shape[1] * gap.shape[2] > 30 * 30
    assert np.abs(gap - none).max() <= 1


@pytest.mark.slow
def test_server_errors_are_retried_then_treated_as_missing_and_reported(pyramid, tmp_path):
    """GDAL does not retry tile requests; the reader does. A tile failing twice with
    503 is fetched on the third try (the output equals the local mosaic's); a tile that
    always answers 500 becomes missing reference, and the run counts it."""
    folder, tiles, mosaic, scene = pyramid
    _, local = run(scene, mosaic, tmp_path / "local.tif", tile=32, ref_zoom=ZOOM)
    http = HttpOptions(retries=2, retry_delay=0.05)
    flaky = f"/{ZOOM}/{tiles[0][0]}/{tiles[0][1]}.png"
    with serve(folder) as (url, behaviour):
        behaviour.failures_left[flaky] = 2
        _, retried = run(
            scene, url + XYZ, tmp_path / "retried.tif", tile=32, ref_zoom=ZOOM, http=http
        )
        assert behaviour.requests[flaky] >= 3  # 2 failures, then served (probe included)
    assert retried.tile_server_errors == 0
    assert retried.pixel_coverage == pytest.approx(local.pixel_coverage, abs=1e-3)
    a, b = read(tmp_path / "retried.tif"), read(tmp_path / "local.tif")
    assert close_where_valid(a, b, np.ones(a.shape[1:], bool))
    with serve(folder) as (url, behaviour):
        behaviour.status_for[flaky] = 500
        _, broken = run(
            scene, url + XYZ, tmp_path / "broken.tif", tile=32, ref_zoom=ZOOM, http=http
        )
    assert broken.tile_server_errors >= 1
    assert broken.pixel_coverage < local.pixel_coverage - 0.05


@pytest.mark.slow
def test_a_stalled_tile_server_is_cut_off_by_the_timeout(pyramid, tmp_path):
    _, _, _, scene = pyramid
    with stalling_server() as url:
        command = [
            sys.executable, "-m", "rrsgan_geo.cli.main", "sr", str(scene), "--ref", url + XYZ,
            "-o", str(tmp_path / "out.tif"), "--device", "cpu", "--http-timeout", "2",
            "--http-retries", "0",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "no answer within 2 s" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out.tif").exists()


def test_a_tile_that_is_not_an_image_is_one_line(pyramid, tmp_path):
    folder, _, _, scene = pyramid
    for tile in folder.rglob("*.png"):
        tile.write_text("<html>rate limited</html>")
    with serve(folder) as (url, _), pytest.raises(InputError, match="tile service .*png"):
        run(scene, url + XYZ, tmp_path / "out.tif", tile=32, ref_zoom=ZOOM)
    assert not (tmp_path / "out.tif").exists()


def test_a_zoom_beyond_the_services_range_is_refused_with_a_hint(pyramid, tmp_path):
    folder, _, _, scene = pyramid
    with serve(folder) as (url, _), pytest.raises(CoverageError, match="lower --ref-zoom"):
        run(scene, url + XYZ, tmp_path / "out.tif", tile=32, ref_zoom=ZOOM + 2)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("https://h/{x}/{y}.png", "needs {z}, {x}"),
        ("https://h/{z}/{x}/{y}/{-y}.png", "one of {y}"),
        ("https://{s}.h/{z}/{x}/{y}.png", "unknown field {s}"),
    ],
)
def test_bad_templates(template, message):
    with pytest.raises(InputError, match=message):
        TileService(template).gdal_xml(10, HttpOptions())


def test_the_zoom_is_the_first_at_most_as_coarse_as_the_output_pixel():
    """At 29.68 N a zoom-21 pixel is 0.065 m on the ground and a zoom-20 one 0.130 m: a
    0.1 m output pixel takes 21, a 0.13 m one 20; a geographic grid works the same."""
    utm = CRS.from_epsg(32617)
    for pixel, zoom in [(0.1, 21), (0.131, 20), (0.4, 19), (10.0, 14)]:
        grid = RasterGrid(utm, Affine(pixel, 0, 404000, 0, -pixel, 3284000), 100, 100)
        assert zoom_for(grid) == zoom
    degrees = RasterGrid(CRS.from_epsg(4326), Affine(1e-6, 0, -81.99, 0, -1e-6, 29.68), 10, 10)
    assert zoom_for(degrees) == 21  # 1e-6 deg of longitude is 0.097 m there
