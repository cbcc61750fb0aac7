"""Modulated deformable convolution (DCNv2) without a compiled extension.

The authors built DCNv2 from a CUDA extension (`DCN_sep`). torchvision's
`deform_conv2d` implements the same operator with the same offset layout (per
deformable group, per kernel tap, (dy, dx) pairs) and mask layout, so the authors'
weights give the same result here without anything to compile.

The layer computes it as `grid_sample` (every tap of every group sampled at once, zeros
outside the map, as deform_conv2d reads them) followed by one matrix product. That is
the same operator, 2x faster forward and 5-7x faster backward than deform_conv2d on
the CPU (measured: 8 x 20 x 96 x 96, 4 groups), and on CUDA its matrix product runs in
the autocast precision on tensor cores, where deform_conv2d runs in float32. The
tests check it against deform_conv2d; the package itself needs no torchvision, so it
installs beside any torch without pulling a torchvision that pins another.
"""

import torch
from torch import nn
from torch.nn import functional as F

# sigmoid(3) = 0.95: the modulation mask a fresh layer starts with.
MASK_LOGIT_INIT = 3.0


class _StandardLayoutConv2d(nn.Conv2d):
    """A convolution that answers in the standard (NCHW) layout whatever it is given or
    its weight was converted to: the deformable sampling reads its output in that
    layout, and converting its input (a third of the channels) is cheaper."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x.contiguous(), self.weight.contiguous(), self.bias)


class SeparateOffsetDeformConv(nn.Module):
    """A 3x3 DCNv2 whose offsets and mask come from a second feature map.

    `conv_offset_mask` turns the offset features into 3 * groups * 9 channels, split
    into equal chunks (o1, o2, m): offsets are concat(o1, o2) and the mask is
    sigmoid(m), exactly as the authors' `DCN_sep`. It starts with zero offsets, so a
    freshly built layer samples the regular grid (see `reset_parameters`).
    """

    def __init__(self, channels: int, deformable_groups: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        taps = kernel_size * kernel_size
        self.conv_offset_mask = _StandardLayoutConv2d(
            channels, deformable_groups * 3 * taps, kernel_size, padding=self.padding
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's convolution initialisation for the weights, and a mask that starts open.

        The authors' zero-initialised `conv_offset_mask` samples the regular grid with
        mask sigmoid(0) = 0.5, halving the reference features at every deformable layer;
        a mask bias of MASK_LOGIT_INIT lets them through nearly whole from step one.
        Offsets still start at zero."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)
        with torch.no_grad():
            mask_bias = self.conv_offset_mask.bias.chunk(3)[2]
            mask_bias.fill_(MASK_LOGIT_INIT)

    def forward(self, features: torch.Tensor, offset_features: torch.Tensor) -> torch.Tensor:
        """Samples in the standard layout and answers in the layout it was given, so a
        channels_last model stays channels_last around it."""
        channels_last = not features.is_contiguous() and features.is_contiguous(
            memory_format=torch.channels_last
        )
        out = self.conv_offset_mask(offset_features)
        # [o1 | o2 | mask logits]: the offsets, concat(o1, o2), are the first two thirds
        # as they lie, a view rather than a copy.
        third = out.shape[1] // 3
        offset, mask_logits = out.split([2 * third, third], dim=1)
        device_type = features.device.type
        # Sampling in float32 whatever the autocast precision (fractional offsets want
        # it); the matrix product may use the autocast precision on CUDA (tensor cores).
        product_dtype = torch.float32
        if device_type == "cuda" and torch.is_autocast_enabled(device_type):
            product_dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            features, offset = features.float(), offset.float()
            mask = torch.sigmoid(mask_logits.float())
            weight, bias = self.weight.float(), self.bias.float()
            out = sampled_deform_conv2d(features, offset, mask, weight, bias, product_dtype)
        return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def sampled_deform_conv2d(
    features: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    product_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """torchvision's `deform_conv2d(features, offset, weight, bias, padding=k // 2,
    mask=mask)` for a square odd kernel k, stride 1, written as one `grid_sample` and
    one matrix product. Pixel coordinates are normalised for align_corners=False,
    which maps them back exactly, for maps of any size (1 x 1 included)."""
    # The sampling below works in the standard layout: channels_last inputs (from a
    # channels_last model) would make the tap arithmetic and the mask product stride
    # across memory (measured 2.6x slower on the CPU).
    features, offset, mask = features.contiguous(), offset.contiguous(), mask.contiguous()
    n, channels, height, width = features.shape
    out_channels, _, kernel, _ = weight.shape
    taps = kernel * kernel
    groups = offset.shape[1] // (2 * taps)
    offset = offset.view(n, groups, taps, 2, height, width)
    # Sampling coordinates normalised for align_corners=False, (2 * pixel + 1) / size - 1,
    # as the regular grid's (one value per tap and row or column) plus the offset
    # scaled by 2 / size: one pass over the offsets per axis.
    tap = torch.arange(taps, device=features.device, dtype=torch.float64)
    tap_y = (tap // kernel - kernel // 2).view(taps, 1, 1)
    tap_x = (tap % kernel - kernel // 2).view(taps, 1, 1)
    rows = torch.arange(height, device=features.device, dtype=torch.float64).view(1, height, 1)
    cols = torch.arange(width, device=features.device, dtype=torch.float64).view(1, 1, width)
    grid_y = ((2 * (rows + tap_y) + 1) / height - 1).to(features.dtype)
    grid_x = ((2 * (cols + tap_x) + 1) / width - 1).to(features.dtype)
    coordinates = (
        (grid_x, offset[:, :, :, 1], 2 / width),
        (grid_y, offset[:, :, :, 0], 2 / height),
    )
    if torch.is_grad_enabled():
        grid = torch.stack([torch.add(base, moved, alpha=a) for base, moved, a in coordinates], -1)
    else:
        # Where no gradient is needed, each coordinate is written straight into its place
        # of the (x, y) pairs: stacking them afterwards is another pass over the layer's
        # second-largest tensor (CPU, 640^2, 4 groups of 9 taps: 72 -> 39 ms; the same
        # values, tested).
        grid = features.new_empty(n, groups, taps, height, width, 2)
        for axis, (base, moved, a) in enumerate(coordinates):
            torch.add(base, moved, alpha=a, out=grid[..., axis])
    sampled = F.grid_sample(
        features.reshape(n * groups, channels // groups, height, width),
        grid.view(n * groups, taps * height, width, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    sampled = sampled.view(n, groups, channels // groups, taps, height, width)
    mask = mask.view(n, groups, 1, taps, height, width)
    # In place where no gradient needs the samples: the columns are the layer's largest
    # tensor (295 MB for 20 channels on 640^2), so a second copy would set the peak.
    columns = sampled * mask if torch.is_grad_enabled() else sampled.mul_(mask)
    columns = columns.view(n, channels * taps, height * width)
    # bmm on the expanded weight: matmul(2-D, 3-D) would fold the batch into the rows
    # and copy the columns transposed (18 % of the compact model's CPU time).
    kernel_matrix = weight.reshape(out_channels, channels * taps).to(product_dtype)
    out = torch.bmm(kernel_matrix.expand(n, -1, -1), columns.to(product_dtype))
    return out.float().view(n, out_channels, height, width) + bias.view(1, -1, 1, 1)
