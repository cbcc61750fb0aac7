"""Shared fixtures: where the read-only shared folder is, and small model builders.

The shared folder (RRSSRD pairs, the design notes) is `../shared` beside the checkout,
or wherever `RRSGAN_SHARED` points; the tests that need it skip, saying why, without it.
End-to-end tests are marked `slow`: `python -m pytest -n auto -m "not slow"` is the inner
loop. Under pytest-xdist each worker's torch gets its share of the cores, not all of them:
N workers each running N threads on N cores spend their time waiting on one another.
"""

import os
from pathlib import Path

import pytest
import torch

from rrsgan_geo.model import GeneratorConfig, RRSNet

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RRSGAN_SHARED", REPO.parent / "shared"))
DESIGN = SHARED / "design"
COMPACT = GeneratorConfig(nf=16, n_blocks=1, groups=4)


def pytest_configure(config: pytest.Config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


@pytest.fixture
def design_dir() -> Path:
    if not DESIGN.is_dir():
        pytest.skip(f"the shared design folder is absent ({DESIGN}); it holds the key table")
    return DESIGN


@pytest.fixture
def compact_model() -> RRSNet:
    torch.manual_seed(0)
    return RRSNet(COMPACT).eval()
