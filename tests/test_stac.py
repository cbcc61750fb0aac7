"""STAC Items and ItemCollections as references (pystac), local and over HTTP."""

import json
import time
from datetime import UTC, datetime

import numpy as np
import pystac
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import InputError
from rrsgan_geo.geo.locations import HttpOptions
from tests.http_server import misbehaving_server, serve
from tests.rasters import lr_scene, mercator_reference, write_raster
from tests.test_remote_sources import served_folder
from tests.test_sr_pipeline import run


def scene_box(scene):
    with rasterio.open(scene) as src:
        return box(*transform_bounds(src.crs, "EPSG:4326", *src.bounds))


def write_item(path, item_id, geometry, when, assets):
    """A STAC Item JSON file; `assets`: name -> href (absolute or relative to the item)."""
    item = pystac.Item(item_id, mapping(geometry), list(geometry.bounds), when, {})
    for name, href in assets.items():
        item.add_asset(name, pystac.Asset(href, media_type=pystac.MediaType.COG))
    document = item.to_dict(include_self_link=False, transform_hrefs=False)
    path.write_text(json.dumps(document))
    return path


def read(path):
    with rasterio.open(path) as dataset:
        return dataset.read()


@pytest.mark.slow
def test_an_item_local_or_served_with_a_relative_href_gives_the_local_output(tmp_path):
    folder = served_folder(tmp_path)
    scene = folder / "scene.tif"
    run(scene, folder / "ref_cog.tif", tmp_path / "local.tif", tile=32)
    when = datetime(2021, 6, 1, tzinfo=UTC)
    with serve(folder) as (url, _):
        absolute = write_item(
            tmp_path / "item.json", "a", scene_box(scene), when, {"visual": f"{url}/ref_cog.tif"}
        )
        run(scene, absolute, tmp_path / "item.tif", tile=32)
        write_item(folder / "item.json", "b", scene_box(scene), when, {"visual": "./ref_cog.tif"})
        _, report = run(scene, f"{url}/item.json", tmp_path / "served.tif", tile=32)
    assert report.pixel_coverage > 0.97
    np.testing.assert_array_equal(read(tmp_path / "item.tif"), read(tmp_path / "local.tif"))
    np.testing.assert_array_equal(read(tmp_path / "served.tif"), read(tmp_path / "local.tif"))


def test_an_item_without_the_asset_names_those_it_has(tmp_path):
    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif")
    item = write_item(
        tmp_path / "item.json", "x", scene_box(scene), datetime(2020, 1, 1, tzinfo=UTC),
        {"rgb": str(ref), "nir": "nir.tif"},
    )  # fmt: skip
    with pytest.raises(InputError, match=r"no asset 'visual' \(assets: nir, rgb\).*--ref-asset"):
        run(scene, item, tmp_path / "out.tif", tile=32)
    _, report = run(scene, item, tmp_path / "out.tif", tile=32, ref_asset="rgb")
    assert report.pixel_coverage > 0.97


@pytest.mark.slow
def test_a_collection_composites_items_newest_or_oldest_first(tmp_path):
    """Two items cover the scene: the truth (2020) and a grey image (2018); a third,
    elsewhere, points at a file that does not exist and is never opened."""
    scene = lr_scene(tmp_path / "scene.tif", window_px=256)
    truth = mercator_reference(tmp_path / "truth.tif")
    with rasterio.open(truth) as src:
        grey = write_raster(
            tmp_path / "grey.tif", np.full((3, *src.shape), 128, np.uint8), src.crs,
            src.transform,
        )  # fmt: skip
    footprint = scene_box(scene)
    items = [
        ("truth", footprint, datetime(2020, 5, 1, tzinfo=UTC), str(truth)),
        ("grey", footprint, datetime(2018, 5, 1, tzinfo=UTC), str(grey)),
        ("far", box(10, 10, 11, 11), datetime(2022, 1, 1, tzinfo=UTC), "missing.tif"),
    ]
    features = []
    for name, geometry, when, href in items:
        path = write_item(tmp_path / f"{name}.json", name, geometry, when, {"visual": href})
        features.append(json.loads(path.read_text()))
    collection = tmp_path / "search.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    for prefer, alone in (("newest", truth), ("oldest", grey)):
        run(scene, collection, tmp_path / f"{prefer}.tif", tile=32, ref_prefer=prefer)
        run(scene, alone, tmp_path / f"{prefer}_alone.tif", tile=32)
        np.testing.assert_array_equal(
            read(tmp_path / f"{prefer}.tif"), read(tmp_path / f"{prefer}_alone.tif")
        )
    assert not np.array_equal(read(tmp_path / "newest.tif"), read(tmp_path / "oldest.tif"))


