"""`rrsgan-geo weights` through Click, and the installed console script."""

import functools
import json
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.weight_files import (
    WeightsMetadata,
    load_generator,
    read_weight_file,
    save_weights,
)
from tests.conftest import COMPACT
from tests.rasters import lr_scene, mercator_reference
from tests.test_sr_pipeline import TINY

TINY_CONDITIONED = replace(TINY, blur_input=True)


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


def _conditioned_weights(path, seed, config=TINY_CONDITIONED):
    """A tiny generator that takes a blur code, its condition far from zero so that
    the code it is told changes its output."""
    torch.manual_seed(seed)
    model = RRSNet(config)
    torch.nn.init.normal_(model.content_extractor.condition.weight, std=2.0)
    save_weights(model.state_dict(), path, WeightsMetadata(config=config, margin=4))
    return path


def test_combine_joins_a_model_and_a_bicubic_expert_that_sr_runs_by_the_scene_blur(tmp_path):
    """`weights combine`, then `sr` on a real scene and reference: told a bicubic-like
    blur the joined file computes exactly what the expert alone does, told a blurred
    one exactly what the model alone does."""
    model = _conditioned_weights(tmp_path / "sensor.safetensors", 1)
    expert = _conditioned_weights(tmp_path / "bicubic.safetensors", 2)
    joined = tmp_path / "joined.safetensors"
    result = CliRunner().invoke(main, ["weights", "combine", str(model), str(expert), str(joined)])
    assert result.exit_code == 0, result.output
    assert f"wrote {joined}" in result.output
    info = CliRunner().invoke(main, ["weights", "info", str(joined)])
    assert "RRSNet nf=8 n_blocks=1 groups=2 blur_input bicubic_expert" in info.output
    notes = read_weight_file(joined).metadata.notes
    assert (
        f"bicubic expert: bicubic.safetensors (sha256 {read_weight_file(expert).sha256[:12]})"
        in (notes)
    )
    scene = lr_scene(tmp_path / "scene.tif", window_px=256)
    reference = mercator_reference(tmp_path / "ref.tif")

    @functools.cache
    def run(weights, blur):
        out = tmp_path / f"{weights.stem}_{blur}.tif"
        command = ["sr", str(scene), "--ref", str(reference), "-o", str(out), "--tile", "32"]
        result = CliRunner().invoke(
            main, [*command, "--weights", str(weights), "--scene-blur", blur, "--quiet"]
        )
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as output:
            return output.read()

    for blur, alone in (("none", expert), ("0.8", model)):
        assert np.array_equal(run(joined, blur), run(alone, blur)), blur
    assert not np.array_equal(run(expert, "0.8"), run(model, "0.8"))
    again = CliRunner().invoke(main, ["weights", "combine", str(model), str(expert), str(joined)])
    assert again.exit_code != 0 and "--overwrite" in again.output


def test_combine_refuses_networks_that_cannot_be_joined(tmp_path, weight_file):
    model = _conditioned_weights(tmp_path / "sensor.safetensors", 1)
    wider = _conditioned_weights(
        tmp_path / "wide.safetensors", 2, replace(TINY_CONDITIONED, nf=16, groups=4)
    )
    for other, message in (
        (wider, "differ in size (nf, n_blocks, groups): (8, 1, 2) and (16, 1, 4)"),
        (weight_file, "the bicubic expert does not take a blur code (blur_input)"),
    ):
        target = tmp_path / "joined.safetensors"
        args = ["weights", "combine", str(model), str(other), str(target)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output and not target.exists()


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
