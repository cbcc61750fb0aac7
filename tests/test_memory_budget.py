"""Memory-aware planning: a plan knows what a run needs, refuses what cannot fit before
any work, and picks the CPU tile by the memory there is (`memory_budget`)."""

import subprocess
import sys

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import MemoryBudgetError
from rrsgan_geo.sr.memory_budget import estimate, parse_memory
from rrsgan_geo.sr.planning import SROptions, plan_sr

GiB = 2**30


def sparse_scene(path, width, height):
    """A uint8 RGB GeoTIFF of any size that takes no disk: no block is written."""
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(300000, 5900000, 10, 10),
        "tiled": True,
        "sparse_ok": True,
    }
    with rasterio.open(path, "w", **profile):
        pass
    return path


def small_scene(path, side):
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff",
        "width": side,
        "height": side,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(300000, 5900000, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as out:
        out.write(rng.integers(0, 255, (3, side, side), dtype=np.uint8))
    return path


def sr(*args):
    return CliRunner().invoke(main, ["sr", *map(str, args), "--allow-missing-ref"])


def test_a_very_wide_scene_is_refused_before_work_with_the_figure(tmp_path):
    """200 000 x 2 000 px: its rows alone are gigabytes wide; within 4 GB it is refused
    in planning, naming what it needs and the way out, and leaves nothing behind."""
    scene = sparse_scene(tmp_path / "wide.tif", 200_000, 2_000)
    out = tmp_path / "out.tif"
    result = sr(scene, "-o", out, "--max-memory", "4G")
    assert result.exit_code == 1, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: this run needs about ")
    assert "4.0 GiB available" in message and "--bounds" in message
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


def test_the_wide_scene_is_refused_within_4_gb_of_peak_memory(tmp_path):
    """The refusal itself stays within the bar's 4 GB: planning reads no full row."""
    scene = sparse_scene(tmp_path / "wide.tif", 200_000, 2_000)
    code = (
        "import sys\n"
        "from rrsgan_geo.cli.main import main\n"
        "try:\n"
        f"    main(['sr', {str(scene)!r}, '-o', {str(tmp_path / 'o.tif')!r}, "
        "'--allow-missing-ref', '--max-memory', '4G'])\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        # VmHWM is this process's own peak: ru_maxrss keeps the peak from before exec,
        # the forking test process's.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print('peak', hwm.split()[1])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = result.stdout.split()
    assert lines[lines.index("exit") + 1] == "1", result.stdout + result.stderr
    peak_kib = int(lines[lines.index("peak") + 1])
    assert peak_kib * 1024 < 4 * GiB


def test_a_tile_that_cannot_fit_is_refused_with_one_that_can(tmp_path):
    """--tile 4096 once died of memory after minutes and left a part file."""
    scene = sparse_scene(tmp_path / "big.tif", 5_000, 5_000)
    out = tmp_path / "out.tif"
    result = sr(scene, "-o", out, "--tile", "4096", "--max-memory", "16G")
    assert result.exit_code == 1
    assert "use --tile 256, or leave --tile out" in result.output
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


@pytest.mark.parametrize(("budget", "tile"), [(64 * GiB, 256), (5 * GiB, 128), (5 * GiB // 2, 64)])
def test_the_default_cpu_tile_is_the_largest_that_fits_comfortably(tmp_path, budget, tile):
    scene = small_scene(tmp_path / "scene.tif", 1024)
    options = SROptions(device="cpu", allow_missing_ref=True, max_memory=budget)
    plan = plan_sr(scene, None, tmp_path / "o.tif", options, 16, model_features=16)
    assert plan.layout.tile == tile
    assert plan.memory is not None and plan.memory.total <= budget / 2


def test_a_budget_below_any_tile_is_refused(tmp_path):
    scene = small_scene(tmp_path / "scene.tif", 600)
    options = SROptions(device="cpu", allow_missing_ref=True, max_memory=GiB // 2)
    with pytest.raises(MemoryBudgetError, match="0.5 GiB available"):
        plan_sr(scene, None, tmp_path / "o.tif", options, 16, model_features=16)


@pytest.mark.slow
def test_the_model_estimate_covers_a_measured_peak():
    """The compact model's peak over the loaded process, one tile of 128 + 2 x 16: the
    kernel's high-water mark, reset just before the forward (/proc/self/clear_refs),
    less the memory in use then: the estimate covers it (runs differ by a tenth) and is
    within 1.5x of it."""
    code = (
        "import torch\n"
        "from rrsgan_geo.host_memory import keep_freed_memory\n"
        "from rrsgan_geo.model.weight_files import load_generator, shipped_weights_path\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key):\n"
        "            return int(line.split()[1]) * 1024\n"
        "keep_freed_memory()\n"
        "model, _ = load_generator(shipped_weights_path())\n"
        "lr = torch.rand(1, 3, 160, 160); up = torch.rand(1, 3, 640, 640)\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "base = status('VmRSS')\n"
        "with torch.inference_mode():\n"
        "    model(lr, up, up, up, blur=0.5)\n"
        "print(status('VmHWM') - base)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    measured = int(result.stdout.split()[-1])
    need = estimate(
        tile=128,
        margin=16,
        batch=1,
        features=16,
        model_on_host=True,
        sr_width=0,
        bands=3,
        itemsize=1,
        strips_in_flight=0,
    )
    assert 0.9 * measured <= need.model <= 1.5 * measured, (measured, need.model)


@pytest.mark.parametrize(
    ("text", "size"), [("4G", 4 * GiB), ("512M", 512 * 2**20), ("2.5GiB", int(2.5 * GiB))]
)
def test_memory_sizes_parse(text, size):
    assert parse_memory(text) == size


def test_a_bad_memory_size_is_one_line(tmp_path):
    result = sr(small_scene(tmp_path / "s.tif", 40), "-o", tmp_path / "o.tif", "--max-memory", "x")
    assert result.exit_code == 2 and "expected a size such as 4G" in result.output


def test_dry_run_prints_the_estimate(tmp_path):
    result = sr(small_scene(tmp_path / "s.tif", 40), "-o", tmp_path / "o.tif", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "memory      about " in result.output and "model " in result.output
