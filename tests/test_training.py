"""Training a tiny configuration on CPU: the loss goes down, resume is exact."""

import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from click.testing import CliRunner

from rrsgan_geo.cli.main import main
from rrsgan_geo.errors import ConfigError, WeightsNotFoundError
from rrsgan_geo.model import GeneratorConfig, RRSNet, with_bicubic_expert
from rrsgan_geo.model.weight_files import WeightsMetadata, read_weight_file, save_weights
from rrsgan_geo.training.trainer import INPUT_KEYS, Trainer, load_config
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


def test_amp_bf16_trains_in_bf16_on_the_cpu_and_fp16_stays_off_there(tmp_path):
    """bf16 autocast is faster on CPUs with bf16 arithmetic (1.25x, same validation);
    fp16 has no fast CPU kernels, so a CPU run of an fp16 config trains in fp32."""
    conv, x = torch.nn.Conv2d(3, 3, 3), torch.rand(1, 3, 8, 8)
    trainers = {}
    for amp, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float32)):
        config = write_config(tmp_path / amp, steps=12, amp=amp)
        trainers[amp] = Trainer(load_config(config), torch.device("cpu"))
        with trainers[amp]._autocast():
            assert conv(x).dtype == dtype, amp
    trainer = trainers["bf16"]
    before = _fixed_batch_loss(trainer)
    trainer.run()
    assert _fixed_batch_loss(trainer) < 0.9 * before  # it learns in bf16 too


def test_loss_goes_down(tmp_path):
    trainer = Trainer(load_config(write_config(tmp_path, steps=12)), torch.device("cpu"))
    before = _fixed_batch_loss(trainer)
    trainer.run()
    assert _fixed_batch_loss(trainer) < 0.9 * before
    assert read_weight_file(tmp_path / "run" / "latest.safetensors").metadata.config.nf == 8
    assert (tmp_path / "run" / "best.safetensors").is_file()


