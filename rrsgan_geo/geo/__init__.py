"""Where rasters live and how they are read, gridded, scaled and indexed: local files,
URLs and buckets (`locations`), any GDAL raster checked in one line (`rasters`), LR and
SR grids (`grids`), value scaling (`scaling`), reference footprints (`references`),
XYZ/TMS and WMTS services (`tile_services`) and STAC documents (`stac`)."""

from rrsgan_geo.lazy_exports import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "HttpOptions": "locations",
        "display_name": "locations",
        "open_raster": "rasters",
        "georeferenced_grid": "rasters",
        "RasterGrid": "grids",
        "ValueScaling": "scaling",
        "choose_scaling": "scaling",
        "ReferenceIndex": "references",
        "expand_rasters": "references",
        "open_tile_service": "tile_services",
        "is_tile_template": "tile_services",
        "is_stac": "stac",
    },
)
__all__ = __dir__()
