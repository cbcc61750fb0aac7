"""Low-contrast tiles stretched around the model and the stretch undone after.

The generator adds a small pattern of its own at each place of the 4 x 4 output block
(a few tenths of an 8-bit level; `inference.TileModel.flat_field_pattern` takes off the
part a flat image shows). Where a scene's scaling is wide and the tile's data span a
small part of it (dark fields in a 16-bit scene stretched for its clouds), that pattern
is as large as the tile's real detail and comes back as a 4-pixel dot pattern once
scaled to the output's units. Stretching such a tile's values (and its references'
alike) to a contrast the model was trained on, and mapping its output back, keeps what
the model does in proportion to the signal and shrinks its own pattern by the
stretch's gain; running those tiles over the quarter turns (`STRETCHED_VIEWS`) averages
what is left of it out. A tile with contrast enough is not touched."""

from collections.abc import Callable
from dataclasses import dataclass

import torch

MIN_SPREAD = 0.25
"""A tile whose LR values, from the 1st to the 99th percentile over its bands, span
less than this share of the model's [0, 1] range is stretched to span it. Flatter than
all but a few of the training data's tiles, so the model's scores do not move; a wider
stretch would also reach the tiles the model was trained on, and it is not exactly
equivariant to contrast, least with a reference (`docs/performance.md`)."""
STRETCHED_VIEWS = 4
"""The fewest self-ensemble views a stretched tile runs with. The model's pattern is
fixed to the 4 x 4 output block; averaged over its quarter turns it cancels: on the
Sentinel-2 window of `docs/performance.md` the spread of the 16 block places' mean
SR - bicubic fell from 3.4 DN (stretch alone) to 1.1 DN. Only stretched tiles pay the
4 model runs, and they are few in a scene whose scaling suits it."""
MAX_GAIN = 16.0
"""The largest stretch: a tile flatter than 1/64 of the range is stretched only this
much (a flat tile is left as it is)."""


@dataclass(frozen=True)
class ContrastStretch:
    """Per tile, an affine map of values (`apply`) and its inverse (`undo`)."""

    gain: torch.Tensor
    """N x 1 x 1 x 1, 1 where a tile is not stretched."""
    centre: torch.Tensor
    """N x 1 x 1 x 1: the value that stays where it is relative to the middle."""

    @classmethod
    def for_tiles(cls, lr: torch.Tensor) -> "ContrastStretch | None":
        """The stretch of each of N tiles (N x C x h x w LR in [0, 1]), or None when
        none needs one."""
        values = lr.detach().float().flatten(1)
        levels = torch.tensor([0.01, 0.99], device=values.device)
        low, high = torch.quantile(values, levels, dim=1)
        spread = high - low
        gain = torch.where(
            spread > 0, (MIN_SPREAD / spread.clamp(min=1e-12)).clamp(1.0, MAX_GAIN), 1.0
        )
        if bool((gain == 1).all()):
            return None
        return cls(gain[:, None, None, None], ((low + high) / 2)[:, None, None, None])

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Tiles of the LR or of a reference on the LR's scale (N x C x H x W): the
        tile's middle value goes to the middle of the range, and the values around it
        spread by the gain."""
        gain, centre = self._on(images)
        return (images - centre) * gain + 0.5 * (1 - 1 / gain) + centre / gain

    def undo(self, images: torch.Tensor) -> torch.Tensor:
        gain, centre = self._on(images)
        return (images - 0.5 * (1 - 1 / gain) - centre / gain) / gain + centre

    def _on(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self.gain.to(images.device, images.dtype),
            self.centre.to(images.device, images.dtype),
        )


def stretched_views(views: int) -> int:
    """The views a stretched tile runs with, the run's own being `views`."""
    return max(views, STRETCHED_VIEWS)


Run = Callable[[tuple[torch.Tensor, ...]], torch.Tensor]


def stretched(
    run: Run,
    inputs: tuple[torch.Tensor, ...],
    on_stretch: Callable[[int], object] | None = None,
    run_stretched: Run | None = None,
) -> torch.Tensor:
    """`run` on (LR, LR_UX4, Ref, Ref_DUX4) tiles, the low-contrast ones stretched
    (`ContrastStretch`) and run by `run_stretched` (`run` where not given); the image
    (the first 3 channels of the output) mapped back, further channels (the relevance)
    left as they come. `on_stretch` is told how many tiles were stretched, once they
    have run (not when a run raised: a batch retried after running out of memory
    counts once)."""
    stretch = ContrastStretch.for_tiles(inputs[0])
    if stretch is None:
        return run(inputs)
    moved = tuple(stretch.apply(t) for t in inputs)
    low = (stretch.gain > 1).flatten()
    if run_stretched is None or bool(low.all()):
        output = (run_stretched or run)(moved)
    else:  # the tiles with contrast enough run as they are (the stretch left them alone)
        high_output = run(tuple(t[~low] for t in moved))
        low_output = run_stretched(tuple(t[low] for t in moved))
        output = high_output.new_empty((low.shape[0], *high_output.shape[1:]))
        output[~low], output[low] = high_output, low_output
    if on_stretch is not None:
        on_stretch(int(low.sum()))
    with torch.inference_mode(output.is_inference()):
        output[:, :3] = stretch.undo(output[:, :3])
    return output
