"""A z/x/y tile pyramid level made from the CC0 NEON image, as a tile service serves it,
and the same pixels as one GeoTIFF (what a run with a local reference would get)."""

import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import reproject, transform_bounds

from rrsgan_geo.geo.tile_services import HALF_WORLD_M, TILE_PX
from tests.rasters import neon_path, write_raster


def tile_size_m(zoom: int) -> float:
    return 2 * HALF_WORLD_M / 2**zoom


def tile_transform(x: int, y: int, zoom: int) -> Affine:
    size = tile_size_m(zoom)
    return Affine(size / TILE_PX, 0, -HALF_WORLD_M + x * size, 0, -size / TILE_PX,
                  HALF_WORLD_M - y * size)  # fmt: skip


def write_pyramid(folder: Path, zoom: int, tms: bool = False) -> tuple[list[tuple], Path]:
    """PNG tiles z/x/y.png (y from the top; from the bottom with `tms`) under the NEON
    image's footprint, and their mosaic as a GeoTIFF in EPSG:3857.
    Returns ([(x, y from the top), ...], mosaic path)."""
    size = tile_size_m(zoom)
    with rasterio.open(neon_path()) as src:
        left, bottom, right, top = transform_bounds(src.crs, "EPSG:3857", *src.bounds)
        xs = range(int((left + HALF_WORLD_M) // size), int((right + HALF_WORLD_M) // size) + 1)
        ys = range(int((HALF_WORLD_M - top) // size), int((HALF_WORLD_M - bottom) // size) + 1)
        mosaic = np.zeros((3, len(ys) * TILE_PX, len(xs) * TILE_PX), np.uint8)
        for i, x in enumerate(xs):
            for j, y in enumerate(ys):
                tile = np.zeros((3, TILE_PX, TILE_PX), np.uint8)
                reproject(
                    rasterio.band(src, [1, 2, 3]),
                    tile,
                    dst_transform=tile_transform(x, y, zoom),
                    dst_crs="EPSG:3857",
                    resampling=Resampling.bilinear,
                )
                row = 2**zoom - 1 - y if tms else y
                path = folder / str(zoom) / str(x) / f"{row}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                with warnings.catch_warnings():  # a tile has no georeference: its URL says where
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    profile = {"driver": "PNG", "width": TILE_PX, "height": TILE_PX, "count": 3}
                    with rasterio.open(path, "w", dtype="uint8", **profile) as out:
                        out.write(tile)
                mosaic[:, j * TILE_PX : (j + 1) * TILE_PX, i * TILE_PX : (i + 1) * TILE_PX] = tile
    mosaic_path = write_raster(
        folder.parent / f"mosaic_z{zoom}.tif",
        mosaic,
        "EPSG:3857",
        tile_transform(xs[0], ys[0], zoom),
    )
    return [(x, y) for x in xs for y in ys], mosaic_path


def write_wmts_capabilities(folder: Path, url: str, zoom: int) -> Path:
    """A WMTS capabilities document for the pyramid served at `url`: one layer, one
    web-mercator tile matrix (`zoom`), a RESTful tile template."""
    pixel_m = tile_size_m(zoom) / TILE_PX
    count = 2**zoom
    document = f"""<?xml version="1.0" encoding="UTF-8"?>
<Capabilities xmlns="http://www.opengis.net/wmts/1.0" xmlns:ows="http://www.opengis.net/ows/1.1"
    version="1.0.0">
 <Contents>
  <Layer>
   <ows:Identifier>ortho</ows:Identifier>
   <Style isDefault="true"><ows:Identifier>default</ows:Identifier></Style>
   <Format>image/png</Format>
   <TileMatrixSetLink><TileMatrixSet>webmercator</TileMatrixSet></TileMatrixSetLink>
   <ResourceURL format="image/png" resourceType="tile"
       template="{url}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png"/>
  </Layer>
  <TileMatrixSet>
   <ows:Identifier>webmercator</ows:Identifier>
   <ows:SupportedCRS>urn:ogc:def:crs:EPSG::3857</ows:SupportedCRS>
   <TileMatrix>
    <ows:Identifier>{zoom}</ows:Identifier>
    <ScaleDenominator>{pixel_m / 0.00028!r}</ScaleDenominator>
    <TopLeftCorner>{-HALF_WORLD_M!r} {HALF_WORLD_M!r}</TopLeftCorner>
    <TileWidth>{TILE_PX}</TileWidth><TileHeight>{TILE_PX}</TileHeight>
    <MatrixWidth>{count}</MatrixWidth><MatrixHeight>{count}</MatrixHeight>
   </TileMatrix>
  </TileMatrixSet>
 </Contents>
</Capabilities>
"""
    path = folder / "WMTSCapabilities.xml"
    path.write_text(document)
    return path
