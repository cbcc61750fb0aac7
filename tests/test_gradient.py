"""Gradient maps checked by hand on a small array."""

import math

import torch

from rrsgan_geo.model.gradient import GradientMagnitude


def test_gradient_magnitude_by_hand():
    image = torch.tensor([[1.0, 2.0, 4.0], [0.0, 3.0, 5.0], [7.0, 1.0, 2.0]])
    # Second channel doubles the first: each channel is handled on its own.
    out = GradientMagnitude()(torch.stack([image, 2 * image])[None])
    # Centre: v = below - above = 1 - 2 = -1; h = right - left = 5 - 0 = 5.
    assert math.isclose(out[0, 0, 1, 1].item(), math.sqrt(1 + 25 + 1e-6), rel_tol=1e-6)
    # Top-left corner, zero padding: v = below (0) - above (pad 0) = 0;
    # h = right (2) - left (pad 0) = 2.
    assert math.isclose(out[0, 0, 0, 0].item(), math.sqrt(0 + 4 + 1e-6), rel_tol=1e-6)
    # Bottom-right corner: v = pad (0) - above (5) = -5; h = pad (0) - left (1) = -1.
    assert math.isclose(out[0, 0, 2, 2].item(), math.sqrt(25 + 1 + 1e-6), rel_tol=1e-6)
    # Flat image: only the epsilon is left.
    flat = GradientMagnitude()(torch.ones(1, 1, 5, 5))
    assert math.isclose(flat[0, 0, 2, 2].item(), math.sqrt(1e-6), rel_tol=1e-4)
    assert math.isclose(out[0, 1, 1, 1].item(), math.sqrt(4 + 100 + 1e-6), rel_tol=1e-6)
