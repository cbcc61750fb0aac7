"""STAC Items and ItemCollections as references (pystac), local and over HTTP."""

import json
from datetime import UTC, datetime

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from rrsgan_geo.errors import InputError
from tests.http_server import serve
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