def test_json_that_is_not_stac_is_one_error(tmp_path):
    scene = lr_scene(tmp_path / "scene.tif")
    (tmp_path / "point.json").write_text('{"type": "Point", "coordinates": [0, 0]}')
    with pytest.raises(InputError, match="not a STAC Item or ItemCollection"):
        run(scene, tmp_path / "point.json", tmp_path / "out.tif", tile=32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "href",
    [
        "/vsisubfile/0_99999999,{local}",
        "/vsisubfile/0_10,/etc/shadow",
        "/vsisubfile/0_10,/no/such/file",
        "/vsizip//tmp/archive.zip/a.tif",
        "/vsicurl/http://127.0.0.1:9/x.tif",
        "file://{local}",
        "vrt://{local}?bands=1",
        "s3://bucket/a.tif",
    ],
)
def test_a_remote_item_never_makes_sr_read_a_local_file(tmp_path, href):
    """A STAC Item served over HTTP whose asset is a local or GDAL virtual path is
    refused before anything is opened, with the same message whether the path exists
    or not; the same file named by a local item is used as a reference."""
    from rrsgan_geo.geo.stac import stac_hrefs

    scene = lr_scene(tmp_path / "scene.tif")
    local = mercator_reference(tmp_path / "secret.tif")
    folder = tmp_path / "served"
    folder.mkdir()
    write_item(
        folder / "item.json",
        "evil",
        scene_box(scene),
        datetime(2024, 1, 1, tzinfo=UTC),
        {"visual": href.format(local=local)},
    )
    with serve(folder) as (base, _):
        with pytest.raises(InputError) as refused:
            stac_hrefs(f"{base}/item.json", scene_box(scene), HttpOptions())
        command = ["sr", str(scene), "--ref", f"{base}/item.json", "-o", str(tmp_path / "o.tif")]
        result = CliRunner().invoke(main, command)
    message = str(refused.value)
    assert "may only name http(s) assets" in message
    assert str(local) not in message and "shadow" not in message and "no/such" not in message
    assert result.exit_code == 1 and result.output.startswith("Error: STAC item evil")
    assert "may only name http(s) assets" in result.output and "Traceback" not in result.output
    assert not list(tmp_path.glob("o.tif*"))


def test_an_absolute_path_in_a_remote_item_is_a_path_on_its_server(tmp_path):
    """`/a/b.tif` in an item read over HTTP resolves against the item's URL (RFC 3986),
    never to the file of that name on this machine."""
    from rrsgan_geo.geo.stac import stac_hrefs

    scene = lr_scene(tmp_path / "scene.tif")
    local = mercator_reference(tmp_path / "secret.tif")
    folder = tmp_path / "served"
    folder.mkdir()
    when = datetime(2024, 1, 1, tzinfo=UTC)
    write_item(folder / "item.json", "i", scene_box(scene), when, {"visual": str(local)})
    with serve(folder) as (base, _):
        hrefs = stac_hrefs(f"{base}/item.json", scene_box(scene), HttpOptions())
    assert hrefs == [f"{base}{local}"]


@pytest.mark.parametrize("kind", ["trickle", "endless", "short"])
def test_a_misbehaving_stac_server_ends_in_one_error_within_the_timeout(tmp_path, kind):
    from rrsgan_geo.geo.stac import stac_hrefs

    started = time.monotonic()
    with misbehaving_server(kind, seconds=20) as url, pytest.raises(InputError) as error:
        stac_hrefs(url, box(0, 0, 1, 1), HttpOptions(timeout=2))
    assert time.monotonic() - started < 10
    assert "STAC http://127.0.0.1" in str(error.value) and "item.json" in str(error.value)
