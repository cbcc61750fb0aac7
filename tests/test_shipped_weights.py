"""The shipped weights: found by default, loadable, and better than bicubic on places
their training held out."""

import pytest
import rasterio
import torch
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.model.sensor import EVALUATION_SENSOR
from rrsgan_geo.model.weight_files import load_generator, shipped_weights_path
from rrsgan_geo.training.data import RefSRDataset, find_samples, spatial_split
from rrsgan_geo.training.evaluation import evaluate
from rrsgan_geo.training.trainer import load_config
from tests.conftest import REPO, SHARED
from tests.rasters import lr_scene, mercator_reference

CONFIG = REPO / "weights" / "provenance" / "rrsnet_compact_cpu.yaml"


def test_sr_uses_the_shipped_weights_by_default(tmp_path):
    scene = lr_scene(tmp_path / "scene.tif", window_px=128)
    ref = mercator_reference(tmp_path / "ref.tif")
    result = CliRunner().invoke(
        main, ["sr", str(scene), "--ref", str(ref), "-o", str(tmp_path / "o.tif")]
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.tags()["RRSGAN_MODEL"] == shipped_weights_path().name
        assert out.tags()["RRSGAN_MARGIN"] == "16"


@pytest.mark.slow
def test_shipped_weights_beat_bicubic_on_held_out_places():
    folders = [SHARED / "data" / "rrssrd_val" / name for name in ("val_1st", "val_2nd")]
    if not folders[0].is_dir():
        pytest.skip(f"shared RRSSRD pairs absent ({folders[0]})")
    config = load_config(CONFIG)
    samples = [s for folder in folders for s in find_samples(folder)]
    _, held_out = spatial_split(samples, config.val_fraction, config.split_block, config.seed)
    model, _ = load_generator(shipped_weights_path())
    # Sensor-like LR with the blur measured on the reference (sr's default), and the
    # data set's bicubic LR with the model told so (--scene-blur none).
    runs = (
        (RefSRDataset(held_out[:3], sensor=EVALUATION_SENSOR), "auto"),
        (RefSRDataset(held_out[:3]), "none"),
    )
    for data, scene_blur in runs:
        scores = evaluate(model, data, torch.device("cpu"), scene_blur=scene_blur)
        for score in scores:  # RGB, the authors' protocol; the model card gives all 16
            assert score.psnr_rgb["model"] > score.psnr_rgb["bicubic"] + 0.3, score


def test_each_device_gets_its_default_model():
    """The compact model on every device (the only one trained for real sensors), the
    full-size one shipped beside it for --weights."""
    from rrsgan_geo.model.weight_files import read_weight_file

    cuda, cpu = shipped_weights_path("cuda"), shipped_weights_path("cpu")
    # The compact model everywhere: it alone is trained for real sensors' blur.
    assert cuda.name == cpu.name == "rrsgan_l1_compact.safetensors"
    config = read_weight_file(cpu).metadata.config
    # Trained for real sensors, with an expert for bicubic-like LR (weights/README.md).
    assert config.blur_input and config.bicubic_expert
    full = cpu.parent / "rrsgan_l1_full.safetensors"
    assert read_weight_file(full).metadata.config.nf == 64
    for path in (cuda, cpu):  # exports carry no local paths
        for value in read_weight_file(path).metadata.to_strings().values():
            assert not value.startswith("/") and "/tmp/" not in value and "/home/" not in value


def test_the_default_model_takes_texture_from_a_matching_reference(tmp_path):
    """The NEON scene with the 0.1 m truth, reprojected to Web Mercator and placed 1 m
    off, as reference: through `sr` (co-registration, the shipped CPU model) the output
    is far closer to the truth than without a reference, and than bicubic (measured, RGB:
    21.53 dB with it, 19.33 without, 19.26 bicubic; weights that did not
    use their reference gained under 0.1 dB from it)."""
    import numpy as np

    from rrsgan_geo.model.degradation import upsample_4x
    from rrsgan_geo.training.metrics import psnr
    from tests.rasters import neon_path, read_unit

    scene = lr_scene(tmp_path / "scene.tif")
    ref = mercator_reference(tmp_path / "ref.tif", shift_east_m=1.0)
    base = ["sr", str(scene), "--device", "cpu", "--quiet"]
    for name, extra in (("with", ["--ref", str(ref)]), ("without", ["--allow-missing-ref"])):
        result = CliRunner().invoke(main, [*base, "-o", str(tmp_path / f"{name}.tif"), *extra])
        assert result.exit_code == 0, result.output

    truth = read_unit(neon_path())
    valid = (truth < 1).all(dim=0)  # the NEON image's nodata (255) border
    rows, cols = np.nonzero(valid.numpy())
    box = (slice(rows.min() + 8, rows.max() - 8), slice(cols.min() + 8, cols.max() - 8))
    scores = {
        name: psnr(
            read_unit(tmp_path / f"{name}.tif")[:, box[0], box[1]],
            truth[:, box[0], box[1]],
            y_channel=False,
        )
        for name in ("with", "without")
    }
    bicubic = upsample_4x(read_unit(scene)[None])[0]
    scores["bicubic"] = psnr(bicubic[:, box[0], box[1]], truth[:, box[0], box[1]], y_channel=False)
    assert scores["with"] > scores["without"] + 1.5, scores
    assert scores["with"] > scores["bicubic"] + 1.5, scores
