"""Stage 2 of the authors' recipe: perceptual, gradient and adversarial losses.

Stage 1 trains the generator with L1 alone. Stage 2 adds the VGG19 conv5_4 perceptual
loss, an L1 on gradient maps, and two discriminators (one on images, one on gradient
maps) with a vanilla GAN loss after `gan_start_step`. Everything stage 2 owns lives in
this object, so the trainer stays the same for both stages.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from rrsgan_geo.config_numbers import check_numbers
from rrsgan_geo.model.gradient import GradientMagnitude
from rrsgan_geo.training.discriminator import DiscriminatorVGG128
from rrsgan_geo.training.losses import VGGPerceptualLoss, gan_loss

KINDS = ("image", "gradient")
GradientPair = tuple[torch.Tensor, torch.Tensor]  # (SR, HR) gradient maps


@dataclass(frozen=True)
class LossWeights:
    pixel: float = 1.0
    perceptual: float = 0.1
    gan: float = 1e-3
    grad_pixel: float = 1.0
    grad_gan: float = 1e-3
    relevance: float = 0.0
    """Weight of `losses.relevance_ranking_loss` (both stages); 0: not computed."""

    def __post_init__(self) -> None:
        check_numbers(self, "loss_weights.")


class AdversarialStage:
    """The discriminators, their optimisers and the stage-2 generator losses."""

    def __init__(
        self,
        weights: LossWeights,
        vgg19_weights: Path | None,
        patch: int,
        gan_start_step: int,
        make_optimizer,
        make_scheduler,
        device: torch.device,
    ) -> None:
        self.weights, self.gan_start_step = weights, gan_start_step
        self.perceptual = VGGPerceptualLoss(vgg19_weights or "").to(device)
        self.gradient = GradientMagnitude().to(device)
        self.discriminators = {k: DiscriminatorVGG128(patch=patch).to(device) for k in KINDS}
        self.optimizers = {k: make_optimizer(d) for k, d in self.discriminators.items()}
        self.schedulers = {k: make_scheduler(o) for k, o in self.optimizers.items()}

    def gradient_maps(self, sr: torch.Tensor, hr: torch.Tensor) -> GradientPair:
        """Gradient maps of SR and HR, computed once per step for both updates."""
        return self.gradient(sr), self.gradient(hr)

    def generator_losses(
        self, sr: torch.Tensor, hr: torch.Tensor, grads: GradientPair, step: int
    ) -> dict[str, torch.Tensor]:
        """Stage-2 terms added to the pixel loss (discriminators frozen for this pass)."""
        w = self.weights
        sr_grad, hr_grad = grads
        losses = {
            "perceptual": self.perceptual(sr, hr) * w.perceptual,
            "grad_pixel": F.l1_loss(sr_grad, hr_grad) * w.grad_pixel,
        }
        if step >= self.gan_start_step:
            for kind, fake, weight in (("image", sr, w.gan), ("gradient", sr_grad, w.grad_gan)):
                self.discriminators[kind].requires_grad_(False)
                losses[f"gan_{kind}"] = gan_loss(self.discriminators[kind](fake), True) * weight
        return losses

    def train_discriminators(
        self, sr: torch.Tensor, hr: torch.Tensor, grads: GradientPair, step: int
    ) -> dict[str, float]:
        """One discriminator update each (after `gan_start_step`); schedules always step."""
        logs = {}
        if step >= self.gan_start_step:
            sr_grad, hr_grad = grads
            pairs = {"image": (sr, hr), "gradient": (sr_grad, hr_grad)}
            for kind, (fake, real) in pairs.items():
                discriminator = self.discriminators[kind].requires_grad_(True)
                loss = gan_loss(discriminator(real.detach()), True) + gan_loss(
                    discriminator(fake.detach()), False
                )
                self.optimizers[kind].zero_grad(set_to_none=True)
                loss.backward()
                self.optimizers[kind].step()
                logs[f"d_{kind}"] = loss.item()
        for scheduler in self.schedulers.values():
            scheduler.step()
        return logs

    def state_dict(self) -> dict[str, object]:
        state: dict[str, object] = {}
        for kind in KINDS:
            state[f"d_{kind}"] = self.discriminators[kind].state_dict()
            state[f"d_{kind}_optimizer"] = self.optimizers[kind].state_dict()
            state[f"d_{kind}_scheduler"] = self.schedulers[kind].state_dict()
        return state

    def load_state_dict(self, state: dict[str, object]) -> None:
        for kind in KINDS:
            self.discriminators[kind].load_state_dict(state[f"d_{kind}"])
            self.optimizers[kind].load_state_dict(state[f"d_{kind}_optimizer"])
            self.schedulers[kind].load_state_dict(state[f"d_{kind}_scheduler"])
