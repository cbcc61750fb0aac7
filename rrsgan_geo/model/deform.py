"""Modulated deformable convolution (DCNv2) without a compiled extension.

The authors built DCNv2 from a CUDA extension (`DCN_sep`). torchvision's
`deform_conv2d` implements the same operator on CPU and GPU with the same offset
layout (per deformable group, per kernel tap, (dy, dx) pairs) and mask layout, so the
authors' weights give the same result here without anything to compile.
"""

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class SeparateOffsetDeformConv(nn.Module):
    """A 3x3 DCNv2 whose offsets and mask come from a second feature map.

    `conv_offset_mask` turns the offset features into 3 * groups * 9 channels, split
    into equal chunks (o1, o2, m): offsets are concat(o1, o2) and the mask is
    sigmoid(m), exactly as the authors' `DCN_sep`. It starts at zero, so a freshly
    built layer samples the regular grid with mask 0.5.
    """

    def __init__(self, channels: int, deformable_groups: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        taps = kernel_size * kernel_size
        self.conv_offset_mask = nn.Conv2d(
            channels, deformable_groups * 3 * taps, kernel_size, padding=self.padding
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, features: torch.Tensor, offset_features: torch.Tensor) -> torch.Tensor:
        out = self.conv_offset_mask(offset_features)
        o1, o2, mask_logits = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        # In float32 whatever the autocast precision: torchvision has no bfloat16
        # kernel on the CPU, and fractional sampling offsets want the precision anyway
        # (torchvision's own CUDA autocast rule runs this op in float32 too).
        with torch.autocast(features.device.type, enabled=False):
            return deform_conv2d(
                features.float(),
                offset.float(),
                self.weight.float(),
                self.bias.float(),
                padding=self.padding,
                mask=torch.sigmoid(mask_logits.float()),
            )
