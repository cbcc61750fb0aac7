"""The deformable convolution against computations that do not use deform_conv2d."""

import torch
from torch.nn import functional as F

from rrsgan_geo.model.deform import MASK_LOGIT_INIT, SeparateOffsetDeformConv

GROUPS, CHANNELS, TAPS = 4, 8, 9
SATURATED = 40.0  # sigmoid(40) == 1.0 exactly in float32


def _layer(offset_bias: torch.Tensor, mask_bias: torch.Tensor) -> SeparateOffsetDeformConv:
    """A layer whose offsets and mask are constants given through conv_offset_mask's bias
    (its weight stays zero), laid out as the authors' DCN_sep: [o1 | o2 | mask logits]."""
    torch.manual_seed(1)
    layer = SeparateOffsetDeformConv(CHANNELS, GROUPS)
    with torch.no_grad():
        layer.bias.normal_()
        layer.conv_offset_mask.bias.copy_(torch.cat([offset_bias, mask_bias]))
    return layer


def _offsets(dy: list[float], dx: list[float]) -> torch.Tensor:
    """DCNv2 offset layout: for group g and tap k, channel 2*(g*9+k) is dy, +1 is dx."""
    offset = torch.zeros(GROUPS, TAPS, 2)
    offset[:, :, 0] = torch.tensor(dy)[:, None]
    offset[:, :, 1] = torch.tensor(dx)[:, None]
    return offset.flatten()


def test_zero_offsets_and_unit_mask_equal_a_plain_conv():
    layer = _layer(torch.zeros(2 * GROUPS * TAPS), torch.full((GROUPS * TAPS,), SATURATED))
    x = torch.randn(2, CHANNELS, 11, 13)
    out = layer(x, torch.randn(2, CHANNELS, 11, 13))
    torch.testing.assert_close(out, F.conv2d(x, layer.weight, layer.bias, padding=1))


def test_integer_offsets_per_group_equal_shifted_convs():
    dy, dx = [1, 0, -2, 3], [0, 2, -1, -3]
    layer = _layer(_offsets(dy, dx), torch.full((GROUPS * TAPS,), SATURATED))
    x = torch.randn(1, CHANNELS, 20, 24)
    out = layer(x, torch.zeros_like(x))
    # Each group's channels are read from (y + dy_g, x + dx_g): shift them back by hand.
    per_group = CHANNELS // GROUPS
    shifted = torch.cat(
        [
            torch.roll(x[:, g * per_group : (g + 1) * per_group], (-dy[g], -dx[g]), dims=(2, 3))
            for g in range(GROUPS)
        ],
        dim=1,
    )
    expected = F.conv2d(shifted, layer.weight, layer.bias, padding=1)
    border = 4  # roll wraps around; deform_conv2d reads zeros: compare the interior
    torch.testing.assert_close(
        out[..., border:-border, border:-border], expected[..., border:-border, border:-border]
    )


