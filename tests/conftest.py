"""Shared fixtures: where the read-only shared folder is, and small model builders.

The shared folder (RRSSRD pairs, the design notes) is `../shared` beside the checkout,
or wherever `RRSGAN_SHARED` points; the tests that need it skip, saying why, without it.
End-to-end tests are marked `slow`: `python -m pytest -m "not slow"` is the inner loop.
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


@pytest.fixture
def design_dir() -> Path:
    if not DESIGN.is_dir():
        pytest.skip(f"the shared design folder is absent ({DESIGN}); it holds the key table")
    return DESIGN


@pytest.fixture
def compact_model() -> RRSNet:
    torch.manual_seed(0)
    return RRSNet(COMPACT).eval()
