"""Start-up: `--help`, `COMMAND --help` and `--version` load neither torch nor GDAL;
train and evaluate load nothing geospatial (the GPU machines that run them have no
rasterio, shapely or pyproj); `sr` of local files loads neither pyproj nor pystac."""

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rrsgan_geo.cli.main import COMMANDS, main

HEAVY = {"torch", "rasterio", "numpy"}
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"


def _modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def _run_main(args: list[str]) -> str:
    """Python source that runs `rrsgan-geo ARGS` in the child process."""
    return (
        "from rrsgan_geo.cli.main import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass"
    )


def test_help_and_version_import_neither_torch_nor_gdal():
    for flag in ("--help", "--version"):
        loaded = _modules_after(_run_main([flag]))
        assert "rrsgan_geo.cli.main" in loaded
        assert not HEAVY & loaded, flag


@pytest.mark.parametrize("command", [*COMMANDS, "weights info", "weights convert"])
def test_each_commands_help_imports_neither_torch_nor_gdal(command):
    """`rrsgan-geo sr --help` answered in 3.8-4.8 s while the command modules imported
    the library at the top; now in about 0.3 s."""
    loaded = _modules_after(_run_main([*command.split(), "--help"]))
    module = COMMANDS[command.split()[0]][0]
    assert module in loaded
    assert not HEAVY & loaded, sorted(HEAVY & loaded)


def test_train_and_evaluate_import_nothing_geospatial(tmp_path):
    """Run far enough to load what they run with (a missing config, a missing folder)."""
    loaded = _modules_after(
        _run_main(["train", str(tmp_path / "missing.yaml")])
        + "\n"
        + _run_main(["evaluate", str(tmp_path / "missing"), "--device", "cpu"])
    )
    assert {"rrsgan_geo.training.trainer", "rrsgan_geo.training.evaluation", "torch"} <= loaded
    assert not {"rasterio", "shapely", "pyproj"} & loaded


@pytest.mark.slow
def test_sr_of_local_files_loads_neither_pyproj_nor_pystac(tmp_path):
    """They serve tile services and STAC references only: a run on local files works
    where they are not installed (as on the GPU machines benchmarks run on), and the
    library's import is 0.03-0.05 s shorter (1.43-1.48 s against 1.46-1.54 s)."""
    out = tmp_path / "out.tif"
    scene = EXAMPLES / "sjer_scene_0.4m_utm11n.tif"
    ref = EXAMPLES / "sjer_reference_0.1m_epsg3857.tif"
    loaded = _modules_after(
        _run_main(["sr", str(scene), "--ref", str(ref), "-o", str(out), "--device", "cpu"])
    )
    assert out.is_file()
    assert {
        "rrsgan_geo.sr.pipeline",
        "rrsgan_geo.geo.stac",
        "rrsgan_geo.geo.tile_services",
    } <= loaded
    assert not {"pyproj", "pystac"} & loaded


def test_every_listed_command_loads_under_its_name():
    for name in COMMANDS:
        command = main.get_command(None, name)
        assert isinstance(command, click.Command) and command.name == name
    assert main.get_command(None, "nope") is None


def test_no_help_text_quotes_a_measured_figure():
    """Figures live in docs/performance.md and the model card, dated; a --help that
    quoted dB, times, memory or speed-ups went stale with every change of a default."""
    pattern = re.compile(
        r"\d[\d.,]*\s*(?:dB|ms\b|s\b|min\b|h\b|seconds|minutes|[KMG]i?B\b|%|x faster)"
    )
    runner = CliRunner()

    def commands(command: click.Command, path: list[str]):
        yield path
        if isinstance(command, click.Group):
            context = click.Context(command)
            for name in command.list_commands(context):
                yield from commands(command.get_command(context, name), [*path, name])

    for path in commands(main, []):
        text = runner.invoke(main, [*path, "--help"], terminal_width=1000).output
        assert not pattern.search(text), (path, pattern.search(text).group(0))


@pytest.mark.parametrize("command", ["sr", "batch"])
def test_scene_commands_list_their_options_in_sections(command):
    """35 options are read by what they are about; every one is in a section."""
    text = CliRunner().invoke(main, [command, "--help"], terminal_width=100).output
    titles = re.findall(r"^(\w[\w ]*) options:$", text, flags=re.MULTILINE)
    assert titles == ["Inputs", "Reference", "Processing", "Output", "Run", "Other"]
    other = text.split("Other options:")[1].strip().splitlines()
    assert other == ["-h, --help  Show this message and exit."]
    for flag in ("--ref TEXT", "--scene-blur", "--tile", "--cog", "--dry-run"):
        assert flag in text
