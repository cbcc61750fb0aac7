"""Make the README's picture from the bundled example: LR | bicubic | SR | reference.

Runs `rrsgan-geo sr` on the example scene with its reference (the shipped weights,
the command's defaults), puts the reference on the output's grid as `sr` does, and
writes one PNG of four panels of the same place, each shown at 2x with nearest
neighbours so that pixels stay pixels.

    python examples/make_readme_figure.py [OUT.png]     # default: docs/images/example.png
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import torch
from PIL import Image, ImageDraw
from rasterio.warp import Resampling, reproject

from rrsgan_geo.cli.main import main as rrsgan_geo
from rrsgan_geo.model.degradation import upsample_4x

HERE = Path(__file__).resolve().parent
SCENE = HERE / "data" / "sjer_scene_0.4m_utm11n.tif"
REFERENCE = HERE / "data" / "sjer_reference_0.1m_epsg3857.tif"
DEFAULT_OUT = HERE.parent / "docs" / "images" / "example.png"
WINDOW = (slice(120, 280), slice(120, 280))
"""Output pixels shown (rows, columns): 16 x 16 m in the middle of the scene."""
ZOOM = 2
LABEL_HEIGHT = 22


def panels(sr_path: Path) -> list[tuple[str, np.ndarray]]:
    """(label, H x W x 3 uint8) for each panel, all on the output's grid and window."""
    with rasterio.open(SCENE) as scene:
        lr = scene.read()
    with rasterio.open(sr_path) as output:
        sr = output.read()
        reference = np.zeros_like(sr)
        with rasterio.open(REFERENCE) as source:
            for band in range(3):
                reproject(
                    rasterio.band(source, band + 1),
                    reference[band],
                    dst_transform=output.transform,
                    dst_crs=output.crs,
                    resampling=Resampling.bilinear,
                )
    grid = torch.from_numpy(lr).float()[None] / 255
    bicubic = (upsample_4x(grid)[0].numpy() * 255).round().astype(np.uint8)
    nearest = lr.repeat(4, axis=1).repeat(4, axis=2)
    rows, cols = WINDOW
    return [
        (label, image[:, rows, cols].transpose(1, 2, 0))
        for label, image in (
            ("LR (0.4 m)", nearest),
            ("bicubic x4", bicubic),
            ("rrsgan-geo sr x4", sr),
            ("reference", reference),
        )
    ]


def figure(images: list[tuple[str, np.ndarray]]) -> Image.Image:
    height, width = (side * ZOOM for side in images[0][1].shape[:2])
    gap = 6
    canvas = Image.new("RGB", (len(images) * (width + gap) - gap, height + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (label, pixels) in enumerate(images):
        left = index * (width + gap)
        panel = Image.fromarray(pixels).resize((width, height), Image.Resampling.NEAREST)
        canvas.paste(panel, (left, LABEL_HEIGHT))
        draw.text((left + 4, 5), label, fill="black")
    return canvas


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        sr_path = Path(folder) / "sjer_x4.tif"
        try:
            rrsgan_geo(["sr", str(SCENE), "--ref", str(REFERENCE), "-o", str(sr_path), "-q"])
        except SystemExit as exit_:
            if exit_.code:
                raise
        image = figure(panels(sr_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
