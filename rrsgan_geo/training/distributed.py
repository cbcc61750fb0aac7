"""Running `train` under torchrun: one process per device, one process group.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them training is a single
process and nothing here does anything. On CUDA each process takes the GPU of its local
rank and the NCCL backend; on the CPU the gloo backend.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from rrsgan_geo.devices import resolve_device


@contextmanager
def distributed_process_group(device_spec: str) -> Iterator[torch.device]:
    """The device this process trains on, inside a process group when under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_spec)
    if world_size == 1:
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()