def _bilinear_reference(x, offset, mask, weight, bias):
    """Modulated deformable conv written out with grid_sample (zeros outside the image)."""
    batch, channels, height, width = x.shape
    per_group = channels // GROUPS
    offset = offset.view(batch, GROUPS, TAPS, 2, height, width)
    mask = mask.view(batch, GROUPS, TAPS, height, width)
    rows = torch.arange(height, dtype=x.dtype).view(1, height, 1)
    cols = torch.arange(width, dtype=x.dtype).view(1, 1, width)
    columns = torch.zeros(batch, channels, TAPS, height, width)
    for g in range(GROUPS):
        group = x[:, g * per_group : (g + 1) * per_group]
        for k in range(TAPS):
            y = rows + (k // 3 - 1) + offset[:, g, k, 0]
            xx = cols + (k % 3 - 1) + offset[:, g, k, 1]
            grid = torch.stack([2 * xx / (width - 1) - 1, 2 * y / (height - 1) - 1], dim=-1)
            sampled = F.grid_sample(group, grid, align_corners=True, padding_mode="zeros")
            columns[:, g * per_group : (g + 1) * per_group, k] = sampled * mask[:, g, k, None]
    out = torch.einsum("bckhw,ock->bohw", columns, weight.flatten(2))
    return out + bias.view(1, -1, 1, 1)


def test_fractional_offsets_and_mask_match_a_bilinear_reference():
    torch.manual_seed(3)
    layer = SeparateOffsetDeformConv(CHANNELS, GROUPS)
    with torch.no_grad():
        layer.bias.normal_()
        layer.conv_offset_mask.weight.normal_(std=0.3)
        layer.conv_offset_mask.bias.normal_()
    x = torch.randn(2, CHANNELS, 9, 10)
    features = torch.randn(2, CHANNELS, 9, 10)
    predicted = layer.conv_offset_mask(features)
    o1, o2, logits = predicted.chunk(3, dim=1)
    expected = _bilinear_reference(
        x, torch.cat([o1, o2], dim=1), torch.sigmoid(logits), layer.weight, layer.bias
    )
    torch.testing.assert_close(layer(x, features), expected, rtol=1e-4, atol=1e-4)


def test_fresh_layer_samples_the_grid_with_an_open_mask():
    """Zero offsets and mask sigmoid(MASK_LOGIT_INIT), about 0.95, whatever the input."""
    torch.manual_seed(0)
    layer = SeparateOffsetDeformConv(CHANNELS, GROUPS)
    x = torch.randn(1, CHANNELS, 7, 7)
    mask = torch.sigmoid(torch.tensor(MASK_LOGIT_INIT))
    assert mask > 0.9
    expected = F.conv2d(x * mask, layer.weight, layer.bias, padding=1)
    torch.testing.assert_close(layer(x, torch.randn_like(x)), expected)


def test_offsets_receive_gradients():
    torch.manual_seed(0)
    layer = SeparateOffsetDeformConv(CHANNELS, GROUPS)
    x = torch.randn(1, CHANNELS, 8, 8)
    layer(x, torch.randn_like(x)).square().sum().backward()
    assert layer.conv_offset_mask.weight.grad.abs().sum() > 0


def test_the_sampled_formulation_equals_torchvision_with_its_gradients():
    """The layer's grid_sample + matmul path against torchvision's deform_conv2d (the
    plain reference): outputs and all gradients, offsets reaching past the borders."""
    from torchvision.ops import deform_conv2d

    from rrsgan_geo.model.deform import sampled_deform_conv2d

    torch.manual_seed(0)
    shape = (2, CHANNELS, 9, 12)
    inputs = {
        "features": torch.randn(shape),
        "offset": torch.randn(2, 2 * GROUPS * TAPS, 9, 12) * 3,
        "mask": torch.rand(2, GROUPS * TAPS, 9, 12),
        "weight": torch.randn(CHANNELS, CHANNELS, 3, 3),
        "bias": torch.randn(CHANNELS),
    }
    results = []
    for function in (
        lambda features, offset, mask, weight, bias: deform_conv2d(
            features, offset, weight, bias, padding=1, mask=mask
        ),
        sampled_deform_conv2d,
    ):
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        out = function(**leaves)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out, {k: v.grad for k, v in leaves.items()}))
    (expected, expected_grads), (out, grads) = results
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    for key in inputs:
        torch.testing.assert_close(grads[key], expected_grads[key], rtol=1e-3, atol=1e-3)
    with torch.inference_mode():  # the mask applied in place, as `sr` runs it
        torch.testing.assert_close(
            sampled_deform_conv2d(**inputs), expected.detach(), rtol=1e-4, atol=1e-4
        )


def test_inference_without_gradients_gives_the_training_path_values_to_the_bit():
    """Without gradients the layer writes the sampling grid in place and masks the
    samples in place; the values are the ones the autograd path computes."""
    torch.manual_seed(4)
    layer = SeparateOffsetDeformConv(CHANNELS, GROUPS)
    with torch.no_grad():
        layer.conv_offset_mask.weight.normal_(std=0.3)
        layer.conv_offset_mask.bias.normal_()
    x, features = torch.randn(2, CHANNELS, 11, 7), torch.randn(2, CHANNELS, 11, 7)
    trained = layer(x, features)
    with torch.no_grad():
        inferred = layer(x, features)
    assert trained.requires_grad and not inferred.requires_grad
    assert torch.equal(trained.detach(), inferred)
