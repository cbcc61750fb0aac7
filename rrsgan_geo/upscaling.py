"""The upscaling factor and the LR size multiple, without torch.

Grids and tile layouts need these numbers, and nothing else of the model: keeping them
here lets geometry (and `--help`, and planning a dry run) load without torch."""

SCALE = 4
"""Output pixels per scene pixel, along each axis: RRSGAN is a 4x model."""
LR_SIZE_MULTIPLE = 4
"""LR heights and widths the generator takes are multiples of this: two stride-2
encoder stages on the 4x grid are undone by two 2x upsamplings."""
