"""`rrsgan-geo evaluate` end to end on a generated folder."""

import json

import torch
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.model import RRSNet
from rrsgan_geo.weight_files import WeightsMetadata, save_weights
from tests.folders import make_refsr_folder
from tests.test_sr_pipeline import TINY


def test_evaluate_prints_a_table_and_writes_json(tmp_path):
    folder = make_refsr_folder(tmp_path / "data", count=2)
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(RRSNet(TINY).state_dict(), weights, WeightsMetadata(config=TINY))
    out = tmp_path / "eval.json"
    args = [
        "evaluate",
        str(folder),
        "--weights",
        str(weights),
        "--device",
        "cpu",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for method in ("model", "model_no_ref", "model_truth_ref", "bicubic", "RGB PSNR", "Y SSIM"):
        assert method in result.output
    assert "reference adds" in result.output
    summary = json.loads(out.read_text())
    assert summary["samples"] == 2 and len(summary["per_sample"]) == 2
    assert summary["mean_psnr_rgb"]["bicubic"] > 15 and summary["mean_psnr_y"]["bicubic"] > 20
    # The weights file is named, never by its local path.
    assert summary["weights"]["file"] == "tiny.safetensors"
    # The tiny folder's LR was made from HR by the shared degradation, so a faithful
    # SR image downsampled matches the LR closely; random weights are not faithful.
    assert summary["mean_lr_consistency_psnr"] > 10
    assert summary["weights"]["sha256"]


def test_evaluate_bad_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path), "--weights", "x.safetensors"])
    assert result.exit_code == 1 and "expected HR/, LR/ and Ref/" in result.output
