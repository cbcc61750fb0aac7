"""Start-up: `--help` loads neither torch nor GDAL; train and evaluate load nothing
geospatial (the GPU machines that run them have no rasterio, shapely or pyproj)."""

import subprocess
import sys

import click

from rrsgan_geo.cli.main import COMMANDS, main


def _modules_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_help_and_version_import_neither_torch_nor_gdal():
    for flag in ("--help", "--version"):
        loaded = _modules_after(
            "from rrsgan_geo.cli.main import main\n"
            f"try:\n    main([{flag!r}])\nexcept SystemExit:\n    pass"
        )
        assert "rrsgan_geo.cli.main" in loaded
        assert not {"torch", "rasterio", "numpy"} & loaded, flag


def test_train_and_evaluate_import_nothing_geospatial():
    loaded = _modules_after(
        "from rrsgan_geo.cli.main import main\n"
        "main.get_command(None, 'train'); main.get_command(None, 'evaluate')"
    )
    assert {"rrsgan_geo.cli.train", "rrsgan_geo.cli.evaluate", "torch"} <= loaded
    assert not {"rasterio", "shapely", "pyproj"} & loaded


def test_every_listed_command_loads_under_its_name():
    for name in COMMANDS:
        command = main.get_command(None, name)
        assert isinstance(command, click.Command) and command.name == name
    assert main.get_command(None, "nope") is None