def test_channels_last_training_equals_the_standard_layout(tmp_path):
    """The trainer runs the generator and its batches channels_last (as `sr` does);
    the same steps in the standard layout give the same losses and weights within
    float rounding."""
    config = load_config(write_config(tmp_path))
    fast, plain = Trainer(config, torch.device("cpu")), Trainer(config, torch.device("cpu"))
    plain.generator.to(memory_format=torch.contiguous_format)
    build = plain._build_batch
    plain._build_batch = lambda step: {
        key: images.contiguous() for key, images in build(step).items()
    }
    assert fast.generator.Encoder.conv1[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert fast._build_batch(0)["Ref"].is_contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        assert fast.train_step()["pixel"] == pytest.approx(plain.train_step()["pixel"], rel=1e-4)
    for (name, a), b in zip(
        fast.generator.state_dict().items(), plain.generator.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


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


@pytest.mark.slow
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
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"val_every": 0}, "val_every must be >= 1"),
        ({"steps": -5}, "steps must be >= 1"),
        ({"margin": -3}, "margin must be >= 0"),
        ({"learning_rate": -1}, "learning_rate and gamma must be > 0"),
        ({"betas": [0.9]}, "betas must be two numbers"),
        ({"steps": "many"}, "steps must be a whole number, got 'many'"),
        ({"gamma": "half"}, "gamma must be a number, got 'half'"),
        ({"loss_weights": {"gan": "lots"}}, "loss_weights.gan must be a number"),
        ({"reference": {"synthetic": {"haze": "x"}}}, "reference.synthetic.haze must be"),
    ],
)
def test_bad_configs_are_one_line_errors(tmp_path, overrides, message):
    result = CliRunner().invoke(main, ["train", str(write_config(tmp_path, **overrides))])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_yaml_exponents_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads `learning_rate: 2e-4` as text; it used to reach torch's optimiser
    as a string and fail there with a traceback."""
    path = write_config(tmp_path)
    text = path.read_text().replace("learning_rate: 0.001", "learning_rate: 2e-4")
    optional = "grown_learning_rate: 3e-4\ndegradation: {told_error_sharp: 5e-2}\n"
    path.write_text(text + "loss_weights: {gan: 5e-3}\n" + optional)
    config = load_config(path)
    assert config.learning_rate == 2e-4 and config.loss_weights.gan == 5e-3
    # Optional numbers too (`float | None`), when they are set.
    assert config.grown_learning_rate == 3e-4 and config.degradation.told_error_sharp == 5e-2


def _no_local_paths(path, tmp_path):
    metadata = read_weight_file(path).metadata.to_strings()
    for value in metadata.values():
        assert str(tmp_path) not in value and not value.startswith("/"), value
    return metadata


def test_max_minutes_stops_saves_and_the_export_continues(tmp_path):
    """A short GPU window: stop at a step boundary, export; resume exactly, or start a
    new run from the export (fresh optimiser with a warm-up)."""
    config = load_config(write_config(tmp_path, steps=50))
    trainer = Trainer(config, torch.device("cpu"))
    assert trainer.run(max_minutes=1e-6) is False  # past the deadline after one step
    assert trainer.step == 1
    latest = tmp_path / "run" / "latest.safetensors"
    metadata = _no_local_paths(latest, tmp_path)
    assert metadata["training_data"] == f"{tmp_path.name}/data"
    resumed = Trainer(config, torch.device("cpu"), resume=True)
    assert resumed.step == 1
    # A new window from the exported weights: same tensors, step 0, warm-up from small.
    follow_up = load_config(
        write_config(tmp_path, output_dir="run2", init_weights=str(latest), warmup_steps=4)
    )
    continued = Trainer(follow_up, torch.device("cpu"))
    exported = read_weight_file(latest).state_dict
    for key, value in continued.generator.state_dict().items():
        assert torch.equal(value, exported[key])
    assert continued.scheduler.get_last_lr()[0] == pytest.approx(follow_up.learning_rate / 4)
    continued.run()
    notes = _no_local_paths(tmp_path / "run2" / "latest.safetensors", tmp_path)["notes"]
    assert "continued from latest.safetensors" in notes


def test_grown_blur_conditioning_learns_at_its_own_rate_and_resumes(tmp_path):
    """Weights without blur conditioning, continued with it: training starts from what
    they computed, the grown parameters (and only they) learn at
    `grown_learning_rate`, the schedule warms both up alike, and a resumed run keeps
    the two groups."""
    Trainer(load_config(write_config(tmp_path, steps=2)), torch.device("cpu")).run()
    plain = tmp_path / "run" / "latest.safetensors"
    conditioned = {"nf": 8, "n_blocks": 1, "groups": 2, "blur_input": True}
    config = load_config(
        write_config(
            tmp_path,
            output_dir="grown",
            init_weights=str(plain),
            model={**conditioned, "blur_modulation": True},
            degradation={"bicubic": 0.5},
            learning_rate=1e-4,
            grown_learning_rate="2e-3",
            warmup_steps=2,
        )
    )
    assert config.grown_learning_rate == 2e-3
    trainer = Trainer(config, torch.device("cpu"))
    assert trainer.grown == {
        "content_extractor.condition.weight",
        *(f"blur_modulation.net.{i}.{kind}" for i in (0, 2) for kind in ("weight", "bias")),
    }
    base, grown = trainer.optimizer.param_groups
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([5e-5, 1e-3])
    named = dict(trainer.generator.named_parameters())
    assert {id(p) for p in grown["params"]} == {id(named[n]) for n in trainer.grown}
    assert len(base["params"]) + len(grown["params"]) == sum(
        p.requires_grad for p in named.values()
    )
    exported = read_weight_file(plain).state_dict
    for key, value in exported.items():
        assert torch.equal(trainer.generator.state_dict()[key], value)
    modulation = trainer.generator.blur_modulation.net[2].weight
    assert not modulation.any()
    trainer.run()
    assert modulation.any()  # the zero-started modulation learnt
    resumed = Trainer(config, torch.device("cpu"), resume=True)
    # Past the milestone (step 3) both rates are halved.
    assert [g["lr"] for g in resumed.optimizer.param_groups] == pytest.approx([5e-5, 1e-3])
    assert resumed.optimizer.state_dict()["state"].keys() == (
        trainer.optimizer.state_dict()["state"].keys()
    )


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        (0, "grown_learning_rate must be a number > 0"),
        (-1e-4, "grown_learning_rate must be a number > 0"),
        ("fast", "grown_learning_rate must be a number, got 'fast'"),
    ],
)
def test_a_bad_grown_learning_rate_is_a_config_error(tmp_path, rate, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, grown_learning_rate=rate))


def test_a_joined_file_trains_on_as_its_sensor_network(tmp_path):
    """A generator with a bicubic expert is not trained as one; continued from such a
    file (the shipped compact weights), training takes its sensor network and says so."""
    conditioned = {"nf": 8, "n_blocks": 1, "groups": 2, "blur_input": True}
    with pytest.raises(ConfigError, match="not trained as one"):
        Trainer(
            load_config(write_config(tmp_path, model={**conditioned, "bicubic_expert": True})),
            torch.device("cpu"),
        )
    torch.manual_seed(0)
    networks = [RRSNet(GeneratorConfig(**conditioned)) for _ in range(2)]
    joined = tmp_path / "joined.safetensors"
    model = with_bicubic_expert(*networks)
    save_weights(model.state_dict(), joined, WeightsMetadata(config=model.config))
    trainer = Trainer(
        load_config(write_config(tmp_path, init_weights=str(joined), model=conditioned)),
        torch.device("cpu"),
    )
    assert trainer.generator.bicubic_expert is None
    for key, value in networks[0].state_dict().items():
        assert torch.equal(trainer.generator.state_dict()[key], value)
    assert "its sensor network (the bicubic expert left out)" in trainer.init_note


def test_cli_max_minutes(tmp_path):
    result = CliRunner().invoke(
        main, ["train", str(write_config(tmp_path, steps=50)), "--max-minutes", "0.00001"]
    )
    assert result.exit_code == 0, result.output
    assert "stopped after" in result.output and "at step 1" in result.output


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_to_resume_from(tmp_path):
    """A batch scheduler stops a job with SIGTERM (SLURM at its time limit): the run
    saves its state and says how to continue, as after Ctrl-C, instead of dying with
    the steps since the last checkpoint lost."""
    config = write_config(tmp_path, steps=100_000, checkpoint_every=100_000)
    command = [sys.executable, "-m", "rrsgan_geo.cli.main", "train", str(config)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    run_dir = tmp_path / "run"
    deadline = time.monotonic() + 120
    while not run_dir.is_dir() and time.monotonic() < deadline:  # training has begun
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert "interrupted at step" in stderr and "continue with --resume" in stderr, stderr
    assert "Traceback" not in stderr
    resumed = Trainer(load_config(config), torch.device("cpu"), resume=True)
    assert (run_dir / "latest.safetensors").is_file() and resumed.step >= 0


def _ddp_worker(rank: int, world_size: int, config_path: str, init_file: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        Trainer(load_config(config_path), torch.device("cpu")).run()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_train_as_one_with_the_same_global_batch(tmp_path):
    import torch.multiprocessing as mp

    overrides = dict(steps=3, batch_size=4, val_every=100, checkpoint_every=100)
    reference = {"sources": {"real": 1, "synthetic": 1, "none": 1}}
    single = write_config(tmp_path / "one", reference=reference, **overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: float sums depend on the thread count
    try:
        Trainer(load_config(single), torch.device("cpu")).run()
    finally:
        torch.set_num_threads(threads)
    double = write_config(tmp_path / "two", reference=reference, **overrides)
    mp.spawn(_ddp_worker, args=(2, str(double), str(tmp_path / "rendezvous")), nprocs=2, join=True)
    one = read_weight_file(tmp_path / "one" / "run" / "latest.safetensors").state_dict
    two = read_weight_file(tmp_path / "two" / "run" / "latest.safetensors").state_dict
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5)
    torch.manual_seed(0)  # the seed Trainer builds its generator with: training moved it
    initial = RRSNet(load_config(single).model).state_dict()
    assert not torch.allclose(
        one["gpcd_align.L3_dcnpack.weight"], initial["gpcd_align.L3_dcnpack.weight"]
    )


def test_every_config_key_is_documented():
    """docs/training_config.md lists every key a config may hold, so it cannot fall
    behind the code: a new key without its line fails here."""
    import dataclasses

    from rrsgan_geo.model.sensor import TrainingDraws
    from rrsgan_geo.training.adversarial import LossWeights
    from rrsgan_geo.training.data import ReferenceConfig
    from rrsgan_geo.training.reference_synthesis import SyntheticReferenceConfig
    from rrsgan_geo.training.trainer import TrainConfig
    from tests.conftest import REPO

    text = (REPO / "docs" / "training_config.md").read_text()
    sections = (TrainConfig, LossWeights, ReferenceConfig, SyntheticReferenceConfig, TrainingDraws)
    for section in sections:
        for item in dataclasses.fields(section):
            assert f"| `{item.name}` |" in text, f"{section.__name__}.{item.name}"


def test_the_relevance_ranking_loss_asks_only_for_the_order():
    """Zero once the gate is `margin` higher where the reference is intact than where it
    was replaced, the shortfall otherwise; samples without both parts are left out."""
    from rrsgan_geo.training.losses import RELEVANCE_MARGIN, relevance_ranking_loss

    replaced = torch.zeros(3, 1, 8, 8)
    replaced[:2, :, :, :4] = 1  # samples 0 and 1: west half replaced; sample 2: intact
    gate = torch.full((3, 8, 8), 0.6)
    gate[0, :, :4] = 0.6 - RELEVANCE_MARGIN - 0.1  # ordered well enough
    gate[1, :, :4] = 0.55  # 0.05 lower: short of the margin by margin - 0.05
    gate[2] = 0.0  # no replaced part: no say
    loss = relevance_ranking_loss(gate, replaced)
    assert float(loss) == pytest.approx((RELEVANCE_MARGIN - 0.05) / 2, abs=1e-6)
    assert float(relevance_ranking_loss(gate, torch.zeros_like(replaced))) == 0


def test_a_relevance_weight_adds_the_ranking_loss_and_it_reaches_the_gate(tmp_path):
    """`loss_weights.relevance` adds the ranking loss to each step (and only then); the
    gate kept during the forward carries its gradient to the x4 relevance attention,
    and a small step along it widens the gap between intact and replaced pixels."""
    from rrsgan_geo.model.generator import relevance_kept
    from rrsgan_geo.training.losses import relevance_ranking_loss

    synthetic = {"replace_probability": 1.0, "cloud_probability": 0.0, "max_replaced_fraction": 0.5}
    reference = {"sources": {"synthetic": 1}, "synthetic": synthetic}
    config = write_config(
        tmp_path, lr_crop=16, batch_size=8, reference=reference, loss_weights={"relevance": 1.0}
    )
    trainer = Trainer(load_config(config), torch.device("cpu"))
    assert trainer.train_step()["relevance"] > 0
    plain = Trainer(load_config(write_config(tmp_path / "plain")), torch.device("cpu"))
    assert "relevance" not in plain.train_step()

    batch = trainer.train_data.batch(8, 16, seed=5, step=0, reference=trainer.config.reference)
    attention = trainer.generator.texture_transfer.ram_head_large
    gate = [p for name, p in attention.named_parameters() if name.startswith("mul_")]

    def ranking() -> torch.Tensor:
        with relevance_kept(trainer.generator) as relevance:
            trainer.generator(*(batch[k] for k in INPUT_KEYS))
        return relevance_ranking_loss(relevance[0], batch["Replaced"])

    before = ranking()
    grads = torch.autograd.grad(before, gate)
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    assert norm > 0
    with torch.no_grad():
        for parameter, grad in zip(gate, grads, strict=True):
            parameter -= 1e-2 * grad / norm
    assert float(ranking().detach()) < float(before.detach())
