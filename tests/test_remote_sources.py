"""Scenes and references read over HTTP, from archives and buckets, through GDAL.

A server on 127.0.0.1, in this process, serves a COG and a scene the tests write
from the CC0 NEON image; every fault is one line and no output file.
"""

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import InputError
from rrsgan_geo.geo.locations import HttpOptions, display_name, gdal_path, is_virtual
from rrsgan_geo.sr.pipeline import super_resolve
from rrsgan_geo.sr.planning import SROptions, plan_sr
from tests.http_server import closed_port_url, serve, stalling_server
from tests.rasters import lr_scene, mercator_reference
from tests.test_sr_pipeline import run, tiny_generator


def served_folder(tmp_path):
    """scene.tif and ref_cog.tif (the EPSG:3857 reference as a COG) in one folder."""
    folder = tmp_path / "served"
    folder.mkdir()
    lr_scene(folder / "scene.tif")
    plain = mercator_reference(tmp_path / "ref_plain.tif", shift_east_m=0.5)
    rasterio.shutil.copy(plain, folder / "ref_cog.tif", driver="COG", blocksize=256)
    return folder


@pytest.mark.slow
def test_a_scene_and_a_cog_reference_over_http_give_the_local_output(tmp_path):
    folder = served_folder(tmp_path)
    run(folder / "scene.tif", folder / "ref_cog.tif", tmp_path / "local.tif", tile=32)
    with serve(folder) as (url, behaviour):
        ref_url = f"{url}/ref_cog.tif?token=secret"  # a signed URL: the query is sent...
        plan, report = run(f"{url}/scene.tif", ref_url, tmp_path / "remote.tif", tile=32)
        assert behaviour.requests["/ref_cog.tif"] > 1  # read by ranges, not whole
    assert report.pixel_coverage > 0.97
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        tags = b.tags()
    # ... and never recorded: the output names the URL without its query.
    assert tags["RRSGAN_REFERENCE"] == f"{url}/ref_cog.tif"
    assert tags["RRSGAN_SCENE"] == f"{url}/scene.tif"
    assert "secret" not in str(tags)


def test_a_server_without_byte_ranges_is_named_with_the_way_round_it(tmp_path):
    """GDAL reads remote rasters in windows; a server that answers every request with
    the whole file is one line naming that and /vsicurl_streaming/, which then works."""
    folder = served_folder(tmp_path)
    with serve(folder) as (url, behaviour):
        behaviour.byte_ranges = False
        plain = CliRunner().invoke(
            main,
            [
                "sr",
                str(folder / "scene.tif"),
                "--ref",
                f"{url}/ref_cog.tif",
                "-o",
                str(tmp_path / "a.tif"),
            ],
        )
        assert plain.exit_code == 1 and plain.output.count("\n") == 1, plain.output
        assert "does not answer byte-range requests" in plain.output
        assert "/vsicurl_streaming/" in plain.output and not (tmp_path / "a.tif").exists()
        _, report = run(
            folder / "scene.tif", f"/vsicurl_streaming/{url}/ref_cog.tif", tmp_path / "b.tif"
        )
    assert report.pixel_coverage > 0.97


