"""Reading and writing generator weight files, safely.

Two formats are read: safetensors (ours, with metadata) and plain PyTorch files
(`.pth`/`.pt`, e.g. the authors' MMSR checkpoints). PyTorch files are opened with
`torch.load(weights_only=True)`, which refuses arbitrary pickled objects, so a weight
file can never run code. Only safetensors is written.
"""

import hashlib
import importlib.resources
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from rrsgan_geo import __version__
from rrsgan_geo.errors import (
    ConfigError,
    WeightsFormatError,
    WeightsMismatchError,
    WeightsNotFoundError,
)
from rrsgan_geo.files import published_when_done
from rrsgan_geo.model import GeneratorConfig, RRSNet, with_bicubic_expert

FORMAT_TAG = "rrsgan-geo/1"
DEFAULT_MARGIN_LR = 16
MAX_MARGIN_LR = 256
"""The most context a weight file may ask each tile for (the models need 16-32): a
file's metadata must not size `sr`'s reads."""
DEFAULT_VALUE_SCALING = "RGB in [0, 1] (uint8 / 255)"
# Where trainers nest the generator's state dict inside a checkpoint, most specific first.
_NESTING_KEYS = ("params_ema", "params", "state_dict", "model", "netG", "generator")
_MISMATCHES_SHOWN = 3

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class WeightsMetadata:
    """What a weight file must say besides its tensors for inference to be right."""

    config: GeneratorConfig = field(default_factory=GeneratorConfig)
    training_data: str = "unknown"
    margin: int = DEFAULT_MARGIN_LR
    """Context in LR pixels that each tile needs on every side."""
    value_scaling: str = DEFAULT_VALUE_SCALING
    notes: str = ""
    software: str = f"rrsgan-geo {__version__}"

    def to_strings(self) -> dict[str, str]:
        return {
            "format": FORMAT_TAG,
            "architecture": json.dumps({"name": "RRSNet", **self.config.to_dict()}),
            "training_data": self.training_data,
            "margin": str(self.margin),
            "value_scaling": self.value_scaling,
            "notes": self.notes,
            "software": self.software,
        }

    @classmethod
    def from_strings(cls, strings: dict[str, str], path: Path) -> "WeightsMetadata":
        try:
            architecture = json.loads(strings["architecture"])
            architecture.pop("name", None)
            margin = int(strings.get("margin", DEFAULT_MARGIN_LR))
            if not 0 <= margin <= MAX_MARGIN_LR:
                raise ValueError(f"margin {margin} is outside 0..{MAX_MARGIN_LR} LR px")
            return cls(
                config=GeneratorConfig(**architecture),
                training_data=strings.get("training_data", "unknown"),
                margin=margin,
                value_scaling=strings.get("value_scaling", DEFAULT_VALUE_SCALING),
                notes=strings.get("notes", ""),
                software=strings.get("software", "unknown"),
            )
        except (KeyError, TypeError, ValueError, ConfigError) as error:
            raise WeightsFormatError(f"{path}: unreadable rrsgan-geo metadata ({error})") from None


@dataclass(frozen=True)
class WeightFile:
    """A weight file's tensors and what is known about them."""

    path: Path
    state_dict: StateDict
    metadata: WeightsMetadata
    has_metadata: bool
    sha256: str

    @property
    def parameter_count(self) -> int:
        return sum(tensor.numel() for tensor in self.state_dict.values())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_weight_file(path: str | os.PathLike) -> WeightFile:
    """Read tensors and metadata; the architecture is inferred when no metadata says it."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        state_dict, strings = _read_safetensors(path)
    else:
        state_dict, strings = read_torch_state_dict(path), {}
    if strings.get("format") == FORMAT_TAG:
        metadata, has_metadata = WeightsMetadata.from_strings(strings, path), True
    else:
        metadata, has_metadata = (
            WeightsMetadata(config=infer_config(state_dict, path)),
            False,
        )
    return WeightFile(path, state_dict, metadata, has_metadata, file_sha256(path))


def _read_safetensors(path: Path) -> tuple[StateDict, dict[str, str]]:
    try:
        with safetensors.safe_open(path, framework="pt") as handle:
            strings = handle.metadata() or {}
        return safetensors.torch.load_file(path), strings
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise WeightsFormatError(f"{path}: not a readable safetensors file ({error})") from None


def read_torch_state_dict(path: Path) -> StateDict:
    """A state dict from a .pth/.pt file, safely (weights_only), unnested."""
    if not _looks_like_torch_file(path):
        raise WeightsFormatError(f"{path}: not a readable PyTorch weight file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsFormatError(
            f"{path}: holds Python objects besides tensors; refusing to unpickle it "
            "(only plain state dicts are loaded)"
        ) from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise WeightsFormatError(f"{path}: not a readable PyTorch weight file ({error})") from None
    return _unnest(loaded, path)


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive; before torch 1.6 (the authors' era) a raw pickle,
    which starts with the protocol opcode 0x80. Anything else is not a torch file, so an
    unpickling failure on it would be misreported as a refused object."""
    with open(path, "rb") as stream:
        first = stream.read(1)
    return first == b"\x80" or zipfile.is_zipfile(path)


