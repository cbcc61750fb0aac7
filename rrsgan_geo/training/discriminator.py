"""The authors' VGG-style discriminator (`Discriminator_VGG_128`).

Despite the name, the authors' version has linear1 of 512 * 8 * 8 inputs, i.e. it
judges 256 x 256 patches (their GT crop); the patch size is a parameter here.
RRSGAN uses two: one on images, one on gradient maps.
"""

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride, 1, bias=bias)


class DiscriminatorVGG128(nn.Module):
    """Five stride-2 stages (patch -> patch/32) then two linear layers to one logit."""

    def __init__(self, in_channels: int = 3, nf: int = 64, patch: int = 256) -> None:
        super().__init__()
        widths = [nf, nf * 2, nf * 4, nf * 8, nf * 8]
        previous = in_channels
        for level, width in enumerate(widths):
            setattr(self, f"conv{level}_0", _conv(previous, width, 3, 1, bias=level == 0))
            setattr(self, f"conv{level}_1", _conv(width, width, 4, 2, bias=False))
            previous = width
        self.linear1 = nn.Linear(widths[-1] * (patch // 32) ** 2, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2)
        self.levels = len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for level in range(self.levels):
            x = self.lrelu(getattr(self, f"conv{level}_0")(x))
            x = self.lrelu(getattr(self, f"conv{level}_1")(x))
        return self.linear2(self.lrelu(self.linear1(x.flatten(1))))
