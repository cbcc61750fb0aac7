"""How much host memory a run of `sr` needs, decided before it reads a pixel.

A run holds the model's working memory for one batch of tiles (on the CPU) and
buffers as wide as the output: the blender's rows, the finished row block in every
written band, the writer's blocks. Height never matters; width and tile size do. A
plan that cannot fit is refused before any work with the figure and the way out,
rather than dying of memory after minutes and leaving a part file; and where the user
gives no `--tile`, the CPU tile is the largest that fits comfortably.

The model's figure is modelled, not measured per run: its peak grows with the LR
pixels of a tile (margins included), the batch and the feature channels. Measured on
the 2-core CPU (peak RSS over the loaded process, one tile, fp32 and bf16 alike):
the compact model (16 features) 42-50 KB per LR pixel for tiles of 64 to 256 (runs
differ by a tenth), the full model (64 features) 167 KB: 42-50 live feature maps of the
4x grid; `LIVE_FEATURE_MAPS` takes 50.
"""

from dataclasses import dataclass
from pathlib import Path

from rrsgan_geo.errors import MemoryBudgetError
from rrsgan_geo.upscaling import SCALE

LIVE_FEATURE_MAPS = 50
"""Feature maps of the 4x grid (per feature channel, float32) alive at the model's
peak, per LR pixel of a tile: 50 x 16 SR pixels x 4 bytes x features."""
PROCESS_BASE = 600 * 2**20
"""The loaded process before any tile: Python, torch, GDAL (measured 520-570 MB)."""
COMFORTABLE_SHARE = 0.5
"""A default tile uses at most this share of the memory available."""
CPU_TILES = (256, 128, 64, 32)
"""Default CPU tiles, largest first: 256 runs the most kept pixels per second."""
_ROW_PLANES = 8
"""float32 planes of a finished row block: the blended bands and relevance, their
copy, and the detail injection's temporaries (a band's bicubic, gain, detail)."""


@dataclass(frozen=True)
class MemoryEstimate:
    model: int
    rows: int
    """Buffers as wide as the output: the blender, the finished rows, the writer."""
    strips: int
    """Strips read ahead (the scene and the warped references)."""

    @property
    def total(self) -> int:
        return PROCESS_BASE + self.model + self.rows + self.strips

    def describe(self) -> str:
        return (
            f"about {_gib(self.total)} (model {_gib(self.model)}, rows as wide as the output "
            f"{_gib(self.rows)}, strips read ahead {_gib(self.strips)})"
        )


def estimate(
    *,
    tile: int,
    margin: int,
    batch: int,
    features: int,
    model_on_host: bool,
    sr_width: int,
    bands: int,
    itemsize: int,
    strips_in_flight: int,
) -> MemoryEstimate:
    """Host memory of a run (bytes), its parts named."""
    side = tile + 2 * margin
    per_feature = LIVE_FEATURE_MAPS * SCALE * SCALE * 4
    model = per_feature * features * side * side * batch if model_on_host else 0
    kept_rows = (tile + margin) * SCALE
    blender = (3 + 1) * kept_rows * sr_width * 4
    finished = (_ROW_PLANES + bands) * tile * SCALE * sr_width * 4
    writer = 2 * 256 * sr_width * bands * itemsize
    # A strip: its LR, the references' warp and LR_UX4 on the 4x grid, 3 float32 bands.
    strip = strips_in_flight * side * side * SCALE * SCALE * 3 * 4 * 3
    return MemoryEstimate(model, blender + finished + writer, strip)


def available_memory() -> int | None:
    """Bytes this process may still use: the kernel's MemAvailable, lowered to what is
    left under a cgroup (container) limit; None where neither can be read."""
    available = _meminfo_available()
    limit = _cgroup_room()
    if available is None:
        return limit
    return available if limit is None else min(available, limit)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room() -> int | None:
    """cgroup v2: memory.max minus memory.current, where a limit is set."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def parse_memory(text: str) -> int:
    """'4G', '512M', '4GiB', '2.5g' or bytes -> bytes (binary units)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = cleaned, ""
    if cleaned and cleaned[-1] in units:
        number, unit = cleaned[:-1], cleaned[-1]
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise MemoryBudgetError(f"{text!r}: expected a size such as 4G or 512M") from None
    if value <= 0:
        raise MemoryBudgetError(f"{text!r}: a memory size must be positive")
    return int(value)


def _gib(value: int) -> str:
    return f"{value / 2**30:.1f} GiB"


def budget_message(need: MemoryEstimate, budget: int, way_out: str) -> str:
    return f"this run needs {need.describe()}, {_gib(budget)} available: {way_out}"