def _unnest(loaded: object, path: Path) -> StateDict:
    """Find the generator's tensors in a checkpoint and drop DataParallel's `module.`."""
    for _ in range(3):
        if not isinstance(loaded, dict):
            break
        if loaded and all(isinstance(value, torch.Tensor) for value in loaded.values()):
            return {re.sub(r"^module\.", "", key): value for key, value in loaded.items()}
        nested = next((loaded[key] for key in _NESTING_KEYS if key in loaded), None)
        if nested is None:
            break
        loaded = nested
    raise WeightsFormatError(f"{path}: no state dict of tensors found in the file")


def infer_config(state_dict: StateDict, path: Path) -> GeneratorConfig:
    """Read nf, block count and deformable groups off the tensor shapes."""
    try:
        nf = state_dict["Encoder.layer_f.0.weight"].shape[0]
        offset_channels = state_dict["gpcd_align.L3_dcnpack.conv_offset_mask.weight"].shape[0]
    except KeyError as error:
        raise WeightsMismatchError(
            f"{path}: not RRSNet generator weights (no tensor {error.args[0]})"
        ) from None
    blocks = {
        m.group(1)
        for key in state_dict
        if (m := re.match(r"content_extractor\.body\.(\d+)\.", key))
    }
    return GeneratorConfig(
        nf=nf,
        n_blocks=len(blocks),
        groups=offset_channels // 27,
        blur_input="content_extractor.condition.weight" in state_dict,
        blur_modulation="blur_modulation.net.0.weight" in state_dict,
        bicubic_expert="bicubic_expert.Encoder.layer_f.0.weight" in state_dict,
    )


