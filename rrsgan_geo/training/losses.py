"""Training losses: pixel L1, VGG19 perceptual, vanilla GAN, their gradient twins, and a
ranking loss on the relevance attention's gate."""

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rrsgan_geo.errors import WeightsNotFoundError
from rrsgan_geo.model.weight_files import read_torch_state_dict

# conv5_4 before its ReLU: index 34 of torchvision's vgg19().features (the authors' choice)
VGG_FEATURE_LAYER = 34
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
RELEVANCE_MARGIN = 0.2
"""How much more of the reference the gate should let through, on average over a
sample, where the reference is intact than where it was replaced."""


class VGGPerceptualLoss(nn.Module):
    """L1 between VGG19 conv5_4 features of SR and HR, from a local weight file.

    Nothing is downloaded: the file is torchvision's `vgg19` ImageNet state dict
    (vgg19-dcbb9e9d.pth), read with weights_only=True.
    """

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        path = Path(weights_path)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"VGG19 weights for the perceptual loss not found: {path} (torchvision's "
                "ImageNet vgg19 state dict, vgg19-dcbb9e9d.pth; stage 1 needs none)"
            )
        try:  # only stage 2 needs torchvision: `pip install rrsgan-geo[train]`
            import torchvision
        except ImportError:
            raise WeightsNotFoundError(
                "stage 2 needs torchvision for VGG19: pip install torchvision matching "
                "your torch (or the package's [train] extra)"
            ) from None
        vgg = torchvision.models.vgg19()
        vgg.load_state_dict(read_torch_state_dict(path))
        self.features = vgg.features[: VGG_FEATURE_LAYER + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        normalise = lambda x: (x - self.mean) / self.std  # noqa: E731
        return F.l1_loss(self.features(normalise(sr)), self.features(normalise(hr)).detach())


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN (binary cross-entropy on logits)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def relevance_ranking_loss(
    relevance: torch.Tensor, replaced: torch.Tensor, margin: float = RELEVANCE_MARGIN
) -> torch.Tensor:
    """A hinge on the relevance gate (N x H x W, `RelevanceAttention.relevance`) telling
    replaced reference pixels from intact ones (`replaced`, N x 1 x H x W, the share
    of each pixel replaced): per sample with both, max(0, margin - (mean gate where
    intact - mean gate where mostly replaced)), averaged; 0 for a batch without such
    samples.

    Why: with L1 alone the gate learns to tell a replaced reference apart only as far
    as that lowers the error, which a small model barely does (the bundled example's
    half-replaced reference moved the gate by 0.02-0.03). A ranking, not a target per
    pixel, leaves the gate's level to the L1 loss: only the order is asked for."""
    share = replaced[:, 0].float()
    if share.shape[-2:] != relevance.shape[-2:]:
        share = F.interpolate(share[:, None], size=relevance.shape[-2:], mode="area")[:, 0]
    swapped, intact = (share > 0.5).float(), (share == 0).float()
    swapped_count, intact_count = swapped.sum((1, 2)), intact.sum((1, 2))
    both = (swapped_count > 0) & (intact_count > 0)
    if not bool(both.any()):
        return relevance.sum() * 0
    gate = relevance.float()
    on_swapped = (gate * swapped).sum((1, 2)) / swapped_count.clamp(min=1)
    on_intact = (gate * intact).sum((1, 2)) / intact_count.clamp(min=1)
    return F.relu(margin - (on_intact - on_swapped))[both].mean()
