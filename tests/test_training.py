"""Training a tiny configuration on CPU: the loss goes down, resume is exact."""

import pytest
import torch
import yaml
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import ConfigError, WeightsNotFoundError
from rrsgan_geo.training import INPUT_KEYS, Trainer, load_config
from rrsgan_geo.weight_files import read_weight_file
from tests.folders import make_refsr_folder


def write_config(tmp_path, **overrides):
    data = (
        make_refsr_folder(tmp_path / "data", count=4)
        if not (tmp_path / "data").exists()
        else tmp_path / "data"
    )
    config = {
        "name": "tiny",
        "output_dir": "run",
        "data": [str(data)],
        "model": {"nf": 8, "n_blocks": 1, "groups": 2},
        "steps": 4,
        "batch_size": 2,
        "lr_crop": 8,
        "learning_rate": 1e-3,
        "milestones": [3],
        "val_fraction": 0.25,
        "split_block": 32,
        "val_images": 1,
        "val_every": 2,
        "checkpoint_every": 2,
    }
    config.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fixed_batch_loss(trainer: Trainer) -> float:
    batch = trainer.train_data.batch(4, 8, seed=123, step=0)
    with torch.no_grad():
        sr = trainer.generator(*(batch[k] for k in INPUT_KEYS))
    return torch.nn.functional.l1_loss(sr, batch["HR"]).item()


def test_loss_goes_down(tmp_path):
    trainer = Trainer(load_config(write_config(tmp_path, steps=12)), torch.device("cpu"))
    before = _fixed_batch_loss(trainer)
    trainer.run()
    assert _fixed_batch_loss(trainer) < 0.9 * before
    assert read_weight_file(tmp_path / "run" / "latest.safetensors").metadata.config.nf == 8
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_resume_continues_with_the_same_losses(tmp_path):
    straight = []
    config = write_config(tmp_path / "a", steps=4)
    Trainer(load_config(config), torch.device("cpu")).run(lambda log: straight.append(log))

    config = write_config(tmp_path / "b", steps=2)
    Trainer(load_config(config), torch.device("cpu")).run()
    config = write_config(tmp_path / "b", steps=4)
    resumed_trainer = Trainer(load_config(config), torch.device("cpu"), resume=True)
    assert resumed_trainer.step == 2
    resumed = []
    resumed_trainer.run(lambda log: resumed.append(log))
    assert [log.step for log in resumed] == [3, 4]
    for a, b in zip(straight[2:], resumed, strict=True):
        assert a.losses == pytest.approx(b.losses, rel=1e-6, abs=1e-9)
        assert a.learning_rate == b.learning_rate  # the schedule resumed too (milestone 3)


def test_a_second_start_needs_resume_and_resume_needs_a_checkpoint(tmp_path):
    config = load_config(write_config(tmp_path, steps=1))
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(config, torch.device("cpu"), resume=True)
    Trainer(config, torch.device("cpu")).run()
    with pytest.raises(ConfigError, match="holds a run already"):
        Trainer(config, torch.device("cpu"))


def test_stage_2_fails_early_without_vgg_weights(tmp_path):
    config = load_config(write_config(tmp_path, stage=2, vgg19_weights="missing_vgg19.pth"))
    with pytest.raises(WeightsNotFoundError, match="vgg19"):
        Trainer(config, torch.device("cpu"))


def test_stage_2_steps_with_a_vgg_file(tmp_path):
    """The adversarial and perceptual path runs (a random VGG19 stands in for ImageNet's)."""
    import torchvision

    torch.save(torchvision.models.vgg19().state_dict(), tmp_path / "vgg19.pth")
    make_refsr_folder(tmp_path / "data", count=2, hr_size=128)
    config = load_config(
        write_config(tmp_path, stage=2, vgg19_weights="vgg19.pth", steps=2, lr_crop=32)
    )
    logs = []
    Trainer(config, torch.device("cpu")).run(lambda log: logs.append(log))
    assert {"pixel", "perceptual", "grad_pixel", "gan_image", "gan_gradient", "d_image"} <= set(
        logs[-1].losses
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stage": 3}, "stage must be"),
        ({"banana": 1}, "unknown key"),
        ({"lr_crop": 10}, "multiple of 8"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, overrides, message):
    result = CliRunner().invoke(main, ["train", str(write_config(tmp_path, **overrides))])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
