"""Choosing the torch device from a user's `--device` value, and the precisions the
model runs in there.

Its own module, free of anything geospatial, so that `train` and `evaluate` (which run
on GPU machines without rasterio or shapely) can use it.
"""

import torch

from rrsgan_geo.errors import ConfigError

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
"""`--precision` and `amp` names and the autocast dtype each means (None: no autocast)."""


def default_batch(device: torch.device) -> int:
    """Tiles per model call when the user gives none: 4 on a GPU; 1 on the CPU, where a
    larger batch gains nothing (2 tiles of 128: 2.44 vs 2.62 LR kpx/s) and costs memory."""
    return 4 if device.type == "cuda" else 1


def resolve_device(spec: str) -> torch.device:
    """'auto' takes the first CUDA GPU when there is one, else the CPU."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: no CUDA GPU is available here")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) here")
    elif device.type != "cpu":
        raise ConfigError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N")
    return device


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; through pinned memory on CUDA, so the copy is
    asynchronous and the host goes on while it runs."""
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
