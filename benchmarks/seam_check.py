"""How much does tiling change the output? Tiled runs vs one whole-scene pass.

For each margin, super-resolves the scene with small tiles and as one tile (same
margin, so both see the same reflected borders) and prints the largest and mean
absolute difference. The smallest margin whose difference is negligible is the one
to store with the weights (`rrsgan-geo weights convert --margin`).

    python benchmarks/seam_check.py WEIGHTS SCENE REF [--tile 32] [--margins 8,16,24,32]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio

from rrsgan_geo import sr
from rrsgan_geo.host_memory import keep_freed_memory
from rrsgan_geo.sr.planning import SROptions


def run(
    generator: sr.Generator, scene: Path, ref: Path, out: Path, tile: int, margin: int
) -> np.ndarray:
    options = SROptions(tile=tile, margin=margin, device="cpu", overwrite=True)
    sr.run(sr.plan(scene, ref, out, options, generator), generator)
    with rasterio.open(out) as dataset:
        return dataset.read().astype(np.int16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path)
    parser.add_argument("scene", type=Path)
    parser.add_argument("ref", type=Path)
    parser.add_argument("--tile", type=int, default=32)
    parser.add_argument("--margins", default="8,16,24,32")
    args = parser.parse_args()
    keep_freed_memory()  # as the rrsgan-geo command does
    generator = sr.load_generator(args.weights, "cpu")
    with rasterio.open(args.scene) as dataset:
        whole_tile = -(-max(dataset.width, dataset.height) // 4) * 4
    print(f"{args.weights.name}: tiles of {args.tile} LR px vs one tile of {whole_tile}")
    print("| margin | max abs diff | mean abs diff | pixels differing |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for margin in (int(m) for m in args.margins.split(",")):
            tiled = run(generator, args.scene, args.ref, Path(folder) / "t.tif", args.tile, margin)
            whole = run(generator, args.scene, args.ref, Path(folder) / "w.tif", whole_tile, margin)
            diff = np.abs(tiled - whole)
            print(f"| {margin} | {diff.max()} | {diff.mean():.4f} | {(diff > 0).mean():.2%} |")


if __name__ == "__main__":
    main()
