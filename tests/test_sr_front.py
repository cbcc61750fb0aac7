"""`rrsgan_geo.sr`, the library's front door: a scene in three calls, as the command
line makes it; geometry without torch."""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rrsgan_geo import sr
from rrsgan_geo.cli.main import main
from rrsgan_geo.sr.planning import SROptions

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"
SCENE = EXAMPLES / "sjer_scene_0.4m_utm11n.tif"
REFERENCE = EXAMPLES / "sjer_reference_0.1m_epsg3857.tif"


@pytest.mark.slow
def test_three_calls_make_what_the_command_makes(tmp_path):
    """load, plan, run on the bundled example: the same bytes as `rrsgan-geo sr`."""
    generator = sr.load_generator(device="cpu")
    plan = sr.plan(SCENE, REFERENCE, tmp_path / "library.tif", SROptions(device="cpu"), generator)
    assert plan.layout.margin == generator.margin and plan.options.device == "cpu"
    ticks: list[int] = []
    report = sr.run(plan, generator, progress=ticks.append)
    assert report.output == tmp_path / "library.tif" and sum(ticks) == plan.layout.count
    command = ["sr", str(SCENE), "--ref", str(REFERENCE), "-o", str(tmp_path / "cli.tif")]
    result = CliRunner().invoke(main, [*command, "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "library.tif").read_bytes() == (tmp_path / "cli.tif").read_bytes()
    estimate = sr.estimate([plan], generator)
    assert estimate.gmac > 0 and estimate.seconds > 0 and "GMAC" in estimate.describe()


def test_grids_and_tiling_load_without_torch():
    script = (
        "import sys\nimport rrsgan_geo.geo.grids, rrsgan_geo.sr.tiling, rrsgan_geo.upscaling\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr
