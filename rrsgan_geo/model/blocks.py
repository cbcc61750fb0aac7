"""Building blocks shared by the generator's parts."""

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def leaky_relu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1, inplace=True)


Modulation = tuple[torch.Tensor, torch.Tensor]
"""(scale, shift), N x C each: a feature map x becomes x * (1 + scale) + shift per
channel (FiLM, Perez et al., AAAI 2018), so zeros leave it as it was."""


def modulated(x: torch.Tensor, modulation: Modulation | None) -> torch.Tensor:
    if modulation is None:
        return x
    scale, shift = modulation
    return torch.addcmul(shift[:, :, None, None], x, 1 + scale[:, :, None, None])


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (keys `body.0`, `body.2`); a modulation,
    when given, acts on the first convolution's output before the ReLU, where SFTMD's
    (Gu et al., CVPR 2019) degradation-conditioned layers act."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels),
            nn.ReLU(inplace=True),
            conv3x3(channels, channels),
        )

    def forward(self, x: torch.Tensor, modulation: Modulation | None = None) -> torch.Tensor:
        first, relu, second = self.body
        return second(relu(modulated(first(x), modulation))) + x


class ResBlocks(nn.Sequential):
    """Residual blocks in a row (keys `0.body.0` ...), each with its own modulation."""

    def forward(self, x: torch.Tensor, modulations: list[Modulation] | None = None) -> torch.Tensor:
        for index, block in enumerate(self):
            x = block(x, None if modulations is None else modulations[index])
        return x


def res_blocks(channels: int, count: int) -> ResBlocks:
    return ResBlocks(*[ResBlock(channels) for _ in range(count)])


# The constants of torch's (and the SELU paper's) SELU.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class SELU(nn.SELU):
    """`nn.SELU`, computed on the CPU from the vectorised `exp` when no gradient is
    wanted (inference). torch's CPU `elu` kernel is bound by its expm1, which ran 11x
    slower than `exp` on the same values: measured on the 2-core CPU, 33-37 ms for one
    16 x 640^2 map of the encoders (a tile of 128 + 2 x 16 LR pixels), against 6.7 ms
    here, and the encoders' SELUs were a fifth of the compact model's time. The values
    differ by at most 1.2e-7 (exp(x) - 1 instead of expm1(x): tested). Training and CUDA
    (where torch's kernel is fused and fast) use torch's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        negative = x.clamp(max=0).exp_().sub_(1).mul_(_SELU_ALPHA * _SELU_SCALE)
        positive = x.clamp_(min=0) if self.inplace else x.clamp(min=0)
        return positive.mul_(_SELU_SCALE).add_(negative)


def _selu_conv5(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 5, stride=stride, padding=2),
        SELU(inplace=True),
    )


def kaiming_leaky_init(module: nn.Module) -> None:
    """He-normal weights for every convolution in `module` that feeds a LeakyReLU(0.1).

    PyTorch's default (kaiming-uniform with a=sqrt(5)) shrinks activations by about
    2.5x per layer; across the alignment module's stacked convolutions that left the
    aligned reference features an order of magnitude below the content features."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, a=0.1, nonlinearity="leaky_relu")
            nn.init.zeros_(layer.bias)


class Encoder(nn.Module):
    """Three-scale feature encoder (scales 1, 1/2, 1/4) of the 4x-grid images.

    SELU is self-normalising only with LeCun-normal weights (variance 1/fan_in) and
    zero biases; with PyTorch's default initialisation the features shrink at every
    layer, so the reference path would start nearly silent."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.layer_f = _selu_conv5(in_channels, channels, 1)
        self.conv1 = _selu_conv5(channels, channels, 1)
        self.conv2 = _selu_conv5(channels, channels, 2)
        self.conv3 = _selu_conv5(channels, channels, 2)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                fan_in = layer.weight[0].numel()
                nn.init.normal_(layer.weight, 0.0, fan_in**-0.5)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale1 = self.conv1(self.layer_f(x))
        scale2 = self.conv2(scale1)
        return scale1, scale2, self.conv3(scale2)


class RelevanceAttention(nn.Module):
    """RAM: modulates aligned reference features by their relevance to the content.

    Two small branches over [features, conditions] predict a multiplicative gate
    (sigmoid) and an additive term, so an irrelevant reference (changed land cover,
    cloud, a missing reference) can be gated down rather than copied in.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = channels // 2
        self.mul_conv1 = conv3x3(2 * channels, hidden)
        self.mul_conv2 = conv3x3(hidden, channels)
        self.add_conv1 = conv3x3(2 * channels, hidden)
        self.add_conv2 = conv3x3(hidden, channels)
        self.lrelu = leaky_relu()

    def forward(self, features: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        both = torch.cat((features, conditions), dim=1)
        shift = self.add_conv2(self.lrelu(self.add_conv1(both)))
        return features * self._gate(both) + shift

    def _gate(self, both: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mul_conv2(self.lrelu(self.mul_conv1(both))))

    def relevance(self, features: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """N x H x W in [0, 1]: the gate averaged over channels, i.e. how much of the
        aligned reference each pixel lets through (what `sr --relevance-map` shows)."""
        return self._gate(torch.cat((features, conditions), dim=1)).mean(dim=1)
