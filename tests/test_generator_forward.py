"""Forward passes of the generator on CPU."""

import pytest
import torch
from torch.nn import functional as F

from rrsgan_geo.errors import ConfigError
from rrsgan_geo.model import RRSNet
from rrsgan_geo.model.blocks import SELU


def _inputs(lr_size: int, batch: int = 1) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    lr = torch.rand(batch, 3, lr_size, lr_size)
    lr_ux4 = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    ref = torch.rand(batch, 3, 4 * lr_size, 4 * lr_size)
    ref_dux4 = F.interpolate(
        F.interpolate(ref, scale_factor=0.25, mode="bicubic", antialias=True),
        scale_factor=4,
        mode="bicubic",
    )
    return lr, lr_ux4, ref, ref_dux4


def test_full_size_model_forward_on_32x32():
    model = RRSNet().eval()
    with torch.no_grad():
        out = model(*_inputs(32))
    assert out.shape == (1, 3, 128, 128)
    assert torch.isfinite(out).all()


def test_output_is_a_residual_over_bilinear_lr(compact_model):
    """With the last conv zeroed the generator returns the bilinear 4x upsample exactly."""
    with torch.no_grad():
        compact_model.texture_transfer.tail_large[2].weight.zero_()
        compact_model.texture_transfer.tail_large[2].bias.zero_()
        lr, *others = _inputs(8, batch=2)
        out = compact_model(lr, *others)
    torch.testing.assert_close(
        out, F.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)
    )


def test_reference_changes_the_output(compact_model):
    lr, lr_ux4, ref, ref_dux4 = _inputs(8)
    with torch.no_grad():
        first = compact_model(lr, lr_ux4, ref, ref_dux4)
        second = compact_model(lr, lr_ux4, ref.flip(-1), ref_dux4.flip(-1))
    assert (first - second).abs().max() > 1e-4


def test_non_square_batch_and_backward(compact_model):
    compact_model.train()
    lr = torch.rand(2, 3, 8, 12)
    grid = torch.rand(2, 3, 32, 48)
    out = compact_model(lr, grid, grid, grid)
    assert out.shape == (2, 3, 32, 48)
    out.mean().backward()
    offsets = compact_model.gpcd_align.L1_dcnpack.conv_offset_mask.weight
    assert offsets.grad is not None and offsets.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("lr_shape", "grid_shape", "message"),
    [
        ((1, 3, 10, 12), (1, 3, 40, 48), "multiples of 4"),
        ((1, 3, 8, 8), (1, 3, 32, 36), "must have shape"),
        ((1, 4, 8, 8), (1, 4, 32, 32), "N x 3"),
    ],
)
def test_bad_shapes_are_refused(compact_model, lr_shape, grid_shape, message):
    grid = torch.rand(grid_shape)
    with pytest.raises(ConfigError, match=message):
        compact_model(torch.rand(lr_shape), grid, grid, grid)


def test_inference_selu_equals_torchs():
    """The encoders' SELU without gradients (exp-based, for the CPU's speed) gives
    torch's values within float rounding, infinities and NaN included; with gradients
    it is torch's own, so training is unchanged."""
    values = torch.cat([torch.linspace(-30, 30, 10_001), torch.tensor([0.0, -1e-8, 1e-8])])
    values = torch.cat([values, torch.tensor([float("inf"), float("-inf"), float("nan")])])
    expected = F.selu(values)
    with torch.inference_mode():
        fast = SELU()(values)
        in_place = values.clone()
        returned = SELU(inplace=True)(in_place)
    torch.testing.assert_close(fast, expected, atol=2e-7, rtol=1e-6, equal_nan=True)
    assert returned.data_ptr() == in_place.data_ptr()
    torch.testing.assert_close(in_place, expected, atol=2e-7, rtol=1e-6, equal_nan=True)
    assert not torch.equal(fast[:-1], expected[:-1])  # the fast path ran (exp(x) - 1 rounds)

    leaf = values[:-3].clone().requires_grad_()
    trained = SELU()(leaf)
    assert torch.equal(trained, F.selu(values[:-3]))
    trained.sum().backward()
    assert torch.isfinite(leaf.grad).all()
