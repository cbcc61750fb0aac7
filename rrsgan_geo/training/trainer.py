"""Training the generator: stage 1 (L1 only, RRSNet) and stage 2 (RRSGAN losses).

The recipe is the authors' (see docs/model.md), with reference-aware data
(`data.ReferenceConfig`): each sample's reference is real, another date, synthetic or
missing, so that the reference path learns to pay off. Everything needed to continue
lives in `<output_dir>/state.pt` (tensors and numbers only, loadable with
weights_only=True); `latest.safetensors` and `best.safetensors` are the generator
exports with metadata. Batches are a pure function of (seed, step), so a resumed run
computes exactly what an uninterrupted one would; under `torchrun` each rank takes its
slice of the same global batch (DistributedDataParallel averages the gradients).
"""

import bisect
import dataclasses
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from rrsgan_geo.config_numbers import check_numbers
from rrsgan_geo.devices import PRECISIONS, to_device
from rrsgan_geo.errors import ConfigError, InputError
from rrsgan_geo.files import published_when_done
from rrsgan_geo.model import (
    GeneratorConfig,
    RRSNet,
    with_blur_conditioning,
    without_bicubic_expert,
)
from rrsgan_geo.model.generator import relevance_kept
from rrsgan_geo.model.sensor import EVALUATION_SENSOR, TrainingDraws
from rrsgan_geo.model.weight_files import WeightsMetadata, load_generator, save_weights
from rrsgan_geo.training.adversarial import AdversarialStage, LossWeights
from rrsgan_geo.training.data import (
    ReferenceConfig,
    RefSRDataset,
    Sample,
    find_samples,
    split_samples,
)
from rrsgan_geo.training.evaluation import evaluate, summarise
from rrsgan_geo.training.losses import relevance_ranking_loss

STATE_FILE = "state.pt"
INPUT_KEYS = ("LR", "LR_UX4", "Ref", "Ref_DUX4")


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
    grown_learning_rate: float | None = None
    """The learning rate of the parameters grown on `init_weights` (blur conditioning the
    weights lack, `with_blur_conditioning`); None: `learning_rate`. They start at zero,
    and at a fine-tuning rate Adam barely moves them: after 250 steps at 2.5e-5 the grown
    modulation changed features by at most 1 %."""
    warmup_steps: int = 0
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
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    degradation: TrainingDraws | None = None
    """The sensor models training LR is made with (`sensor.TrainingDraws`); None: the
    data set's own LR only (the authors' recipe). Validation then also scores the
    fixed `sensor.EVALUATION_SENSOR` LR."""

    def __post_init__(self) -> None:
        check_numbers(self)
        if self.stage not in (1, 2):
            raise ConfigError(f"stage must be 1 (L1) or 2 (GAN), got {self.stage}")
        if self.lr_crop % 8:
            raise ConfigError(f"lr_crop must be a multiple of 8, got {self.lr_crop}")
        if self.amp not in ("none", "fp16", "bf16"):
            raise ConfigError(f"amp must be none, fp16 or bf16, got {self.amp!r}")
        at_least = {
            "steps": 1,
            "batch_size": 1,
            "lr_crop": 8,
            "split_block": 1,
            "val_images": 1,
            "val_every": 1,
            "checkpoint_every": 1,
            "warmup_steps": 0,
            "margin": 0,
            "gan_start_step": 0,
        }
        for name, least in at_least.items():
            if getattr(self, name) < least:
                raise ConfigError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.gamma <= 0:
            raise ConfigError(
                f"learning_rate and gamma must be > 0, got {self.learning_rate} and {self.gamma}"
            )
        if self.grown_learning_rate is not None and self.grown_learning_rate <= 0:
            raise ConfigError(
                f"grown_learning_rate must be a number > 0, got {self.grown_learning_rate!r}"
            )
        if not all(0 <= beta < 1 for beta in self.betas) or len(self.betas) != 2:
            raise ConfigError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        if any(step < 1 for step in self.milestones):
            raise ConfigError(f"milestones must be steps >= 1, got {list(self.milestones)}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


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
                "reference": ReferenceConfig.from_dict(raw.get("reference") or {}),
                "degradation": None
                if raw.get("degradation") is None
                else TrainingDraws.from_dict(raw["degradation"]),
            }
        )
    except TypeError as error:
        raise ConfigError(f"{path}: {error}") from None


