"""The RRSGAN generator and its parts."""

from rrsgan_geo.model.generator import (
    LR_SIZE_MULTIPLE,
    SCALE,
    GeneratorConfig,
    RRSNet,
    with_bicubic_expert,
    with_blur_conditioning,
    without_bicubic_expert,
)

__all__ = [
    "LR_SIZE_MULTIPLE",
    "SCALE",
    "GeneratorConfig",
    "RRSNet",
    "with_bicubic_expert",
    "with_blur_conditioning",
    "without_bicubic_expert",
]
