"""Make the bundled example data from the CC0 and public-domain imagery in ../shared/data.

scene: the 0.1 m NEON camera mosaic averaged 4x to 0.4 m (UTM 11N), a stand-in for a
       low-resolution scene.
reference: the same mosaic reprojected to Web Mercator (EPSG:3857) at ~0.1 m, shifted
       0.5 m east and with a gamma/colour change, a stand-in for a co-located reference
       from another source. It is synthetic (the same pixels as the scene's truth),
       which is what makes the example small and redistributable, not a real second date.

landsat: a 192 x 192 window of a 7-band Landsat 7 ETM+ scene of the Great Salt Lake
       (USGS, public domain), its pixels and georeference exactly as shipped: the
       multispectral example and test scene.

    python examples/make_example_data.py
"""

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1] / "shared/data/neon/2018_SJER_3_252000_4107000_image_477.tif"
LANDSAT = HERE.parents[1] / "shared/data/landsat/landsat.tif"
LANDSAT_WINDOW = Window(1024, 704, 192, 192)  # a shore: about 30 % water, 70 % land
PROFILE = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256}
PROFILE.update(compress="deflate", predictor=2)


def main() -> None:
    with rasterio.open(SOURCE) as src:
        hr = src.read()
        scene = src.read(
            out_shape=(3, src.height // 4, src.width // 4), resampling=Resampling.average
        )
        profile = dict(PROFILE, count=3, dtype="uint8", crs=src.crs, nodata=src.nodata)
        profile.update(
            width=scene.shape[2], height=scene.shape[1], transform=src.transform @ Affine.scale(4)
        )
        with rasterio.open(HERE / "data/sjer_scene_0.4m_utm11n.tif", "w", **profile) as out:
            out.write(scene)
            out.descriptions = ("red", "green", "blue")
        mercator, width, height = calculate_default_transform(
            src.crs, "EPSG:3857", src.width, src.height, *src.bounds
        )
        warped = np.zeros((3, height, width), dtype=np.uint8)
        reproject(
            hr,
            warped,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=mercator,
            dst_crs="EPSG:3857",
            resampling=Resampling.bilinear,
            src_nodata=src.nodata,
            dst_nodata=0,
        )
    # Another "source": a gamma and colour balance change, and a 0.5 m eastward shift
    # (Mercator metres are 1/cos(latitude) ground metres; SJER lies at 37.1 N).
    recoloured = 255 * (warped / 255.0) ** np.array([0.9, 1.0, 1.1])[:, None, None]
    shift = 0.5 / np.cos(np.radians(37.1))
    profile = dict(PROFILE, count=3, dtype="uint8", crs="EPSG:3857", nodata=0)
    profile.update(width=width, height=height, transform=Affine.translation(shift, 0) @ mercator)
    with rasterio.open(HERE / "data/sjer_reference_0.1m_epsg3857.tif", "w", **profile) as out:
        out.write(np.clip(np.rint(recoloured), 1, 255).astype(np.uint8) * (warped.max(0) > 0))
    landsat_window()


def landsat_window() -> None:
    with rasterio.open(LANDSAT) as src:
        profile = dict(PROFILE, count=src.count, dtype=src.dtypes[0], crs=src.crs)
        profile.update(
            width=LANDSAT_WINDOW.width,
            height=LANDSAT_WINDOW.height,
            transform=src.window_transform(LANDSAT_WINDOW),
        )
        with rasterio.open(HERE / "data/landsat7_gsl_30m_7band.tif", "w", **profile) as out:
            out.write(src.read(window=LANDSAT_WINDOW))
            out.descriptions = src.descriptions


if __name__ == "__main__":
    main()
