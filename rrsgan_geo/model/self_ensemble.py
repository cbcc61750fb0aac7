"""Geometric self-ensemble: the generator on rotated and flipped copies of its inputs,
each output turned back and all of them averaged.

Why: the generator is trained on crops flipped and turned at random, yet it is not
exactly equivariant to those moves, so averaging over them cancels part of its error at
no cost in training. Measured with the shipped compact weights on the 16 held-out
area-A images (RGB, the authors' protocol, co-registered references): one view +1.050 dB
over bicubic; 2 views (a mirror) +1.083; 4 views (the quarter turns) +1.103; 8 views
(turns and mirrors) +1.110, the reference adding +0.101, +0.110, +0.113 and +0.116 dB
over none. The model runs once per view, so the time grows in proportion.

LR, LR_UX4, Ref and Ref_DUX4 are moved together (they share one ground), so the
reference stays aligned with the scene in every view.
"""

from collections.abc import Callable

import torch

from rrsgan_geo.errors import ConfigError

VIEW_COUNTS = (1, 2, 4, 8)

_VIEWS: dict[int, tuple[tuple[int, bool], ...]] = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: tuple((turns, False) for turns in range(4)),
    8: tuple((turns, mirror) for turns in range(4) for mirror in (False, True)),
}
"""(quarter turns, mirrored left-right) of each view, for each number of views."""


def _moved(images: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    images = torch.rot90(images, turns, (-2, -1)) if turns else images
    return images.flip(-1) if mirror else images


def _moved_back(images: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    images = images.flip(-1) if mirror else images
    return torch.rot90(images, -turns, (-2, -1)) if turns else images


def views_note(views: int) -> str:
    """What a run's summary and a time estimate add for a self-ensemble."""
    return f", {views} views a tile" if views > 1 else ""


def check_views(views: int) -> None:
    """Refuse a number of views the ensemble does not define, before any work starts."""
    if views not in _VIEWS:
        raise ConfigError(f"self-ensemble views: use one of {VIEW_COUNTS}, got {views}")


def ensembled(
    run: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
    inputs: tuple[torch.Tensor, ...],
    views: int,
) -> torch.Tensor:
    """The mean of `run` over `views` rotated/mirrored copies of `inputs` (N x C x H x W
    each, all moved alike), each output moved back first. One view is `run(inputs)`."""
    check_views(views)
    total = None
    for turns, mirror in _VIEWS[views]:
        output = run(tuple(_moved(images, turns, mirror) for images in inputs))
        output = _moved_back(output, turns, mirror)
        total = output if total is None else total + output
    return total if views == 1 else total / views
