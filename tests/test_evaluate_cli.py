"""`rrsgan-geo evaluate` end to end on a generated folder."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from rrsgan_geo.cli.main import main
from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.degradation import down_up_4x
from rrsgan_geo.model.weight_files import WeightsMetadata, save_weights
from rrsgan_geo.training import evaluation
from rrsgan_geo.training.data import RefSRDataset, find_samples
from rrsgan_geo.training.metrics import Scorer
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
    # One date only: no other-date row.
    assert summary["other_date_samples"] == 0 and "model_other_date_ref" not in result.output


def test_another_dates_hr_is_scored_as_a_reference(tmp_path):
    """Two folders holding the same places (RRSSRD's val_1st and val_2nd): each sample
    is also scored with the other date's HR, co-registered, as reference, and the CLI
    says what it adds over no reference on those samples."""
    first = make_refsr_folder(tmp_path / "date1", count=2)
    second = make_refsr_folder(tmp_path / "date2", count=2)
    for path in (second / "HR").iterdir():  # another date: the same place, recoloured
        image = np.asarray(Image.open(path)).astype(np.float32)
        Image.fromarray(np.clip(image * 0.85 + 20, 0, 255).astype(np.uint8)).save(path)
    data = RefSRDataset([*find_samples(first), *find_samples(second)])
    torch.manual_seed(0)
    model = RRSNet(TINY).eval()
    scores = evaluation.evaluate(model, data, torch.device("cpu"))
    for index, score in enumerate(scores):
        item, (other_index,) = data[index], data.other_dates[index]
        assert data.samples[other_index].name == data.samples[index].name
        other = data.other_date_reference(index, other_index)
        assert torch.equal(other, data[other_index]["HR"])  # same grid: nothing to move
        with torch.no_grad():
            expected = model(
                item["LR"][None], item["LR_UX4"][None], other[None], down_up_4x(other[None])
            ).clamp(0, 1)[0]
        assert score.psnr_rgb[evaluation.OTHER_DATE] == pytest.approx(
            Scorer(item["HR"]).psnr(expected, y_channel=False), abs=1e-6
        )
    summary = evaluation.summarise(scores)
    gains = [s.psnr_rgb[evaluation.OTHER_DATE] - s.psnr_rgb["model_no_ref"] for s in scores]
    assert summary["other_date_samples"] == 4
    assert summary["other_date_ref_adds_rgb"] == pytest.approx(sum(gains) / 4)

    args = ["evaluate", str(first), str(second), "--weights", str(_tiny_weights(tmp_path))]
    result = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "model_other_date_ref" in result.output
    assert (
        "another date's HR as reference adds" in result.output
        and "on the 4 samples" in result.output
    )


def test_evaluate_bad_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path), "--weights", "x.safetensors"])
    assert result.exit_code == 1 and "expected HR/, LR/ and Ref/" in result.output


def test_an_image_cut_short_is_one_line_naming_it(tmp_path):
    """PIL's 'image file is truncated' was the whole message: which of the data set's
    files it was, it did not say."""
    folder = make_refsr_folder(tmp_path / "data", count=2)
    cut = sorted((folder / "HR").iterdir())[1]
    with open(cut, "r+b") as file:
        file.truncate(cut.stat().st_size // 2)
    args = ["evaluate", str(folder), "--weights", str(_tiny_weights(tmp_path)), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"reading image {cut} failed: image file is truncated" in result.output, result.output


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


def test_evaluate_on_sensor_like_lr_tells_the_model_the_blur_it_measures(tmp_path):
    """--degradation sensor scores LR made from the HR by the fixed evaluation sensor
    (blurrier than the folder's bicubic LR, so bicubic scores lower); with auto the
    blur is measured on each sample's reference, with a number it is that number."""
    folder = make_refsr_folder(tmp_path / "data", count=1)
    weights = _tiny_weights(tmp_path)
    summaries = {}
    for degradation, blur in (("bicubic", "auto"), ("sensor", "auto"), ("sensor", "0.6")):
        out = tmp_path / f"{degradation}{blur}.json"
        args = ["evaluate", str(folder), "--weights", str(weights), "--json", str(out)]
        args += ["--degradation", degradation, "--scene-blur", blur, "--device", "cpu"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert f"{degradation} LR, scene blur {blur}" in result.output
        summaries[degradation, blur] = json.loads(out.read_text())
    bicubic, sensor, given = summaries.values()
    assert sensor["degradation"] == "sensor" and bicubic["degradation"] == "bicubic"
    assert sensor["mean_psnr_rgb"]["bicubic"] < bicubic["mean_psnr_rgb"]["bicubic"] - 0.5
    assert given["mean_scene_blur"] == 0.6
    assert sensor["mean_scene_blur"] > bicubic["mean_scene_blur"] + 0.2
