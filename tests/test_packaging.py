"""The wheel `pip install .` builds holds every module and the shipped weights.

The README installs in editable mode, which imports straight from the checkout: a
package left out of setup.cfg's explicit list goes unnoticed there and breaks every
non-editable install (`pip install .`, a wheel on another machine) at the first import.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the build reads: `cli/` and `weights/` install inside the package (setup.cfg).
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "rrsgan_geo", "cli", "weights")
INSTALLED_AS = {"rrsgan_geo": "rrsgan_geo", "cli": "rrsgan_geo/cli"}


def _copy_sources(target: Path) -> None:
    """The sources alone, so that a `build/` left in the checkout by an earlier build
    cannot put into the wheel what setup.cfg leaves out."""
    ignore = shutil.ignore_patterns("__pycache__", "provenance", "*.egg-info")
    target.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packaging")
    sources, built = root / "src", root / "dist"
    _copy_sources(sources)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "-q", "-w", str(built), str(sources)]
    subprocess.run(command, check=True, capture_output=True)
    (path,) = built.glob("rrsgan_geo-*.whl")
    return path


@pytest.mark.slow
def test_wheel_holds_every_module_and_the_shipped_weights(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{installed}/{module.relative_to(REPO / folder).as_posix()}"
        for folder, installed in INSTALLED_AS.items()
        for module in (REPO / folder).rglob("*.py")
        if "__pycache__" not in module.parts
    }
    expected |= {f"rrsgan_geo/weights/{p.name}" for p in (REPO / "weights").glob("*.safetensors")}
    assert expected, "no modules found: the test looks in the wrong place"
    assert sorted(expected - names) == []


@pytest.mark.slow
def test_the_installed_command_imports_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    """Every subpackage imports from the unpacked wheel alone, and the command's --help
    runs from there."""
    zipfile.ZipFile(wheel).extractall(tmp_path)
    script = (
        "import sys, importlib\n"
        "for name in ('rrsgan_geo.cli.main', 'rrsgan_geo.geo.rasters', 'rrsgan_geo.sr.pipeline',"
        " 'rrsgan_geo.training.trainer', 'rrsgan_geo.model.generator'):\n"
        "    print(importlib.import_module(name).__file__)\n"
        "from rrsgan_geo.cli.main import main\n"
        "main(['--help'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    files = [Path(line) for line in result.stdout.splitlines()[:5]]
    assert all(tmp_path in file.parents for file in files), files
    assert "Usage:" in result.stdout
