"""STAC Items beside the outputs (`sr --stac`, `batch --stac`), read back with pystac."""

import shutil
from datetime import UTC, datetime

import pystac
import pytest
import rasterio
from click.testing import CliRunner
from shapely.geometry import shape

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import ConfigError
from rrsgan_geo.sr.item_facts import acquisition_time, parse_stac_datetime
from tests.test_batch import batch_args, workspace  # noqa: F401  (the batch fixture)
from tests.test_sr_cli import files  # noqa: F401  (the sr fixture)

EXTENSIONS = {"projection", "raster", "eo", "processing"}


def _sr(files, tmp_path, *extra):  # noqa: F811
    out = tmp_path / "scene_x4.tif"
    command = [
        "sr",
        str(files["scene"]),
        "--ref",
        str(files["ref"]),
        "-o",
        str(out),
        "--weights",
        str(files["weights"]),
        "--tile",
        "32",
        *extra,
    ]
    return CliRunner().invoke(main, command), out


def test_sr_writes_an_item_a_catalogue_reads_back_with_every_field(files, tmp_path):  # noqa: F811
    result, out = _sr(
        files,
        tmp_path,
        "--stac",
        "--stac-datetime",
        "2018-06-01T10:30:00Z",
        "--relevance-map",
        str(tmp_path / "scene_x4_relevance.tif"),
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "scene_x4.stac.json"
    assert f"wrote {path}: its STAC Item" in result.output
    item = pystac.Item.from_file(str(path))
    assert item.id == "scene_x4" and item.datetime == datetime(2018, 6, 1, 10, 30, tzinfo=UTC)
    assert {uri.split("/")[3] for uri in item.stac_extensions} == EXTENSIONS
    with rasterio.open(out) as output:
        grid = output.transform, output.crs, output.shape, output.count
        bounds = rasterio.warp.transform_bounds(output.crs, "EPSG:4326", *output.bounds)
    transform, crs, (height, width), count = grid
    # Where: the footprint in WGS 84, the bbox around it.
    assert shape(item.geometry).bounds == pytest.approx(bounds, abs=1e-7)
    assert item.bbox == pytest.approx(list(bounds), abs=1e-7)
    # How it is gridded (proj).
    assert item.properties["proj:code"] == f"EPSG:{crs.to_epsg()}"
    assert item.properties["proj:transform"] == pytest.approx(list(transform)[:6])
    assert item.properties["proj:shape"] == [height, width]
    # What its values are (raster, eo), per band.
    image = item.assets["image"]
    assert image.href == "./scene_x4.tif" and image.roles == ["data"]
    assert image.get_absolute_href() == str(out)
    raster = image.extra_fields["raster:bands"]
    assert len(raster) == count and all(b["data_type"] == "uint8" for b in raster)
    assert all(b["nodata"] == 255 for b in raster)
    names = [b.get("common_name") for b in image.extra_fields["eo:bands"]]
    assert names == ["red", "green", "blue"]
    # How it was made, and from what.
    assert item.properties["processing:software"]["rrsgan-geo"]
    assert item.properties["rrsgan:weights"] == "tiny.safetensors"
    assert len(item.properties["rrsgan:weights_sha256"]) == 64
    assert item.properties["rrsgan:scene_blur"]["source"] in ("estimated", "default")
    derived = [link.href for link in item.links if link.rel == "derived_from"]
    assert [href.rsplit("/", 1)[-1] for href in derived] == ["scene.tif", "ref.tif"]
    assert not any(str(tmp_path) in href for href in derived)  # names, no local paths
    relevance = item.assets["relevance"]
    assert relevance.roles == ["metadata"] and relevance.href == "./scene_x4_relevance.tif"
    # The folder moves with its Item: hrefs are relative.
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("scene_x4.tif", "scene_x4.stac.json", "scene_x4_relevance.tif"):
        shutil.move(tmp_path / name, moved / name)
    again = pystac.Item.from_file(str(moved / "scene_x4.stac.json"))
    assert again.assets["image"].get_absolute_href() == str(moved / "scene_x4.tif")


def test_a_scene_without_a_date_needs_stac_datetime(files, tmp_path):  # noqa: F811
    refused, out = _sr(files, tmp_path, "--stac")
    assert refused.exit_code == 1 and "--stac-datetime" in refused.output
    assert not out.exists()
    bad, out = _sr(files, tmp_path, "--stac", "--stac-datetime", "yesterday")
    assert bad.exit_code == 1 and "ISO dates" in bad.output and not out.exists()
    ranged, out = _sr(files, tmp_path, "--stac", "--stac-datetime", "2018-06-01/2018-06-30")
    assert ranged.exit_code == 0, ranged.output
    item = pystac.Item.from_file(str(tmp_path / "scene_x4.stac.json"))
    assert item.datetime is None
    assert item.common_metadata.start_datetime == datetime(2018, 6, 1, tzinfo=UTC)
    assert item.common_metadata.end_datetime == datetime(2018, 6, 30, tzinfo=UTC)


def test_the_acquisition_time_comes_from_the_tags_or_the_name():
    taken = acquisition_time({"TIFFTAG_DATETIME": "2016:05:29 15:36:31"}, "scene.tif")
    assert taken == datetime(2016, 5, 29, 15, 36, 31, tzinfo=UTC)
    named = acquisition_time({}, "tgt_S2A_20160529T153631_T33UUU_sub.tif")
    assert named == datetime(2016, 5, 29, 15, 36, 31, tzinfo=UTC)
    assert acquisition_time({}, "LC08_20210704.tif") == datetime(2021, 7, 4, tzinfo=UTC)
    assert acquisition_time({}, "scene_99999999.tif") is None  # digits that are no date
    assert acquisition_time({}, "scene.tif") is None
    with pytest.raises(ConfigError, match="start is after the end"):
        parse_stac_datetime("2020-02-01/2020-01-01")


def test_batch_writes_an_item_per_scene_and_a_catalog(workspace):  # noqa: F811
    tmp_path, weights = workspace
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, batch_args(tmp_path, weights, out, "--stac", "--stac-datetime", "2018-06-01")
    )
    assert result.exit_code == 0, result.output
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    items = sorted(catalog.get_items(), key=lambda item: item.id)
    assert [item.id for item in items] == ["scene_a_x4", "scene_b_x4", "scene_c_x4"]
    for item in items:
        assert (out / item.assets["image"].href).is_file()
        assert item.properties["proj:shape"] == [400, 144]
