"""Running batches: out-of-memory halving, devices, precisions."""

import pytest
import torch

from rrsgan_geo.devices import resolve_device
from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model import RRSNet
from rrsgan_geo.sr import inference
from rrsgan_geo.sr.inference import TileModel, resolve_precision
from tests.test_sr_pipeline import TINY, tiny_generator


class _FailsAboveOneTile(torch.nn.Module):
    """A generator that runs out of (simulated) CUDA memory on batches above one tile."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inner = RRSNet(TINY)
        self.sizes: list[int] = []

    def forward(self, lr, *others, blur=None):
        self.sizes.append(lr.shape[0])
        if lr.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("simulated")
        return self.inner(lr, *others)


def test_out_of_memory_halves_the_batch_and_goes_on(monkeypatch):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    model = _FailsAboveOneTile()
    # The model's raw calls and output: no flat-field measurement or correction.
    runner = TileModel(model, torch.device("cpu"), batch_size=4, flat_field_correction=False)
    inputs = (torch.rand(3, 3, 8, 8),) + tuple(torch.rand(3, 3, 32, 32) for _ in range(3))
    out = runner(inputs)
    assert out.shape == (3, 3, 32, 32)
    assert runner.batch_size == 1 and runner.oom_halvings == 2
    assert model.sizes == [3, 2, 1, 1, 1]  # 4 -> 2 -> 1, then every tile done once
    with torch.no_grad():
        expected = model.inner(*(t[:1] for t in inputs))  # unclamped: scaling never clips
    torch.testing.assert_close(out[:1], expected)


def test_out_of_memory_at_batch_one_is_raised():
    model = _FailsAboveOneTile()
    model.forward = lambda *a, **k: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("x"))
    runner = TileModel(model, torch.device("cpu"), batch_size=1)
    grid = torch.rand(1, 3, 32, 32)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        runner((torch.rand(1, 3, 8, 8), grid, grid, grid))


@pytest.mark.parametrize(("spec", "message"), [("tpu", "use auto"), ("cuda:9", "cuda:9")])
def test_bad_devices(spec, message):
    if spec.startswith("cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 9:
        pytest.skip("this machine really has 10 GPUs")
    with pytest.raises(ConfigError, match=message):
        resolve_device(spec)


@pytest.mark.parametrize(
    ("device", "bf16_hardware", "expected"),
    [
        ("cpu", False, "fp32"),
        ("cpu", True, "bf16"),
        ("cuda", True, "bf16"),
        ("cuda", False, "fp32"),
    ],
)
def test_auto_precision_is_bf16_for_8_bit_outputs_on_bf16_hardware(
    monkeypatch, device, bf16_hardware, expected
):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: bf16_hardware)
    monkeypatch.setattr(inference, "cpu_has_bf16_arithmetic", lambda: bf16_hardware)
    here = torch.device(device)
    assert resolve_precision("auto", here, "uint8") == expected
    for wider in ("uint16", "int16", "float32"):  # bf16 would move them by tens of DN
        assert resolve_precision("auto", here, wider) == "fp32"
    for given in ("fp32", "fp16", "bf16"):  # what the user asks for is what runs
        assert resolve_precision(given, here, "uint16") == given


def test_bf16_on_cpu_runs_close_to_fp32():
    torch.manual_seed(0)
    model = RRSNet(TINY)
    inputs = (torch.rand(1, 3, 8, 8),) + tuple(torch.rand(1, 3, 32, 32) for _ in range(3))
    fp32 = TileModel(model, torch.device("cpu"), "fp32")(inputs)
    bf16 = TileModel(model, torch.device("cpu"), "bf16")(inputs)
    assert (fp32 - bf16).abs().max() < 0.05


def test_the_channels_last_runner_equals_the_plain_model():
    """TileModel runs the model channels_last (faster on CPUs and GPUs); the plain NCHW
    forward is the reference, with deformable offsets that really sample off-grid."""
    model = tiny_generator().model
    inputs = (torch.rand(2, 3, 12, 12),) + tuple(torch.rand(2, 3, 48, 48) for _ in range(3))
    with torch.no_grad():
        plain = model(*inputs)
    fast = TileModel(model, torch.device("cpu"), batch_size=2, flat_field_correction=False)(inputs)
    assert next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-5)


def test_the_flat_field_correction_removes_the_models_fixed_pattern():
    """On a flat image the corrected output is flat and at the image's level (what the
    model adds at each place in its 4 x 4 block is measured and taken off), and the
    correction is the same wherever a tile starts, so outputs stay independent of the
    tiling."""
    torch.manual_seed(0)
    model = RRSNet(TINY).eval()
    level = 0.37  # between two measured levels
    lr = torch.full((1, 3, 16, 16), level)
    grid = torch.full((1, 3, 64, 64), level)
    raw = TileModel(model, torch.device("cpu"), flat_field_correction=False)((lr, grid, grid, grid))
    fixed = TileModel(model, torch.device("cpu"))((lr, grid, grid, grid))
    core = (slice(None), slice(None), slice(16, -16), slice(16, -16))

    def spread(output):  # over the 16 places of the 4 x 4 blocks, per channel
        blocks = output[core].unflatten(-1, (-1, 4)).unflatten(-3, (-1, 4)).mean(dim=(-4, -2))
        return float((blocks.amax(dim=(-2, -1)) - blocks.amin(dim=(-2, -1))).max())

    assert spread(raw) > 1e-3  # a random model's pattern
    assert spread(fixed) < 0.2 * spread(raw)
    offset = float((raw[core] - level).abs().mean())
    assert float((fixed[core] - level).abs().mean()) < 0.2 * offset
