"""Choosing the torch device from a user's `--device` value.

Its own module, free of anything geospatial, so that `train` and `evaluate` (which run
on GPU machines without rasterio or shapely) can use it.
"""

import torch

from rrsgan_geo.errors import ConfigError


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
