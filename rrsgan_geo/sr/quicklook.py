"""A picture of what the model did (`sr --quicklook PNG`): bicubic | SR | reference |
relevance on one representative window, to look at before trusting an output.

The window (`WINDOW_LR` scene pixels a side) is picked among a 3 x 3 grid of places
over the scene, where the reference covers it and the scene has the most texture
(gradient energy): where the model had something to do and something to take. Its
panels are read as the run saw them: the scene bicubic-upsampled, the written output,
the reference moved as co-registration moved it, and the x4 relevance gate, from one
more run of the model on that window. The three images share one display stretch
(2nd-98th percentile over all three), so brightness differences are real; the
relevance panel maps 0..1 to black..white. A scale bar and the window's position
(pixel and CRS coordinates of its top-left corner) are drawn on it.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np
import rasterio
import torch
from PIL import Image, ImageDraw
from rasterio.windows import Window

from rrsgan_geo.errors import InputError
from rrsgan_geo.files import published_when_done
from rrsgan_geo.sr.co_registration import ReferenceOffset, candidate_tiles
from rrsgan_geo.sr.inference import TileModel, model_inputs
from rrsgan_geo.sr.pipeline import Generator, SRReport, tile_reader
from rrsgan_geo.sr.planning import SRPlan
from rrsgan_geo.sr.sources import BLOCKWISE_WARPING
from rrsgan_geo.sr.tiling import TileLayout
from rrsgan_geo.upscaling import SCALE

WINDOW_LR = 64
"""Scene pixels a side of the window shown (256 output pixels)."""
ZOOM = 2
"""Each output pixel drawn as ZOOM x ZOOM, so that pixels stay visible."""
_LABEL = 20
_GAP = 6


def write_quicklook(plan: SRPlan, report: SRReport, generator: Generator, path: Path) -> None:
    """Draw the quicklook of a finished run into `path` (PNG), written whole or not at
    all. The window is read as the run read its strips (the same GDAL configuration)."""
    side = min(WINDOW_LR, plan.layout.width, plan.layout.height) // 4 * 4
    layout = TileLayout(plan.layout.width, plan.layout.height, side, 0)
    plan = _moved(plan, report.reference_offsets)
    reader = tile_reader(plan, plan.references, plan.options.http, layout)
    try:
        with rasterio.Env(**plan.options.http.gdal_config(), **BLOCKWISE_WARPING):
            strip, tile = _representative(reader, layout)
        inputs = model_inputs(strip, torch.device("cpu"), report.scene_blur.sensor)
    finally:
        reader.close()
    runner = TileModel(
        generator.model, torch.device("cpu"), with_relevance=True, blur=report.scene_blur.sigma
    )
    relevance = runner(inputs)[0, 3].clamp(0, 1).numpy()
    col, row = tile.lr_col_off, tile.lr_row_off
    bicubic = inputs[1][0].numpy()
    reference = inputs[2][0].numpy()
    # The output's bands that the model made (the visible ones), in the model's units.
    shown = [plan.scene_bands.index(band) for band in plan.model_bands]
    with rasterio.open(report.output) as output:
        sr_window = Window(col * SCALE, row * SCALE, side * SCALE, side * SCALE)
        sr = output.read([index + 1 for index in shown], window=sr_window).astype(np.float64)
    sr = plan.scaling.subset(shown).to_unit(sr)
    if sr.shape[0] == 1:  # a grey scene: shown as grey
        sr = np.repeat(sr, 3, axis=0)
    panels = _stretched([bicubic, sr, reference])
    image = _figure(
        [("bicubic", panels[0]), ("SR", panels[1]), ("reference", panels[2])],
        ("relevance", np.repeat((relevance * 255).round().astype(np.uint8)[None], 3, 0)),
        plan,
        (col, row),
        side,
    )
    with published_when_done(path) as temp:
        image.save(temp, format="PNG")


def _moved(plan: SRPlan, offsets: tuple[ReferenceOffset, ...]) -> SRPlan:
    """The plan's references moved as the run's co-registration moved them."""
    if not offsets:
        return plan
    moved = tuple(
        dataclasses.replace(spec, offset=(offset.rows, offset.cols))
        for spec, offset in zip(plan.references, offsets, strict=True)
    )
    return dataclasses.replace(plan, references=moved)


def _representative(reader, layout: TileLayout):
    """The strip and tile of the place with the most LR texture among those the
    reference covers (any place when none is covered), of co-registration's candidate
    places (`co_registration.candidate_tiles`: a 3 x 3 grid wholly inside the scene)."""
    best = None
    for tile in candidate_tiles(layout):
        strip = reader.read([tile])
        if strip.is_empty(0):
            continue
        covered = strip.ref is not None and float(strip.ref_valid.mean()) >= 0.9
        lr = strip.lr.astype(np.float64)
        texture = float(np.mean(np.diff(lr, axis=-1) ** 2) + np.mean(np.diff(lr, axis=-2) ** 2))
        score = (covered, texture)
        if best is None or score > best[0]:
            best = (score, strip, tile)
    if best is None:
        raise InputError("--quicklook: no window of the scene has valid pixels")
    return best[1], best[2]


def _stretched(images: list[np.ndarray]) -> list[np.ndarray]:
    """3 x H x W images in the model's units, to 8-bit with one shared stretch."""
    values = np.concatenate([image.ravel() for image in images])
    low, high = np.percentile(values[np.isfinite(values)], [2, 98])
    scale = 255 / max(high - low, 1e-6)
    return [
        (np.clip((np.nan_to_num(image) - low) * scale, 0, 255)).round().astype(np.uint8)
        for image in images
    ]


def _figure(images, relevance, plan: SRPlan, corner: tuple[int, int], side: int) -> Image.Image:
    panels = [*images, relevance]
    height = width = side * SCALE * ZOOM
    canvas = Image.new("RGB", (len(panels) * (width + _GAP) - _GAP, height + 2 * _LABEL), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (label, pixels) in enumerate(panels):
        left = index * (width + _GAP)
        panel = Image.fromarray(np.moveaxis(pixels, 0, -1)).resize(
            (width, height), Image.Resampling.NEAREST
        )
        canvas.paste(panel, (left, _LABEL))
        draw.text((left + 4, 4), label, fill="black")
    _scale_bar(draw, plan, width, height)
    col, row = corner
    x, y = plan.lr_grid.transform @ (col, row)
    draw.text(
        (4, height + _LABEL + 4),
        f"window: scene pixels {col}..{col + side} x {row}..{row + side}; "
        f"top-left ({x:.2f}, {y:.2f}) in {plan.lr_grid.crs}",
        fill="black",
    )
    return canvas


def _scale_bar(draw: ImageDraw.ImageDraw, plan: SRPlan, width: int, height: int) -> None:
    """A bar of a round length about a quarter of the panel, on the SR panel."""
    pixel = math.hypot(plan.sr_grid.transform.a, plan.sr_grid.transform.d)
    target = width / ZOOM * pixel / 4
    length = 10 ** math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * length <= target:
            length *= step
            break
    bar = round(length / pixel * ZOOM)
    left, bottom = width + _GAP + 8, _LABEL + height - 10
    draw.rectangle((left - 2, bottom - 14, left + bar + 2, bottom + 4), fill="white")
    draw.rectangle((left, bottom, left + bar, bottom + 2), fill="black")
    units = "m" if plan.sr_grid.crs.is_projected else "deg"
    draw.text((left, bottom - 13), f"{length:g} {units}", fill="black")