def scored_samples(folders: list[Path], held_out: Path | None = None) -> list[Sample]:
    """The samples to score in `folders` (`evaluate`, `benchmarks/reference_oracle.py`):
    all of them, or with `held_out` (a training config) only the places its split
    held out from training, split exactly as training split them."""
    if held_out is None:
        return [sample for folder in folders for sample in find_samples(folder)]
    config = load_config(held_out)
    _, samples = split_samples(folders, config.val_fraction, config.split_block, config.seed)
    if not samples:
        raise InputError(f"{held_out} holds out none of these samples")
    return samples


def portable_name(path: Path) -> str:
    """A data folder as exports record it: its last two parts, never a local path."""
    return "/".join(path.parts[-2:])


@dataclass
class StepLog:
    step: int
    losses: dict[str, float]
    learning_rate: float
    validation: dict[str, float] | None = None


def _distributed() -> tuple[int, int]:
    """(rank, world size) of an initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """Builds everything from a config; `run` trains until `config.steps`.

    Under an initialised process group (torchrun) the generator is wrapped in
    DistributedDataParallel; rank 0 alone validates, checkpoints and exports."""

    def __init__(self, config: TrainConfig, device: torch.device, resume: bool = False) -> None:
        self.config, self.device = config, device
        self.rank, self.world_size = _distributed()
        if config.batch_size % self.world_size:
            raise ConfigError(
                f"batch_size {config.batch_size} must be divisible by the "
                f"{self.world_size} processes"
            )
        for folder in config.data:
            if not folder.is_dir():
                raise ConfigError(f"training data folder not found: {folder}")
        train, val = split_samples(
            config.data, config.val_fraction, config.split_block, config.seed
        )
        if not train:
            raise ConfigError("the spatial split left no training sample: lower val_fraction")
        self.train_data = RefSRDataset(train, config.reference.co_register)
        smallest = min(min(lr.shape[:2]) for lr, _, _ in self.train_data.images)
        if config.lr_crop > smallest:
            raise ConfigError(
                f"lr_crop {config.lr_crop} is larger than the smallest LR image ({smallest} px)"
            )
        held_out, co_register = val[: config.val_images], config.reference.co_register
        self.val_data = RefSRDataset(held_out, co_register) if val else None
        self.val_sensor_data = (
            RefSRDataset(held_out, co_register, EVALUATION_SENSOR)
            if val and config.degradation is not None
            else None
        )
        self.val_places = sorted({s.name for s in val})
        torch.manual_seed(config.seed)
        self.init_note = ""
        self.grown: frozenset[str] = frozenset()
        if config.model.bicubic_expert:
            raise ConfigError(
                "a generator with a bicubic expert is not trained as one: train each "
                "network as its own model, then join them (rrsgan-geo weights combine)"
            )
        if config.init_weights is not None:
            joined, weights = load_generator(config.init_weights)
            # A joined file (the shipped compact weights) continues as its sensor
            # network; the bicubic expert is trained, and joined, on its own.
            loaded = without_bicubic_expert(joined)
            self.generator = with_blur_conditioning(loaded, config.model)
            self.grown = frozenset(
                dict(self.generator.named_parameters()).keys()
                - dict(loaded.named_parameters()).keys()
            )
            self.generator.train()
            self.init_note = f", continued from {config.init_weights.name} ({weights.sha256[:12]})"
            if joined is not loaded:
                self.init_note += ", its sensor network (the bicubic expert left out)"
        else:
            self.generator = RRSNet(config.model)
        # channels_last, as `sr` runs the model (`inference.TileModel`): on the 2-core CPU
        # a compact stage-1 step (batch 8, LR crop 32) took 0.82-0.87 s against
        # 0.97-1.13 s in the standard layout, alternating in one process.
        self.generator.to(device, memory_format=torch.channels_last)
        # The content extractor's `tail` exists for checkpoint compatibility only (the
        # forward never uses it): frozen, so DDP does not wait for its gradients.
        self.generator.content_extractor.tail.requires_grad_(False)
        self.model = self.generator
        if self.world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.model = DistributedDataParallel(self.generator, device_ids=ids)
        self.optimizer = self._adam(self.generator, self.grown)
        self.scheduler = self._schedule(self.optimizer)
        self.step, self.best_psnr = 0, -math.inf
        self._ahead: tuple[int, dict[str, torch.Tensor]] | None = None
        self.stage2 = None
        if config.stage == 2:
            self.stage2 = AdversarialStage(
                config.loss_weights,
                config.vgg19_weights,
                patch=config.lr_crop * 4,
                gan_start_step=config.gan_start_step,
                make_optimizer=self._adam,
                make_scheduler=self._schedule,
                device=device,
            )
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

    def _adam(
        self, module: torch.nn.Module, grown: frozenset[str] = frozenset()
    ) -> torch.optim.Adam:
        """Adam over `module`'s trainable parameters; those named in `grown` in a group
        of their own at `grown_learning_rate` (the schedule scales both alike)."""
        trained = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        apart = grown if self.config.grown_learning_rate is not None else frozenset()
        groups = [{"params": [p for name, p in trained if name not in apart]}]
        if apart:
            grown_params = [p for name, p in trained if name in apart]
            groups.append({"params": grown_params, "lr": self.config.grown_learning_rate})
        return torch.optim.Adam(groups, lr=self.config.learning_rate, betas=self.config.betas)

    def _schedule(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """A linear warm-up over `warmup_steps` (for a fresh optimiser on trained
        weights), then the learning rate times `gamma` at each milestone."""
        warmup, milestones, gamma = (
            self.config.warmup_steps,
            sorted(self.config.milestones),
            self.config.gamma,
        )

        def factor(step: int) -> float:
            ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
            return ramp * gamma ** bisect.bisect_right(milestones, step)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _autocast(self) -> torch.autocast:
        """fp16 or bf16 on CUDA; bf16 on CPUs too, which with bf16 arithmetic train
        faster in it: 200 steps of the compact model (crop 32, from phase 9) took 156 s
        against 195 s in fp32 on the 2-core AVX512-BF16 CPU, with the same validation
        (31.82 dB, reference +0.096 vs +0.097, truth +4.537 vs +4.533). fp16 on a CPU
        has no fast kernels: it stays off there."""
        dtype = PRECISIONS.get(self.config.amp)  # amp "none": None
        enabled = self.config.amp == "bf16" or (
            self.config.amp == "fp16" and self.device.type == "cuda"
        )
        return torch.autocast(self.device.type, dtype=dtype, enabled=enabled)

    def _build_batch(self, step: int) -> dict[str, torch.Tensor]:
        """This rank's batch of `step`, built on the CPU and handed to the device through
        pinned memory (an asynchronous copy on CUDA), channels_last like the model."""
        config = self.config
        batch = self.train_data.batch(
            config.batch_size,
            config.lr_crop,
            config.seed,
            step,
            config.reference,
            rank=self.rank,
            world_size=self.world_size,
            degradation=config.degradation,
        )
        return {
            key: to_device(images, self.device).contiguous(
                memory_format=torch.channels_last if images.ndim == 4 else torch.contiguous_format
            )
            for key, images in batch.items()
        }

    def _batch(self, step: int) -> dict[str, torch.Tensor]:
        """The batch of `step`: the one built ahead during the previous step, if any."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == step:
            return ahead[1]
        return self._build_batch(step)

    def _build_ahead(self) -> None:
        """Build the next step's batch now (while a GPU still computes this step's)."""
        if self.step + 1 < self.config.steps:
            self._ahead = (self.step + 1, self._build_batch(self.step + 1))

    def train_step(self) -> dict[str, float]:
        """One optimiser step. The next step's batch is built on the CPU once this
        step's work is queued and before its losses are read, so that on a GPU the
        batch is made while the device computes (built on the H100 at the start of the
        step, it took 40 % of each step)."""
        config = self.config
        batch = self._batch(self.step)
        hr = batch["HR"]
        keeping = (
            relevance_kept(self.generator) if config.loss_weights.relevance else nullcontext([])
        )
        with self._autocast(), keeping as relevance:
            sr = self.model(*(batch[k] for k in INPUT_KEYS), blur=batch["blur"])
        sr = sr.float()
        losses = {"pixel": F.l1_loss(sr, hr) * config.loss_weights.pixel}
        if relevance:
            ranking = relevance_ranking_loss(relevance[0], batch["Replaced"])
            losses["relevance"] = ranking * config.loss_weights.relevance
        if self.stage2 is not None:
            grads = self.stage2.gradient_maps(sr, hr)
            losses.update(self.stage2.generator_losses(sr, hr, grads, self.step))
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self._build_ahead()
        logs = {k: v.item() for k, v in losses.items()}
        if self.stage2 is not None:
            logs.update(self.stage2.train_discriminators(sr, hr, grads, self.step))
        self.step += 1
        return logs

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean RGB PSNR (authors' protocol) on the held-out places: the model, the model
        without its reference, with the truth as reference, and bicubic; `ref_effect`
        (PSNR with the reference minus without) shows whether the path is learning.
        When training on sensor models, the same on the evaluation sensor's LR
        (`sensor_` names, the model told the true blur code) and `score`, the mean of
        the two models' gains over bicubic, which picks the best export."""
        self.generator.eval()
        results = self._validation_means(self.val_data, "")
        if self.val_sensor_data is not None:
            results |= self._validation_means(self.val_sensor_data, "sensor_")
            results["score"] = (
                results["model"] - results["bicubic"] + results["sensor_model"]
            ) - results["sensor_bicubic"]
        else:
            results["score"] = results["model"]
        self.generator.train()
        return results

    def _validation_means(self, data: RefSRDataset, prefix: str) -> dict[str, float]:
        scores = evaluate(self.generator, data, self.device, other_dates=False, scene_blur=None)
        means = summarise(scores)["mean_psnr_rgb"]
        return {
            **{prefix + k: v for k, v in means.items()},
            prefix + "ref_effect": means["model"] - means["model_no_ref"],
            prefix + "truth_ref_effect": means["model_truth_ref"] - means["model_no_ref"],
        }

    def run(
        self,
        on_step: Callable[[StepLog], None] | None = None,
        max_minutes: float | None = None,
    ) -> bool:
        """Train to `config.steps`, checkpointing every N steps and on the way out.

        With `max_minutes`, stop at the first step boundary after that long (every rank
        at the same step) and save. Returns True when `config.steps` was reached."""
        config = self.config
        if self.rank == 0:
            config.output_dir.mkdir(parents=True, exist_ok=True)
        self.generator.train()
        deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
        try:
            while self.step < config.steps:
                log = StepLog(self.step + 1, self.train_step(), self.scheduler.get_last_lr()[0])
                if self.rank == 0:
                    self._after_step(log)
                if on_step is not None:
                    on_step(log)
                if deadline is not None and self._all_agree(time.monotonic() >= deadline):
                    break
        finally:
            if self.rank == 0:
                self.save()
        return self.step >= config.steps

    def _after_step(self, log: StepLog) -> None:
        config = self.config
        if self.val_data is not None and self.step % config.val_every == 0:
            log.validation = self.validate()
            if log.validation["score"] > self.best_psnr:
                self.best_psnr = log.validation["score"]
                self._export("best.safetensors")
        if self.step % config.checkpoint_every == 0:
            self.save()

    def _all_agree(self, stop: bool) -> bool:
        """Rank 0's clock decides, so that every rank stops after the same step. The flag
        lives on this process's device: NCCL broadcasts CUDA tensors only."""
        if self.world_size == 1:
            return stop
        flag = torch.tensor([int(stop)], device=self.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def _export(self, name: str) -> None:
        config = self.config
        stage = (
            "stage 1 (L1)" if config.stage == 1 else "stage 2 (L1 + VGG + GAN, image and gradient)"
        )
        metadata = WeightsMetadata(
            config=self.generator.config,
            training_data=", ".join(portable_name(d) for d in config.data),
            margin=config.margin,
            notes=f"{config.name}: {stage}, step {self.step}{self.init_note}, "
            f"held-out places: {len(self.val_places)}",
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
        if self.stage2 is not None:
            state.update(self.stage2.state_dict())
        with published_when_done(self.config.output_dir / STATE_FILE) as temp:
            torch.save(state, temp)
        self._export("latest.safetensors")

    def _load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.step, self.best_psnr = state["step"], state["best_psnr"]
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.stage2 is not None:
            self.stage2.load_state_dict(state)
