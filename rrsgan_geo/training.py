"""Training the generator: stage 1 (L1 only, RRSNet) and stage 2 (RRSGAN losses).

The recipe is the authors' (see ../shared/design/rrsgan_model.md). Everything needed
to continue lives in `<output_dir>/state.pt` (tensors and numbers only, loadable with
weights_only=True); `latest.safetensors` and `best.safetensors` are the generator
exports with metadata. Batches are a pure function of (seed, step), so a resumed run
computes exactly what an uninterrupted one would.
"""

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch.nn import functional as F

from rrsgan_geo.data import RefSRDataset, find_samples, spatial_split
from rrsgan_geo.discriminator import DiscriminatorVGG128
from rrsgan_geo.errors import ConfigError
from rrsgan_geo.losses import VGGPerceptualLoss, gan_loss
from rrsgan_geo.metrics import psnr
from rrsgan_geo.model import GeneratorConfig, RRSNet
from rrsgan_geo.model.gradient import GradientMagnitude
from rrsgan_geo.weight_files import WeightsMetadata, load_generator, save_weights

STATE_FILE = "state.pt"
INPUT_KEYS = ("LR", "LR_UX4", "Ref", "Ref_DUX4")


@dataclass(frozen=True)
class LossWeights:
    pixel: float = 1.0
    perceptual: float = 0.1
    gan: float = 1e-3
    grad_pixel: float = 1.0
    grad_gan: float = 1e-3


@dataclass(frozen=True)
class TrainConfig:
    name: str
    output_dir: Path
    data: tuple[Path, ...]
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    stage: int = 1
    steps: int = 250_000
    batch_size: int = 8
    lr_crop: int = 64
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    milestones: tuple[int, ...] = (50_000, 100_000, 150_000, 200_000)
    gamma: float = 0.5
    val_fraction: float = 0.25
    split_block: int = 32
    val_images: int = 8
    val_every: int = 1000
    checkpoint_every: int = 1000
    seed: int = 0
    margin: int = 16
    amp: str = "none"
    init_weights: Path | None = None
    vgg19_weights: Path | None = None
    gan_start_step: int = 0
    loss_weights: LossWeights = field(default_factory=LossWeights)

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ConfigError(f"stage must be 1 (L1) or 2 (GAN), got {self.stage}")
        if self.lr_crop % 8:
            raise ConfigError(f"lr_crop must be a multiple of 8, got {self.lr_crop}")
        if self.amp not in ("none", "fp16", "bf16"):
            raise ConfigError(f"amp must be none, fp16 or bf16, got {self.amp!r}")


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML config; relative paths are relative to the config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}")
    for required in ("name", "output_dir", "data"):
        if required not in raw:
            raise ConfigError(f"{path}: missing key {required!r}")
    base = path.parent

    def resolve(value: str | None) -> Path | None:
        return None if value is None else (base / value).resolve()

    data = raw["data"] if isinstance(raw["data"], list) else [raw["data"]]
    try:
        return TrainConfig(
            **{
                **raw,
                "output_dir": resolve(raw["output_dir"]),
                "data": tuple(resolve(d) for d in data),
                "model": GeneratorConfig(**raw.get("model", {})),
                "betas": tuple(raw.get("betas", (0.9, 0.99))),
                "milestones": tuple(raw.get("milestones", TrainConfig.milestones)),
                "init_weights": resolve(raw.get("init_weights")),
                "vgg19_weights": resolve(raw.get("vgg19_weights")),
                "loss_weights": LossWeights(**raw.get("loss_weights", {})),
            }
        )
    except TypeError as error:
        raise ConfigError(f"{path}: {error}") from None


@dataclass
class StepLog:
    step: int
    losses: dict[str, float]
    learning_rate: float
    val_psnr: float | None = None
    val_bicubic_psnr: float | None = None


