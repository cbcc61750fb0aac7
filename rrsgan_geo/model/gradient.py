"""Per-channel gradient magnitude maps, the 'gradient' half of RRSGAN's inputs."""

import torch
from torch import nn
from torch.nn import functional as F


class GradientMagnitude(nn.Module):
    """sqrt(v² + h² + 1e-6) per channel with central-difference kernels and zero padding.

    The kernels are stored as frozen parameters `weight_v` and `weight_h` (1x1x3x3)
    because the authors' checkpoints carry them under those names
    (`get_g_nopadding.weight_v`), so a strict state-dict load needs them to exist.
    The 1e-6 keeps the square root differentiable where the image is flat.
    """

    def __init__(self) -> None:
        super().__init__()
        kernel_v = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        kernel_h = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        self.weight_h = nn.Parameter(kernel_h[None, None], requires_grad=False)
        self.weight_v = nn.Parameter(kernel_v[None, None], requires_grad=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = image.shape
        # Fold channels into the batch: one single-channel conv serves every band.
        planes = image.reshape(batch * channels, 1, height, width)
        grad_v = F.conv2d(planes, self.weight_v, padding=1)
        grad_h = F.conv2d(planes, self.weight_h, padding=1)
        magnitude = torch.sqrt(grad_v.square() + grad_h.square() + 1e-6)
        return magnitude.reshape(batch, channels, height, width)
