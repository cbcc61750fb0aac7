"""Mapping stored pixel values to the model's [0, 1] and back.

The scaling is fixed once per scene (never per tile, which would make seams) and
recorded in the output's tags, so a result can be traced and reproduced. It is a
linear map both ways and never clips: values outside the chosen range (the brightest
2 % under `--scale p2,p98`, say) map outside [0, 1], pass the model's bilinear base
path and come back in the scene's units; only the output dtype's own range limits
them.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.windows import Window

from rrsgan_geo.errors import ScalingError
from rrsgan_geo.geo.rasters import decimated_shape, is_floating, raster_name

_PERCENTILE_SAMPLE_PIXELS = 1 << 22  # a decimated read: the whole scene, bounded memory
_COUNT_ROWS = 64  # rows read at a time when counting unusable values
UNIT_LIMIT = 1e4
"""The farthest outside [0, 1] a value is carried (10,000 times the chosen range): a
float value of 3e38 would otherwise overflow to infinity and spread through the model.
Values beyond it are clipped to it, and the plan notes how many there are."""


@dataclass(frozen=True)
class ValueScaling:
    """Per-band linear map: stored value v -> (v - low) / (high - low)."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    method: str

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """bands x H x W stored values -> float32, [low, high] onto [0, 1], unclipped
        but for values beyond `UNIT_LIMIT` (computed in float64, so none overflows)."""
        if _within_limit(values.dtype):
            low, span = self._arrays()
            unit = values.astype(np.float32)
            unit -= low
            unit /= span
            return unit
        unit = self._unit64(values)
        return np.clip(unit, -UNIT_LIMIT, UNIT_LIMIT, out=unit).astype(np.float32)

    def beyond_limit(self, values: np.ndarray) -> int:
        """How many finite values `to_unit` clips (`UNIT_LIMIT`)."""
        unit = self._unit64(values)
        return int((np.isfinite(unit) & (np.abs(unit) > UNIT_LIMIT)).sum())

    def _unit64(self, values: np.ndarray) -> np.ndarray:
        low, span = self._arrays()
        return (values.astype(np.float64) - low) / span

    def to_values(self, unit: np.ndarray) -> np.ndarray:
        """float -> the stored units as float32, neither rounded nor limited."""
        low, span = self._arrays()
        return unit.astype(np.float32) * span + low

    def from_unit(self, unit: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """float -> the stored dtype, rounded and limited to the dtype's range only."""
        values = self.to_values(unit)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        return values.astype(dtype)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        return low, high - low

    def subset(self, positions: Iterable[int]) -> "ValueScaling":
        """The scaling of some of the bands, by their positions in this one."""
        positions = list(positions)
        return ValueScaling(
            tuple(self.low[i] for i in positions),
            tuple(self.high[i] for i in positions),
            self.method,
        )

    def describe(self) -> str:
        return json.dumps({"method": self.method, "low": self.low, "high": self.high})


def parse_scale_option(text: str) -> tuple[float, float] | tuple[float, float, str]:
    """A value range: 'MIN,MAX' for a fixed range or 'pLOW,pHIGH' for percentiles."""
    parts = [part.strip() for part in text.split(",")]
    percentiles = len(parts) == 2 and all(part.startswith("p") for part in parts)
    try:
        low, high = (float(part[1:] if percentiles else part) for part in parts)
    except ValueError:
        raise ScalingError(
            f"{text!r}: expected MIN,MAX (e.g. 0,3000) or percentiles pLOW,pHIGH (e.g. p2,p98)"
        ) from None
    if percentiles and not 0 <= low < high <= 100:
        raise ScalingError(
            f"{text!r}: percentiles must rise within 0..100, low first (e.g. p2,p98)"
        )
    if low >= high:
        raise ScalingError(f"{text!r}: MIN must be below MAX (e.g. 0,3000)")
    return (low, high, "percentile") if percentiles else (low, high)


def choose_scaling(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], scale: str | None, what: str
) -> ValueScaling:
    """uint8 maps /255; any other dtype needs `scale`, never a silent guess."""
    count = len(bands)
    if scale is None:
        if dataset.dtypes[bands[0] - 1] == "uint8":
            return ValueScaling((0.0,) * count, (255.0,) * count, "uint8/255")
        option = "--ref-scale" if what == "reference" else "--scale"
        raise ScalingError(
            f"{what} {raster_name(dataset)} is {dataset.dtypes[bands[0] - 1]}, not uint8: give its "
            f"value range, e.g. {option} 0,3000 or a whole-scene stretch {option} p2,p98"
        )
    parsed = parse_scale_option(scale)
    if len(parsed) == 2:
        return ValueScaling((parsed[0],) * count, (parsed[1],) * count, "fixed")
    return _percentile_scaling(dataset, bands, parsed[0], parsed[1])


def _percentile_scaling(
    dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], low: float, high: float
) -> ValueScaling:
    """Per-band percentiles over the whole scene, read decimated (GDAL picks overviews)."""
    shape = (len(bands), *decimated_shape(dataset, _PERCENTILE_SAMPLE_PIXELS))
    sample = dataset.read(bands, out_shape=shape, masked=True)
    lows, highs = [], []
    for band in sample:
        valid = band.compressed()
        valid = valid[np.isfinite(valid)]  # NaN and infinity are holes, tagged or not
        if valid.size == 0:
            raise ScalingError(
                f"{raster_name(dataset)}: no valid pixels to compute a percentile stretch"
            )
        lo, hi = np.percentile(valid, [low, high])
        lows.append(float(lo))
        highs.append(float(max(hi, lo + 1e-6)))
    return ValueScaling(tuple(lows), tuple(highs), f"percentile p{low:g},p{high:g}")


def _within_limit(dtype: np.dtype) -> bool:
    """8- and 16-bit integers: no value can be non-finite or overflow the scaling."""
    return dtype.itemsize <= 2 and np.issubdtype(dtype, np.integer)


def count_unusable_values(
    dataset: rasterio.io.DatasetReader,
    bands: tuple[int, ...],
    scaling: ValueScaling,
    window: Window | None = None,
) -> tuple[int, int]:
    """(NaN or infinite values, finite values `to_unit` clips) in the bands' `window`
    (default: all), read a few rows at a time. Without reading, (0, 0) for 8- and
    16-bit integer rasters, whose values can be neither."""
    if all(_within_limit(np.dtype(dataset.dtypes[band - 1])) for band in bands):
        return 0, 0
    window = window or Window(0, 0, dataset.width, dataset.height)
    floating = is_floating(dataset, bands)
    non_finite = beyond = 0
    for top in range(int(window.row_off), int(window.row_off + window.height), _COUNT_ROWS):
        rows = min(_COUNT_ROWS, int(window.row_off + window.height) - top)
        chunk = Window(window.col_off, top, window.width, rows)
        values = dataset.read(bands, window=chunk, masked=True)
        usable = values.filled(0) if np.ma.is_masked(values) else values.data
        if floating:
            finite = np.isfinite(usable)
            non_finite += int((~finite & ~np.ma.getmaskarray(values)).sum())
            usable = np.where(finite, usable, 0)
        beyond += scaling.beyond_limit(usable)
    return non_finite, beyond
