"""A STAC Item beside each output (`sr --stac`), and a Catalog over a batch's folder.

Catalogues (STAC) are where geospatial users keep imagery; an output with an Item
beside it can be ingested as it is. The Item says where the output lies (geometry and
bbox in WGS 84 from the output's grid), how it is gridded (`proj`: the CRS as an EPSG
code or WKT2, the transform, the shape), what its values are (`raster`: data type,
nodata, scale, offset, units per band; `eo`: the bands' names and, where the scene's
colour interpretation says so, their common names), how it was made (`processing`:
software, version and level; the weights' name and sha256, the device, the precision
and the scene's blur as `rrsgan:` fields), when the scene was taken, and what it was
derived from (the scene and each reference: URLs without their query strings, local
files by name only). Assets: the image (role `data`), the relevance and consistency
maps (role `metadata`) and the quicklook (role `overview`) where they were written,
each by a path relative to the Item, so the folder can move.

The acquisition time is the plan's (`item_facts`), else `--stac-datetime`; a scene
that says nothing, with none given, is refused before the run.
"""

from datetime import datetime
from pathlib import Path

import pystac
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterBand, RasterExtension
from rasterio.enums import ColorInterp

from rrsgan_geo import __version__
from rrsgan_geo.files import write_json
from rrsgan_geo.geo.locations import display_name
from rrsgan_geo.geo.references import COMMON_CRS
from rrsgan_geo.sr.item_facts import item_path, parse_stac_datetime

PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
CATALOG_NAME = "catalog.json"
_COMMON_NAMES = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}


def stac_item(plan, report) -> pystac.Item:
    """The Item of one `sr` run (`plan`: `planning.SRPlan`, `report`:
    `pipeline.SRReport`)."""
    grid = plan.sr_grid
    footprint = grid.footprint(COMMON_CRS)
    when, start, end = _times(plan)
    output = Path(plan.output_path)
    item = pystac.Item(
        id=output.stem,
        geometry=footprint.__geo_interface__,
        bbox=list(footprint.bounds),
        datetime=when,
        start_datetime=start,
        end_datetime=end,
        properties={},
    )
    item.set_self_href(str(item_path(output).resolve()))
    _projection(item, grid)
    item.stac_extensions.append(PROCESSING_EXTENSION)
    item.properties.update(
        {
            "processing:software": {"rrsgan-geo": __version__},
            "processing:level": "super-resolved x4",
            "processing:lineage": "4x reference-based super-resolution (RRSGAN) of the "
            "scene it is derived from",
            "rrsgan:weights": report.weights["file"] if report.weights else None,
            "rrsgan:weights_sha256": report.weights["sha256"] if report.weights else None,
            "rrsgan:device": report.device,
            "rrsgan:precision": report.precision,
            "rrsgan:scene_blur": report.scene_blur.record() if report.scene_blur else None,
            "rrsgan:reference_coverage": round(report.pixel_coverage, 4),
        }
    )
    for source in (plan.scene_path, *plan.ref_paths):
        item.add_link(pystac.Link("derived_from", display_name(source)))
    image = pystac.Asset(
        href=f"./{output.name}",
        media_type=pystac.MediaType.COG if plan.options.cog else pystac.MediaType.GEOTIFF,
        roles=["data"],
        title="super-resolved image",
    )
    item.add_asset("image", image)
    _describe_bands(image, plan)
    for key, path, title in (
        ("relevance", plan.options.relevance_map, "relevance map (the x4 attention's gate)"),
        ("consistency", plan.options.consistency_map, "|downsample4x(output) - scene|"),
    ):
        if path is not None:
            item.add_asset(key, _sibling_asset(output, Path(path), title, "metadata"))
    if plan.options.quicklook is not None:
        title = "quicklook: bicubic | SR | reference | relevance"
        quicklook = _sibling_asset(output, Path(plan.options.quicklook), title, "overview")
        quicklook.media_type = pystac.MediaType.PNG
        item.add_asset("quicklook", quicklook)
    return item


def _times(plan) -> tuple[datetime | None, datetime | None, datetime | None]:
    """(datetime, start, end): --stac-datetime, else the scene's own time, which
    planning made sure there is (it refuses a --stac run without either)."""
    if plan.options.stac_datetime:
        return parse_stac_datetime(plan.options.stac_datetime)
    return plan.acquired, None, None


def _projection(item: pystac.Item, grid) -> None:
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = grid.crs.to_epsg()
    if epsg is not None:
        projection.epsg = epsg
    else:
        projection.wkt2 = grid.crs.to_wkt()
    projection.transform = list(grid.transform)[:6]
    projection.shape = [grid.height, grid.width]


def _describe_bands(asset: pystac.Asset, plan) -> None:
    data_type = str(plan.dtype)
    raster_bands, eo_bands = [], []
    for description, meaning, colour in zip(
        plan.descriptions, plan.meanings, plan.colours, strict=True
    ):
        raster_bands.append(
            RasterBand.create(
                nodata=plan.nodata,
                data_type=data_type,
                scale=meaning.scale,
                offset=meaning.offset,
                unit=meaning.units or None,
            )
        )
        eo_bands.append(Band.create(name=description, common_name=_COMMON_NAMES.get(colour)))
    RasterExtension.ext(asset, add_if_missing=True).bands = raster_bands
    EOExtension.ext(asset, add_if_missing=True).bands = eo_bands


def _sibling_asset(output: Path, path: Path, title: str, role: str) -> pystac.Asset:
    """An asset by its path relative to the Item when it lies beside it, else by name."""
    href = f"./{path.name}" if path.resolve().parent == output.resolve().parent else path.name
    return pystac.Asset(href=href, media_type=pystac.MediaType.GEOTIFF, roles=[role], title=title)


def write_item(item: pystac.Item, path: Path) -> None:
    """The Item as JSON at `path`, written whole or not at all, hrefs kept relative."""
    write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))


def write_catalog(folder: Path, items: list[Path]) -> Path:
    """A Catalog in `folder` linking the Items given (paths inside it), relative hrefs."""
    catalog = pystac.Catalog(
        id=folder.name or "rrsgan-geo",
        description=f"rrsgan-geo {__version__}: 4x super-resolved scenes",
    )
    for path in sorted(items):
        catalog.add_link(pystac.Link("item", f"./{path.relative_to(folder).as_posix()}"))
    target = folder / CATALOG_NAME
    write_json(target, catalog.to_dict(include_self_link=False, transform_hrefs=False))
    return target
