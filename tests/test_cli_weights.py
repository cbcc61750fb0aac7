"""`rrsgan-geo weights` through Click, and the installed console script."""

import json
import re
import shutil
import subprocess

import pytest
import torch
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.model.weight_files import (
    WeightsMetadata,
    load_generator,
    read_weight_file,
    save_weights,
)
from tests.conftest import COMPACT


@pytest.fixture
def weight_file(tmp_path, compact_model):
    path = tmp_path / "compact.safetensors"
    save_weights(
        compact_model.state_dict(), path, WeightsMetadata(config=COMPACT, training_data="tests")
    )
    return path


def test_info_prints_the_metadata(weight_file):
    result = CliRunner().invoke(main, ["weights", "info", str(weight_file)])
    assert result.exit_code == 0, result.output
    assert "RRSNet nf=16 n_blocks=1 groups=4" in result.output
    assert re.search(r"^training data:\s+tests$", result.output, re.MULTILINE)
    assert read_weight_file(weight_file).sha256 in result.output


def test_info_json(weight_file):
    result = CliRunner().invoke(main, ["weights", "info", "--json", str(weight_file)])
    described = json.loads(result.output)
    assert described["architecture"] == {"name": "RRSNet", "nf": 16, "n_blocks": 1, "groups": 4}
    assert described["tensors"] == len(read_weight_file(weight_file).state_dict)


def test_convert_pth_to_safetensors_with_metadata(tmp_path, compact_model):
    source = tmp_path / "net_g.pth"
    torch.save({"params": compact_model.state_dict()}, source)
    target = tmp_path / "net_g.safetensors"
    args = ["weights", "convert", str(source), str(target), "--training-data", "x", "--margin", "9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    converted = read_weight_file(target)
    assert converted.metadata.margin == 9 and converted.metadata.training_data == "x"
    assert converted.metadata.config == COMPACT
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "--overwrite" in again.output
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0


def test_convert_half_stores_float16_that_loads_as_the_same_model(tmp_path, weight_file):
    target = tmp_path / "half.safetensors"
    args = ["weights", "convert", str(weight_file), str(target), "--half"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    halved = read_weight_file(target)
    assert {tensor.dtype for tensor in halved.state_dict.values()} == {torch.float16}
    assert target.stat().st_size < 0.55 * weight_file.stat().st_size
    full_model, _ = load_generator(weight_file)
    half_model, _ = load_generator(target)
    assert next(half_model.parameters()).dtype == torch.float32
    torch.manual_seed(0)
    inputs = (torch.rand(1, 3, 8, 8),) + tuple(torch.rand(1, 3, 32, 32) for _ in range(3))
    with torch.no_grad():
        difference = (full_model(*inputs) - half_model(*inputs)).abs().max()
    assert 0 < difference < 2e-3  # rounded, and only rounded


def test_convert_half_refuses_values_float16_cannot_hold(tmp_path, compact_model):
    state_dict = compact_model.state_dict()
    state_dict["Encoder.layer_f.0.weight"] = state_dict["Encoder.layer_f.0.weight"] * 0 + 1e6
    source = tmp_path / "big.safetensors"
    save_weights(state_dict, source, WeightsMetadata(config=COMPACT))
    target = tmp_path / "half.safetensors"
    result = CliRunner().invoke(main, ["weights", "convert", str(source), str(target), "--half"])
    assert result.exit_code == 1
    assert "beyond float16's range" in result.output and "Traceback" not in result.output
    assert not target.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["weights", "info", "missing.safetensors"], "weight file not found"),
        (["weights", "convert", "missing.pth", "out.safetensors"], "weight file not found"),
        (["weights", "convert", "a.pth", "out.bin"], "must end in .safetensors"),
        (["weights", "convert", "a.pth", "no/such/dir/out.safetensors"], "does not exist"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.slow
def test_installed_console_script(weight_file):
    executable = shutil.which("rrsgan-geo")
    if executable is None:
        pytest.skip("rrsgan-geo is not on PATH: install the package (README) first")
    help_run = subprocess.run([executable, "--help"], capture_output=True, text=True, check=True)
    assert "weights" in help_run.stdout
    info_run = subprocess.run(
        [executable, "weights", "info", str(weight_file)], capture_output=True, text=True
    )
    assert info_run.returncode == 0, info_run.stderr
    assert "parameters:" in info_run.stdout
    failed = subprocess.run(
        [executable, "weights", "info", str(weight_file) + ".missing"],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 1
    assert failed.stderr.strip().count("\n") == 0 and "Traceback" not in failed.stderr