def check_state_dict(model: torch.nn.Module, state_dict: StateDict, path: Path) -> None:
    """Raise a one-line error naming the first mismatching keys or shapes."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} != {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key in state_dict and state_dict[key].shape != tensor.shape
    ]
    problems = [
        f"{label} {_first(items)}"
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong_shape),
        )
        if items
    ]
    if problems:
        raise WeightsMismatchError(f"{path} does not fit the generator: " + "; ".join(problems))


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_MISMATCHES_SHOWN])
    more = len(items) - _MISMATCHES_SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def tensor_config(weights: WeightFile) -> GeneratorConfig:
    """The architecture the file's tensors have (`infer_config`), checked against what
    its metadata says. The generator is built from this, never from the metadata
    alone: metadata asking for a huge model would otherwise allocate it before a single
    tensor was checked."""
    try:
        inferred = infer_config(weights.state_dict, weights.path)
    except (WeightsMismatchError, ConfigError) as error:
        raise WeightsMismatchError(
            f"{weights.path} does not fit the generator: {str(error).split(': ', 1)[-1]}"
        ) from None
    if inferred != weights.metadata.config:
        raise WeightsMismatchError(
            f"{weights.path}: its metadata says {weights.metadata.config.to_dict()} but its "
            f"tensors are {inferred.to_dict()}"
        )
    return inferred


def check_finite(weights: WeightFile) -> None:
    """Refuse tensors holding NaN or infinity (a diverged training run's export): they
    would give a black image without a word."""
    for key, tensor in weights.state_dict.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsFormatError(
                f"{weights.path}: tensor {key} holds NaN or infinite values (a diverged "
                "training run?); refusing these weights"
            )


def load_generator(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[RRSNet, WeightFile]:
    """Build the generator a weight file's tensors describe (`tensor_config`) and load
    it strictly, in eval mode; non-finite weights are refused."""
    weights = read_weight_file(path)
    check_finite(weights)
    model = RRSNet(tensor_config(weights))
    check_state_dict(model, weights.state_dict, weights.path)
    model.load_state_dict(weights.state_dict, strict=True)
    return model.to(device).eval(), weights


def save_weights(state_dict: StateDict, path: str | os.PathLike, metadata: WeightsMetadata) -> None:
    """Write safetensors with metadata, atomically: a crash never leaves a partial file."""
    path = Path(path)
    tensors = {key: tensor.detach().to("cpu").contiguous() for key, tensor in state_dict.items()}
    with published_when_done(path) as temp:
        safetensors.torch.save_file(tensors, temp, metadata=metadata.to_strings())


def convert_weights(
    source: str | os.PathLike,
    target: str | os.PathLike,
    half: bool = False,
    **metadata_fields: object,
) -> WeightFile:
    """Check a weight file against the generator and rewrite it as safetensors.

    `half` stores the tensors as float16 (half the size; loading turns them back into
    float32). `metadata_fields` override what the source says (e.g. `training_data`).
    """
    model, weights = load_generator(source)
    metadata = replace(weights.metadata, software=f"rrsgan-geo {__version__}", **metadata_fields)
    state_dict = model.state_dict()
    if half:
        state_dict = _to_half(state_dict, Path(source))
    save_weights(state_dict, target, metadata)
    return read_weight_file(target)


def combine_weights(
    model_path: str | os.PathLike,
    expert_path: str | os.PathLike,
    target: str | os.PathLike,
) -> WeightFile:
    """One weight file from a model for blurred LR and an expert trained on bicubic LR
    (`generator.with_bicubic_expert`): the model's metadata, the larger margin of the
    two, the expert's training data and sha256 noted."""
    model, model_file = load_generator(model_path)
    expert, expert_file = load_generator(expert_path)
    joined = with_bicubic_expert(model, expert)
    ours = model_file.metadata
    notes = f"bicubic expert: {expert_file.path.name} (sha256 {expert_file.sha256[:12]})"
    metadata = replace(
        ours,
        config=joined.config,
        margin=max(ours.margin, expert_file.metadata.margin),
        training_data=f"{ours.training_data}; bicubic expert: {expert_file.metadata.training_data}",
        notes=f"{ours.notes}; {notes}" if ours.notes else notes,
        software=f"rrsgan-geo {__version__}",
    )
    save_weights(joined.state_dict(), target, metadata)
    return read_weight_file(target)


_HALF_MAX = float(torch.finfo(torch.float16).max)


def _to_half(state_dict: StateDict, path: Path) -> StateDict:
    """Floating tensors as float16; refuses a value float16 cannot hold (it would
    become infinite) rather than write weights that silently differ."""
    halved = {}
    for key, tensor in state_dict.items():
        if tensor.is_floating_point():
            if tensor.abs().max() > _HALF_MAX:
                raise WeightsFormatError(f"{path}: {key} has values beyond float16's range")
            tensor = tensor.half()
        halved[key] = tensor
    return halved


# Shipped weights, in the order each device type prefers them. The compact model comes
# first everywhere: it alone was trained for real sensors' blur and scores best on the
# sensor-like evaluation, with a bicubic expert for LR that reads bicubic-like
# (weights/README.md); the full-size one knows bicubic LR only.
SHIPPED_WEIGHTS = {
    "cuda": ("rrsgan_l1_compact.safetensors", "rrsgan_l1_full.safetensors"),
    "cpu": ("rrsgan_l1_compact.safetensors", "rrsgan_l1_full.safetensors"),
}


def shipped_weights_path(device_type: str = "cpu") -> Path:
    """The default weights for `device_type` installed with the package (weights/)."""
    folder = importlib.resources.files("rrsgan_geo.weights")
    names = SHIPPED_WEIGHTS.get(device_type, SHIPPED_WEIGHTS["cpu"])
    for name in names:
        path = Path(str(folder / name))
        if path.is_file():
            return path
    raise WeightsNotFoundError(
        f"no trained weights are installed (none of {', '.join(names)} in "
        f"{folder}): pass --weights FILE"
    )
