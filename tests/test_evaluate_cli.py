"""`rrsgan-geo evaluate` end to end on a generated folder."""

import json

import pytest
import torch
from click.testing import CliRunner

from rrsgan_geo import evaluation
from rrsgan_geo.cli.main import main
from rrsgan_geo.model import RRSNet
from rrsgan_geo.weight_files import WeightsMetadata, save_weights
from tests.folders import make_refsr_folder
from tests.test_sr_pipeline import TINY


def _tiny_weights(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    save_weights(RRSNet(TINY).state_dict(), weights, WeightsMetadata(config=TINY))
    return weights


def test_evaluate_prints_a_table_and_writes_json(tmp_path):
    folder = make_refsr_folder(tmp_path / "data", count=2)
    weights = _tiny_weights(tmp_path)
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
    assert summary["samples"] == 2 and len(summary["per_sample"]) == 2 and summary["complete"]
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


def test_an_interrupted_evaluation_reports_the_images_it_scored(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) during a long evaluation: the images scored so far are
    printed and written, marked incomplete, and the exit status says it stopped."""
    folder = make_refsr_folder(tmp_path / "data", count=3)
    scored = []
    score_one = evaluation.Scorer

    def interrupted_on_the_third(hr):
        if len(scored) == 2:
            raise KeyboardInterrupt
        scored.append(hr)
        return score_one(hr)

    monkeypatch.setattr(evaluation, "Scorer", interrupted_on_the_third)
    out = tmp_path / "eval.json"
    args = ["evaluate", str(folder), "--weights", str(_tiny_weights(tmp_path)), "--json", str(out)]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 1
    assert "2 samples," in result.output and "model_truth_ref" in result.output
    assert "interrupted: the scores above are of the first 2 of 3 images only" in result.output
    summary = json.loads(out.read_text())
    assert summary["samples"] == 2 and not summary["complete"]


@pytest.mark.parametrize("command", ["evaluate", "sr", "batch"])
def test_a_json_destination_is_checked_before_the_work(tmp_path, command):
    """A --json path in a folder that does not exist used to fail with a traceback
    after the whole run; it is refused when the flag is read."""
    missing = tmp_path / "missing" / "out.json"
    args = {
        "evaluate": ["evaluate", str(tmp_path)],
        "sr": ["sr", str(tmp_path / "scene.tif"), "-o", str(tmp_path / "out.tif")],
        "batch": ["batch", str(tmp_path), "-o", str(tmp_path / "out")],
    }[command]
    result = CliRunner().invoke(main, [*args, "--json", str(missing)])
    assert result.exit_code == 2, result.output
    assert f"folder {missing.parent} does not exist" in result.output
    assert "Traceback" not in result.output


def test_evaluate_scores_the_self_ensemble_that_sr_runs(tmp_path):
    """--self-ensemble 2 scores the mean of the model and its mirror image (as
    `sr --self-ensemble 2` writes it), says so, and records it; bicubic is unchanged."""
    folder = make_refsr_folder(tmp_path / "data", count=1)
    weights = _tiny_weights(tmp_path)
    summaries = {}
    for views in ("1", "2"):
        out = tmp_path / f"eval{views}.json"
        args = ["evaluate", str(folder), "--weights", str(weights), "--json", str(out)]
        result = CliRunner().invoke(main, [*args, "--device", "cpu", "--self-ensemble", views])
        assert result.exit_code == 0, result.output
        summaries[views] = json.loads(out.read_text())
    assert "self-ensemble of 2 views" in result.output
    one, two = (summaries[v]["mean_psnr_rgb"] for v in ("1", "2"))
    assert summaries["2"]["self_ensemble"] == 2 and summaries["1"]["self_ensemble"] == 1
    assert one["bicubic"] == two["bicubic"] and one["model"] != two["model"]
