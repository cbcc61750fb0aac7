"""Which of a scene's bands `sr` writes, and which three (or one) the model sees.

The model is RGB: it compares the scene's visible bands with a reference, which is
nearly always an RGB image. A multispectral scene (Sentinel-2's blue, green, red and
NIR; Landsat's seven bands) has more: every band is written, the visible ones go
through the model, and the others get their 4x detail from the model's visible
output (`band_injection`). The visible bands are named (`--rgb-bands`), or found from
GDAL's colour interpretation or the band descriptions; a 3-band or 1-band output needs
neither, its bands are what the model sees, as before multispectral scenes.
"""

import re
from dataclasses import dataclass

import rasterio
from rasterio.enums import ColorInterp

from rrsgan_geo.errors import InputError
from rrsgan_geo.geo.rasters import MODEL_BANDS, raster_name, refuse_missing_bands, refuse_paletted

_COLOURS = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
_COLOUR_WORDS = ("red", "green", "blue")


@dataclass(frozen=True)
class BandRoles:
    """`written`: the scene's bands in the output, in order. `visible`: the bands the
    model sees (3 as red, green, blue, or 1 repeated), which may include bands not
    written (`--bands 5,4 --rgb-bands 3,2,1` writes NIR and SWIR sharpened by the
    visible ones)."""

    written: tuple[int, ...]
    visible: tuple[int, ...]

    @property
    def injected(self) -> tuple[int, ...]:
        """Written bands that the model does not see: their detail is injected."""
        return tuple(band for band in self.written if band not in self.visible)

    @property
    def needed(self) -> tuple[int, ...]:
        """Every band read from the scene: the written ones, then the visible others."""
        return self.written + tuple(band for band in self.visible if band not in self.written)


def band_roles(
    dataset: rasterio.io.DatasetReader,
    bands: tuple[int, ...] | None,
    rgb_bands: tuple[int, ...] | None,
) -> BandRoles:
    """The written bands: `bands`, else every band but alpha. The visible ones:
    `rgb_bands`, else the written bands when they are 3 or 1, else the bands GDAL calls
    red, green and blue, else those whose descriptions say so."""
    written = bands if bands is not None else _data_bands(dataset)
    _check_exist(dataset, written, "--bands")
    refuse_paletted(dataset, written, "scene")
    if rgb_bands is not None:
        if len(rgb_bands) not in (1, MODEL_BANDS):
            raise InputError(f"--rgb-bands {_listed(rgb_bands)}: give 3 band numbers or 1")
        _check_exist(dataset, rgb_bands, "--rgb-bands")
        return BandRoles(written, rgb_bands)
    if len(written) in (1, MODEL_BANDS):
        return BandRoles(written, written)
    visible = _visible_bands(dataset)
    if visible is None:
        names = ", ".join(f"{i}={d}" for i, d in enumerate(dataset.descriptions, start=1) if d)
        raise InputError(
            f"scene {raster_name(dataset)} has {dataset.count} bands"
            + (f" ({names})" if names else "")
            + " and none is tagged red, green or blue: name the visible ones with "
            "--rgb-bands, e.g. --rgb-bands 3,2,1 (or write 3 or 1 bands with --bands)"
        )
    return BandRoles(written, visible)


def _data_bands(dataset: rasterio.io.DatasetReader) -> tuple[int, ...]:
    bands = tuple(
        band
        for band, colour in enumerate(dataset.colorinterp, start=1)
        if colour != ColorInterp.alpha
    )
    return bands or (1,)


def _visible_bands(dataset: rasterio.io.DatasetReader) -> tuple[int, ...] | None:
    """(red, green, blue) by colour interpretation, else by description (a word
    'red', 'green' or 'blue' in it, each found in exactly one band)."""
    found = []
    for colour, word in zip(_COLOURS, _COLOUR_WORDS, strict=True):
        by_colour = [i for i, c in enumerate(dataset.colorinterp, start=1) if c == colour]
        pattern = re.compile(rf"\b{word}\b", re.IGNORECASE)
        by_name = [
            i for i, d in enumerate(dataset.descriptions, start=1) if d and pattern.search(d)
        ]
        candidates = by_colour if len(by_colour) == 1 else by_name
        if len(candidates) != 1:
            return None
        found.append(candidates[0])
    return tuple(found) if len(set(found)) == MODEL_BANDS else None


def _check_exist(dataset: rasterio.io.DatasetReader, bands: tuple[int, ...], flag: str) -> None:
    if not bands:
        raise InputError(f"{flag}: give at least one band number")
    refuse_missing_bands(dataset, bands, f"{flag} {_listed(bands)}: scene")


def _listed(bands: tuple[int, ...]) -> str:
    return ",".join(map(str, bands))
