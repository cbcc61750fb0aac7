"""The shipped weights: found by default, loadable, and better than bicubic on places
their training held out."""

import pytest
import rasterio
import torch
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.data import RefSRDataset, find_samples, spatial_split
from rrsgan_geo.evaluation import evaluate
from rrsgan_geo.training import load_config
from rrsgan_geo.weight_files import load_generator, shipped_weights_path
from tests.conftest import REPO, SHARED
from tests.rasters import lr_scene, mercator_reference

CONFIG = REPO / "examples" / "train" / "rrsnet_compact_cpu.yaml"


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


def test_shipped_weights_beat_bicubic_on_held_out_places():
    folders = [SHARED / "data" / "rrssrd_val" / name for name in ("val_1st", "val_2nd")]
    if not folders[0].is_dir():
        pytest.skip(f"shared RRSSRD pairs absent ({folders[0]})")
    config = load_config(CONFIG)
    samples = [s for folder in folders for s in find_samples(folder)]
    _, held_out = spatial_split(samples, config.val_fraction, config.split_block, config.seed)
    model, _ = load_generator(shipped_weights_path())
    scores = evaluate(model, RefSRDataset(held_out[:3]), torch.device("cpu"))
    for score in scores:  # RGB, the authors' protocol; the model card gives all 16
        assert score.psnr_rgb["model"] > score.psnr_rgb["bicubic"] + 0.3, score


def test_each_device_gets_its_default_model():
    """Full size where a GPU runs it fast, compact on CPUs (22x fewer MACs per pixel)."""
    from rrsgan_geo.weight_files import read_weight_file

    cuda, cpu = shipped_weights_path("cuda"), shipped_weights_path("cpu")
    assert cuda.name == "rrsgan_l1_full.safetensors"
    assert cpu.name == "rrsgan_l1_compact.safetensors"
    assert read_weight_file(cuda).metadata.config.nf == 64
    assert read_weight_file(cpu).metadata.config.nf == 16
    for path in (cuda, cpu):  # exports carry no local paths
        for value in read_weight_file(path).metadata.to_strings().values():
            assert not value.startswith("/") and "/tmp/" not in value and "/home/" not in value
