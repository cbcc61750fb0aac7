"""Wald's protocol on a multispectral scene: every band, bicubic against `sr`.

The scene (uint8, any band count) is degraded 4x with the evaluation sensor
(`rrsgan_geo.training.wald`), super-resolved back by `rrsgan-geo sr` with no reference and its
default settings, and compared with the original. The table gives PSNR per band, SAM
and ERGAS for bicubic and for `sr`, and `sr`'s ERGAS as a share of bicubic's.

    python benchmarks/wald_multispectral.py SCENE.tif --rgb-bands 3,2,1 [--weights FILE]

The model card's multispectral table was made with the 7-band Landsat 7 scene of the
Great Salt Lake that the bundled example window (examples/data) is cut from.
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio

from rrsgan_geo.cli.main import main as rrsgan_geo
from rrsgan_geo.training.wald import bicubic_of, degrade_scene, spectral_scores


def run(scene: Path, rgb_bands: str, weights: Path | None, folder: Path) -> dict[str, dict]:
    lr_path, out_path = folder / "lr.tif", folder / "sr.tif"
    truth = degrade_scene(scene, lr_path)
    command = ["sr", str(lr_path), "-o", str(out_path), "--allow-missing-ref", "--quiet"]
    command += ["--rgb-bands", rgb_bands]
    if weights is not None:
        command += ["--weights", str(weights)]
    rrsgan_geo(command, standalone_mode=False)
    with rasterio.open(out_path) as out:
        output = out.read().astype(np.float32) / 255
        names = [d or f"band {i}" for i, d in enumerate(out.descriptions, start=1)]
    return {
        "bands": names,
        "bicubic": spectral_scores(bicubic_of(lr_path), truth),
        "sr": spectral_scores(output, truth),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scene", type=Path)
    parser.add_argument("--rgb-bands", required=True, help="e.g. 3,2,1")
    parser.add_argument("--weights", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        scores = run(args.scene, args.rgb_bands, args.weights, Path(folder))
    names = scores["bands"]
    print("| method | " + " | ".join(names) + " | SAM (deg) | ERGAS |")
    print("| --- |" + " --- |" * (len(names) + 2))
    for method in ("bicubic", "sr"):
        row = scores[method]
        psnrs = " | ".join(f"{value:.2f}" for value in row["psnr"])
        print(f"| {method} | {psnrs} | {row['sam_degrees']:.3f} | {row['ergas']:.3f} |")
    ratio = scores["sr"]["ergas"] / scores["bicubic"]["ergas"]
    print(f"\nsr's ERGAS / bicubic's: {ratio:.3f}")


if __name__ == "__main__":
    main()