class Trainer:
    """Builds everything from a config; `run` trains until `config.steps`."""

    def __init__(self, config: TrainConfig, device: torch.device, resume: bool = False) -> None:
        self.config, self.device = config, device
        samples = [s for folder in config.data for s in find_samples(folder)]
        train, val = spatial_split(samples, config.val_fraction, config.split_block, config.seed)
        if not train:
            raise ConfigError("the spatial split left no training sample: lower val_fraction")
        self.train_data = RefSRDataset(train)
        smallest = min(min(lr.shape[:2]) for lr, _, _ in self.train_data.images)
        if config.lr_crop > smallest:
            raise ConfigError(
                f"lr_crop {config.lr_crop} is larger than the smallest LR image ({smallest} px)"
            )
        self.val_data = RefSRDataset(val[: config.val_images]) if val else None
        self.val_places = sorted({s.name for s in val})
        torch.manual_seed(config.seed)
        if config.init_weights is not None:
            self.generator, _ = load_generator(config.init_weights)
            self.generator.train()
        else:
            self.generator = RRSNet(config.model)
        self.generator.to(device)
        self.optimizer = self._adam(self.generator)
        self.scheduler = self._schedule(self.optimizer)
        self.gradient = GradientMagnitude().to(device)
        self.step, self.best_psnr = 0, -math.inf
        self.discriminators: dict[str, torch.nn.Module] = {}
        if config.stage == 2:
            patch = config.lr_crop * 4
            self.perceptual = VGGPerceptualLoss(config.vgg19_weights or "").to(device)
            for kind in ("image", "gradient"):
                self.discriminators[kind] = DiscriminatorVGG128(patch=patch).to(device)
            self.d_optimizers = {k: self._adam(d) for k, d in self.discriminators.items()}
            self.d_schedulers = {k: self._schedule(o) for k, o in self.d_optimizers.items()}
        self.scaler = torch.amp.GradScaler(enabled=config.amp == "fp16" and device.type == "cuda")
        state_path = config.output_dir / STATE_FILE
        if resume:
            if not state_path.is_file():
                raise ConfigError(f"--resume: no checkpoint at {state_path}")
            self._load_state(state_path)
        elif state_path.exists():
            raise ConfigError(
                f"{config.output_dir} holds a run already: pass --resume to continue it"
            )

    def _adam(self, module: torch.nn.Module) -> torch.optim.Adam:
        params = [p for p in module.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.config.learning_rate, betas=self.config.betas)

    def _schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.MultiStepLR:
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, list(self.config.milestones), gamma=self.config.gamma
        )

    def _autocast(self) -> torch.autocast:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.config.amp)
        enabled = dtype is not None and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)

    def train_step(self) -> dict[str, float]:
        config = self.config
        batch = self.train_data.batch(config.batch_size, config.lr_crop, config.seed, self.step)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hr = batch["HR"]
        with self._autocast():
            sr = self.generator(*(batch[k] for k in INPUT_KEYS))
        sr = sr.float()
        weights = config.loss_weights
        losses = {"pixel": F.l1_loss(sr, hr) * weights.pixel}
        adversarial = config.stage == 2 and self.step >= config.gan_start_step
        if config.stage == 2:
            sr_grad, hr_grad = self.gradient(sr), self.gradient(hr)
            losses["perceptual"] = self.perceptual(sr, hr) * weights.perceptual
            losses["grad_pixel"] = F.l1_loss(sr_grad, hr_grad) * weights.grad_pixel
            if adversarial:
                for kind, fake in (("image", sr), ("gradient", sr_grad)):
                    for p in self.discriminators[kind].parameters():
                        p.requires_grad_(False)
                    weight = weights.gan if kind == "image" else weights.grad_gan
                    losses[f"gan_{kind}"] = gan_loss(self.discriminators[kind](fake), True) * weight
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        logs = {k: v.item() for k, v in losses.items()}
        if adversarial:
            logs.update(self._train_discriminators(sr.detach(), hr, sr_grad.detach(), hr_grad))
        elif config.stage == 2:
            for scheduler in self.d_schedulers.values():
                scheduler.step()
        self.step += 1
        return logs

    def _train_discriminators(self, sr, hr, sr_grad, hr_grad) -> dict[str, float]:
        logs = {}
        for kind, fake, real in (("image", sr, hr), ("gradient", sr_grad, hr_grad)):
            discriminator = self.discriminators[kind]
            for p in discriminator.parameters():
                p.requires_grad_(True)
            loss = gan_loss(discriminator(real), True) + gan_loss(discriminator(fake), False)
            self.d_optimizers[kind].zero_grad(set_to_none=True)
            loss.backward()
            self.d_optimizers[kind].step()
            self.d_schedulers[kind].step()
            logs[f"d_{kind}"] = loss.item()
        return logs

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """Mean PSNR (Y, border 4) of the model and of bicubic on the held-out places."""
        self.generator.eval()
        model_scores, bicubic_scores = [], []
        for index in range(len(self.val_data)):
            sample = {k: v[None].to(self.device) for k, v in self.val_data[index].items()}
            sr = self.generator(*(sample[k] for k in INPUT_KEYS)).clamp(0, 1)
            model_scores.append(psnr(sr[0].cpu(), sample["HR"][0].cpu()))
            bicubic_scores.append(psnr(sample["LR_UX4"][0].cpu(), sample["HR"][0].cpu()))
        self.generator.train()
        return sum(model_scores) / len(model_scores), sum(bicubic_scores) / len(bicubic_scores)

    def run(self, on_step: Callable[[StepLog], None] | None = None) -> None:
        """Train to `config.steps`, checkpointing every N steps and on the way out."""
        config = self.config
        config.output_dir.mkdir(parents=True, exist_ok=True)
        self.generator.train()
        try:
            while self.step < config.steps:
                log = StepLog(self.step + 1, self.train_step(), self.scheduler.get_last_lr()[0])
                if self.val_data is not None and self.step % config.val_every == 0:
                    log.val_psnr, log.val_bicubic_psnr = self.validate()
                    if log.val_psnr > self.best_psnr:
                        self.best_psnr = log.val_psnr
                        self._export("best.safetensors")
                if self.step % config.checkpoint_every == 0:
                    self.save()
                if on_step is not None:
                    on_step(log)
        finally:
            self.save()

    def _export(self, name: str) -> None:
        config = self.config
        stage = (
            "stage 1 (L1)" if config.stage == 1 else "stage 2 (L1 + VGG + GAN, image and gradient)"
        )
        metadata = WeightsMetadata(
            config=self.generator.config,
            training_data=", ".join(str(d) for d in config.data),
            margin=config.margin,
            notes=f"{config.name}: {stage}, step {self.step}, held-out places: "
            f"{len(self.val_places)}",
        )
        save_weights(self.generator.state_dict(), config.output_dir / name, metadata)

    def save(self) -> None:
        """state.pt (to resume) and latest.safetensors (to use), each written atomically."""
        state = {
            "step": self.step,
            "best_psnr": self.best_psnr,
            "generator": self.generator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        for kind, discriminator in self.discriminators.items():
            state[f"d_{kind}"] = discriminator.state_dict()
            state[f"d_{kind}_optimizer"] = self.d_optimizers[kind].state_dict()
            state[f"d_{kind}_scheduler"] = self.d_schedulers[kind].state_dict()
        path = self.config.output_dir / STATE_FILE
        temp = path.with_suffix(".pt.part")
        torch.save(state, temp)
        os.replace(temp, path)
        self._export("latest.safetensors")

    def _load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.step, self.best_psnr = state["step"], state["best_psnr"]
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        for kind, discriminator in self.discriminators.items():
            discriminator.load_state_dict(state[f"d_{kind}"])
            self.d_optimizers[kind].load_state_dict(state[f"d_{kind}_optimizer"])
            self.d_schedulers[kind].load_state_dict(state[f"d_{kind}_scheduler"])