@pytest.mark.slow
def test_a_reference_inside_a_zip_is_read_through_vsizip(tmp_path):
    folder = served_folder(tmp_path)
    archive = tmp_path / "refs.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(folder / "ref_cog.tif", "refs/ref_cog.tif")
    run(folder / "scene.tif", folder / "ref_cog.tif", tmp_path / "plain.tif", tile=32)
    run(folder / "scene.tif", f"/vsizip/{archive}/refs/ref_cog.tif", tmp_path / "zip.tif", tile=32)
    with rasterio.open(tmp_path / "plain.tif") as a, rasterio.open(tmp_path / "zip.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert b.tags()["RRSGAN_REFERENCE"] == "ref_cog.tif"  # no local path


@pytest.mark.parametrize(
    ("location", "gdal", "shown"),
    [
        (
            "https://h.org/a/b.tif?sig=1",
            "/vsicurl/https://h.org/a/b.tif?sig=1",
            "https://h.org/a/b.tif",
        ),
        ("s3://bucket/key/c.tif", "/vsis3/bucket/key/c.tif", "s3://bucket/key/c.tif"),
        ("gs://bucket/d.tif", "/vsigs/bucket/d.tif", "gs://bucket/d.tif"),
        ("/vsizip//data/x.zip/e.tif", "/vsizip//data/x.zip/e.tif", "e.tif"),
        ("/data/f.tif", "/data/f.tif", "f.tif"),
        (
            "https://h.org/wmts/WMTSCapabilities.xml?k=1",
            "WMTS:https://h.org/wmts/WMTSCapabilities.xml?k=1",
            "https://h.org/wmts/WMTSCapabilities.xml",
        ),
        (
            "WMTS:https://h.org/c.xml,layer=a",
            "WMTS:https://h.org/c.xml,layer=a",
            "https://h.org/c.xml",
        ),
    ],
)
def test_locations_map_to_gdal_paths_and_show_no_secrets(location, gdal, shown):
    assert gdal_path(location) == gdal
    assert display_name(location) == shown
    assert is_virtual(location) == (not location.startswith("/data"))


def remote_sr(tmp_path, scene, ref, *args):
    """`rrsgan-geo sr` with the shipped compact weights; the reference may be remote."""
    output = tmp_path / "out.tif"
    command = ["sr", str(scene), "--ref", ref, "-o", str(output), "--device", "cpu", *args]
    return CliRunner().invoke(main, command), output


@pytest.mark.parametrize(
    ("where", "message"),
    [("missing", "HTTP 404"), ("refused", "connection refused")],
)
def test_an_unreadable_remote_reference_is_one_line_with_url_and_cause(tmp_path, where, message):
    folder = served_folder(tmp_path)
    with serve(folder) as (url, _):
        base = url if where == "missing" else closed_port_url()
        ref = f"{base}/nothing_here.tif"
        result, output = remote_sr(tmp_path, folder / "scene.tif", ref, "--http-retries", "0")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: cannot read reference ")
    assert f"{base}/nothing_here.tif" in result.output and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not output.exists() and not list(tmp_path.glob(".out.tif*"))


@pytest.mark.slow
def test_a_server_that_never_answers_is_cut_off_by_the_timeout(tmp_path):
    """The run ends with an error instead of hanging (the subprocess limit is only a
    guard for the test: a hang fails it rather than blocking the suite)."""
    folder = served_folder(tmp_path)
    with stalling_server() as url:
        command = [
            sys.executable, "-m", "rrsgan_geo.cli.main", "sr", str(folder / "scene.tif"),
            "--ref", f"{url}/ref.tif", "-o", str(tmp_path / "out.tif"), "--device", "cpu",
            "--http-timeout", "2", "--http-retries", "0",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no answer within 2 s" in done.stderr, done.stderr
    assert not (tmp_path / "out.tif").exists()


def test_a_reference_server_failing_mid_run_is_one_error_and_no_output(tmp_path):
    """The reference's server answers 503 after planning: the run stops with an
    InputError naming the reference, and removes its partial file."""
    folder = served_folder(tmp_path)
    options = SROptions(tile=32, http=HttpOptions(timeout=5, retries=0))
    with serve(folder) as (url, behaviour):
        ref = f"{url}/ref_cog.tif"
        plan = plan_sr(folder / "scene.tif", ref, tmp_path / "o.tif", options, 8)
        behaviour.status_for["/ref_cog.tif"] = 503
        with pytest.raises(InputError, match=f"reading reference {ref} failed"):
            super_resolve(plan, tiny_generator(8), options)
    assert not (tmp_path / "o.tif").exists() and not list(tmp_path.glob(".o.tif*"))
