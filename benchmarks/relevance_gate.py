"""Does the relevance gate tell a matching reference from a useless one?

The bundled example's scene is super-resolved twice with `--relevance-map`: with its
own reference, and with that reference's west half replaced by another place's texture
(the OSBS mosaic, same pixel size). The table gives the mean relevance (the x4 stage's
gate) over each half of the output, leaving out a band at the seam; the issue's bar is
that the gate over the matching half exceeds the gate over the replaced half by 0.04.

    python benchmarks/relevance_gate.py [--weights FILE]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio

from rrsgan_geo import sr
from rrsgan_geo.sr.planning import SROptions

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "data"
SCENE = EXAMPLES / "sjer_scene_0.4m_utm11n.tif"
REFERENCE = EXAMPLES / "sjer_reference_0.1m_epsg3857.tif"
ELSEWHERE = EXAMPLES / "osbs_029_0.1m_utm17n.tif"
SEAM = 0.1
"""Share of the output's width on each side of the middle left out of both halves."""


def half_replaced(path: Path) -> Path:
    """The reference with its west half's pixels taken from another place."""
    with rasterio.open(REFERENCE) as reference, rasterio.open(ELSEWHERE) as other:
        pixels, profile = reference.read(), reference.profile
        foreign = other.read()
    half = pixels.shape[2] // 2
    rows = min(pixels.shape[1], foreign.shape[1])
    pixels[:, :rows, :half] = foreign[:, :rows, :half]
    with rasterio.open(path, "w", **profile) as out:
        out.write(pixels)
    return path


def half_means(relevance: np.ndarray) -> tuple[float, float]:
    """Mean relevance over the west and the east half, the seam band left out."""
    width = relevance.shape[1]
    west = relevance[:, : int(width * (0.5 - SEAM))]
    east = relevance[:, int(width * (0.5 + SEAM)) :]
    return float(west.mean()), float(east.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()
    generator = sr.load_generator(args.weights, "cpu")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for label, reference in (
            ("own reference", REFERENCE),
            ("west half another place", half_replaced(folder / "half.tif")),
        ):
            relevance_path = folder / f"{len(rows)}_relevance.tif"
            options = SROptions(device="cpu", overwrite=True, relevance_map=relevance_path)
            sr.run(sr.plan(SCENE, reference, folder / "out.tif", options, generator), generator)
            with rasterio.open(relevance_path) as dataset:
                rows.append((label, *half_means(dataset.read(1).astype(np.float64))))
    print(f"weights {generator.name}")
    print(f"{'reference':<26} {'west gate':>10} {'east gate':>10}")
    for label, west, east in rows:
        print(f"{label:<26} {west:>10.4f} {east:>10.4f}")
    own_west, replaced_west = rows[0][1], rows[1][1]
    print(f"matching minus replaced (west half): {own_west - replaced_west:+.4f}")


if __name__ == "__main__":
    main()
