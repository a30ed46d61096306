"""``load_stac`` for the local executor: STAC Items, Collections and Catalogs as data cubes.

openeo-processes-dask's ``load_stac`` validates every URL with stac-validator, which fetches
JSON schemas from the internet, so it fails offline. This implementation reads STAC with pystac
(no validation, no schema fetch) and loads pixels lazily:

- GeoTIFF / COG assets (one band per asset, or multi-band with ``eo:bands`` / STAC 1.1
  ``bands``) through odc-stac, which mosaics items of one timestamp. Items on other grids are
  resampled (nearest) onto the grid of the most common CRS and resolution, in the exact pixel
  phase of the items on it; bands of other resolutions onto the finest band's grid. Missing
  ``proj:*`` / ``raster:bands`` metadata is read from the file headers first.
- zarr and netCDF assets through xarray (:func:`openeo_deepfeatures.io.open_cube`); they must
  share one grid.

The result is a lazy (dask) ``(t, bands, y, x)`` DataArray with the CRS of the data.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import numpy as np
import pandas as pd
import pystac
import xarray as xr

from ..errors import (
    FeatureUnsupported,
    NoDataAvailable,
    OpenEOError,
    PermissionDenied,
    ProcessParameterInvalid,
)
from ..policy import ExecutionPolicy, current_policy
from ..sentinel2 import canonical_cube, normalize_band_label
from .extents import bbox_in_crs, temporal_bounds, utc
from .specs import upstream_spec

__all__ = ["SPEC", "load_stac"]

_ID = "load_stac"
_TIMEOUT_S = 60
_CHUNKS = {"x": 2048, "y": 2048}
_RASTER_SUFFIXES = (".tif", ".tiff", ".gtiff", ".jp2", ".img", ".vrt")
_XARRAY_SUFFIXES = (".zarr", ".nc", ".nc4", ".netcdf", ".cdf", ".h5")
_SKIP_ROLES = {"thumbnail", "overview", "metadata"}
_GEOJSON_AREAS = {"Polygon", "MultiPolygon", "Feature", "FeatureCollection"}
_GEOJSON_SCHEMA = {
    "title": "GeoJSON",
    "description": (
        "Limits the data cube to the bounding box of the given geometries. For raster data, all "
        "pixels inside the bounding box that do not intersect with any of the polygons will be "
        "set to the no-data value of the data cube.\n\nThe GeoJSON type `GeometryCollection` "
        "is not supported. Empty geometries are ignored."
    ),
    "type": "object",
    "subtype": "geojson",
}


def load_stac(
    url: str,
    spatial_extent: Mapping[str, Any] | None = None,
    temporal_extent: Sequence[Any] | None = None,
    bands: Sequence[str] | None = None,
    properties: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Load a STAC Item, Collection, Catalog or ItemCollection as a lazy ``(t, bands, y, x)`` cube.

    ``url``: a local path, a ``file://`` URL, or an ``http(s)://`` URL. Online, a STAC API
    Collection (its root conforms to STAC API item-search) is searched with pystac-client
    (``spatial_extent`` or ``temporal_extent`` required); any other URL is read as a static
    catalog. Offline, nothing but the local files is read: no schema is fetched.

    ``spatial_extent``: an openEO bounding box (``crs`` defaults to 4326) or GeoJSON polygons
    (EPSG:4326; pixels outside them are set to nodata). A pixel is loaded when its centre lies
    in the extent. ``temporal_extent``: ``[start, end)``, either end may be ``null``.
    ``bands``: band names (``eo:bands``/``bands`` names, else asset keys; Sentinel-2 labels are
    normalised, ``B4`` -> ``B04``) or common names, in the order given. ``properties``:
    ``{property: condition}``; an item is loaded when every condition (a process graph with
    parameter ``value``, evaluated by this executor) returns true for its property value.
    Items lacking the property are left out.

    Items of one timestamp are mosaicked (first valid pixel wins). Scale and offset are not
    applied (openEO spec). Raises :class:`ProcessParameterInvalid` for unreadable or non-STAC
    URLs and unknown bands, :class:`NoDataAvailable` when nothing lies in the extents.
    """
    window = _time_window(temporal_extent)
    area = _area(spatial_extent)
    items = _select_items(_items(url, area, window), area, window, properties, url)
    kinds = {_item_kind(item, url) for item in items}
    if kinds == {"raster"}:
        cube = _load_rasters(items, bands, url)
    elif kinds == {"xarray"}:
        cube = _load_arrays(items, bands, url)
    else:
        raise FeatureUnsupported(
            reason=(
                f"load_stac: the items at {url!r} mix zarr/netCDF and GeoTIFF assets; load each "
                "kind with its own load_stac and combine them with merge_cubes."
            )
        )
    return _crop(cube, area, window, url)


# --- reading STAC --------------------------------------------------------------------------


def _invalid(parameter: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=_ID, parameter=parameter, reason=reason)


def _items(url: Any, area: _Area | None, window: _Window | None) -> list[pystac.Item]:
    text = str(url)
    if text.startswith(("http://", "https://")):
        return _remote_items(text, area, window)
    if "://" in text and not text.startswith("file://"):
        raise _invalid(
            "url", f"{text!r}: use an http(s):// URL, a file:// URL or a local path to STAC JSON."
        )
    policy = current_policy()
    path = policy.check_read(text, what=_ID)
    if path.is_dir():
        found = [path / n for n in ("collection.json", "catalog.json") if (path / n).is_file()]
        if not found:
            raise _invalid(
                "url", f"the folder {str(path)!r} holds no collection.json or catalog.json."
            )
        path = policy.check_read(found[0], what=_ID)
    if not path.is_file():
        raise _invalid("url", f"{text!r} does not exist.")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid("url", f"{str(path)!r} is not STAC JSON ({exc}).") from exc
    return _items_of(_stac_object(data, str(path), _stac_io(policy), text), text)


def _stac_io(policy: ExecutionPolicy) -> pystac.StacIO:
    """pystac I/O reading local hrefs through :meth:`ExecutionPolicy.check_read` and URLs
    through :meth:`ExecutionPolicy.open_url` (every redirect checked): the links of a catalog
    are followed only where the policy allows."""

    class PolicyStacIO(pystac.stac_io.DefaultStacIO):
        def read_text_from_href(self, href: str) -> str:
            if href.startswith(("http://", "https://")):
                return policy.read_url(href, timeout=_TIMEOUT_S, what=_ID).decode("utf-8")
            if "://" in href and not href.startswith("file://"):
                policy.check_url(href, what=_ID)
                return super().read_text_from_href(href)
            return policy.check_read(href, what=_ID).read_text("utf-8")

        def write_text_to_href(self, href: str, txt: str) -> None:
            raise PermissionDenied(reason=f"{_ID} does not write STAC ({href!r}).")

    return PolicyStacIO()


def _api_io(policy: ExecutionPolicy) -> Any:
    """pystac-client I/O for STAC API requests (search, pages): each URL is checked before it
    is requested, and the target of every redirect before it is followed."""
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO

    class PolicyApiIO(StacApiIO):
        def __init__(self) -> None:
            super().__init__(timeout=_TIMEOUT_S, max_retries=2)
            self.denied: PermissionDenied | None = None
            self.session.hooks["response"].append(self._check_redirect)

        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            if isinstance(source, pystac.Link) or "://" in str(source):
                return super().read_text(source, *args, **kwargs)
            return policy.check_read(str(source), what=_ID).read_text("utf-8")

        def request(self, href: str, *args: Any, **kwargs: Any) -> str:
            policy.check_url(href, what=_ID)
            self.denied = None
            try:
                return super().request(href, *args, **kwargs)
            except APIError:
                if self.denied is not None:  # raised by the redirect hook, wrapped upstream
                    raise self.denied from None
                raise

        def _check_redirect(self, response: Any, *args: Any, **kwargs: Any) -> Any:
            if response.is_redirect:
                target = urljoin(response.url, response.headers["location"])
                try:
                    policy.check_url(target, what=_ID)
                except PermissionDenied as exc:
                    self.denied = exc
                    raise
            return response

    return PolicyApiIO()


def _stac_object(data: Any, href: str, stac_io: Any, url: str) -> Any:
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        try:
            collection = pystac.ItemCollection.from_dict(data, preserve_dict=False)
        except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError) as exc:
            raise _invalid("url", f"{url!r} is not a valid STAC ItemCollection: {exc}") from exc
        for item in collection:  # relative asset hrefs are relative to the file
            for asset in item.assets.values():
                asset.href = pystac.utils.make_absolute_href(asset.href, href)
        return collection
    if not isinstance(data, dict) or data.get("type") not in ("Feature", "Catalog", "Collection"):
        kind = data.get("type") if isinstance(data, dict) else type(data).__name__
        raise _invalid(
            "url",
            f"{url!r} is not a STAC Item, Collection, Catalog or ItemCollection (type {kind!r}).",
        )
    try:
        return pystac.read_dict(data, href=href, stac_io=stac_io)
    except (pystac.STACError, pystac.STACTypeError, KeyError, TypeError, ValueError) as exc:
        raise _invalid("url", f"{url!r} is not valid STAC: {exc}") from exc


def _items_of(obj: Any, url: str) -> list[pystac.Item]:
    if isinstance(obj, pystac.Item):
        return [obj]
    if isinstance(obj, pystac.ItemCollection):
        return list(obj)
    try:
        return list(obj.get_items(recursive=True))
    except (OSError, json.JSONDecodeError, pystac.STACError, pystac.STACTypeError) as exc:
        raise _invalid("url", f"cannot read the items linked from {url!r}: {exc}") from exc


def _remote_items(url: str, area: _Area | None, window: _Window | None) -> list[pystac.Item]:
    from pystac_client.exceptions import APIError

    stac_io = _stac_io(current_policy())
    try:
        data = json.loads(stac_io.read_text(url))
    except (APIError, OSError, ValueError) as exc:
        raise _invalid("url", f"cannot read STAC from {url!r}: {exc}") from exc
    obj = _stac_object(data, url, stac_io, url)  # static links resolve through the policy
    if isinstance(obj, pystac.Collection):
        found = _api_search(obj, stac_io, area, window, url)
        if found is not None:
            return found
    return _items_of(obj, url)


def _api_search(
    collection: pystac.Collection,
    stac_io: Any,
    area: _Area | None,
    window: _Window | None,
    url: str,
) -> list[pystac.Item] | None:
    """Items of a STAC API collection by item search; ``None`` for a static collection."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    root = collection.get_single_link("root")
    if root is None:
        return None
    root_href = root.get_absolute_href() or root.href
    try:
        conforms = stac_io.read_json(root_href).get("conformsTo", [])
        if not any(str(c).endswith("/item-search") for c in conforms):
            return None
        if area is None and window is None:
            raise _invalid(
                "spatial_extent",
                f"{url!r} is a STAC API collection: give a spatial_extent or a temporal_extent "
                "rather than loading the whole collection.",
            )
        start, end = window or (None, None)
        api_io = _api_io(current_policy())
        search = Client.open(root_href, timeout=_TIMEOUT_S, stac_io=api_io).search(
            collections=[collection.id],
            bbox=bbox_in_crs(area.bbox, 4326) if area is not None else None,
            datetime=[_iso(start), _iso(end)] if window is not None else None,
        )
        return list(search.items())
    except (APIError, OSError, ValueError) as exc:
        raise _invalid("url", f"STAC API search at {root_href!r} failed: {exc}") from exc


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- selecting items -----------------------------------------------------------------------

_Window = tuple[pd.Timestamp | None, pd.Timestamp | None]


@dataclass(frozen=True)
class _Area:
    bbox: Mapping[str, Any]  # openEO bounding box, with crs
    geometries: tuple[Mapping[str, Any], ...] = ()  # GeoJSON polygons (EPSG:4326) to mask by


def _time_window(extent: Sequence[Any] | None) -> _Window | None:
    if extent is None:
        return None
    if isinstance(extent, (str, bytes)) or len(extent) != 2:
        raise _invalid("temporal_extent", f"{extent!r}: give [start, end].")
    if extent[0] is None and extent[1] is None:
        raise _invalid("temporal_extent", "start and end cannot both be null.")
    return temporal_bounds(extent, "load_stac")


def _area(extent: Any) -> _Area | None:
    if extent is None:
        return None
    if not isinstance(extent, Mapping):
        raise FeatureUnsupported(
            reason=f"load_stac: spatial_extent of type {type(extent).__name__}; give a bounding box or GeoJSON polygons."
        )
    if {"west", "south", "east", "north"} <= set(extent):
        return _Area({**extent, "crs": extent.get("crs") or 4326})
    kind = extent.get("type")
    if kind not in _GEOJSON_AREAS:
        raise _invalid(
            "spatial_extent",
            f"expected a bounding box (west, south, east, north) or GeoJSON Polygon, MultiPolygon, "
            f"Feature or FeatureCollection, got type {kind!r}.",
        )
    from shapely.geometry import shape

    features = extent["features"] if kind == "FeatureCollection" else [extent]
    geoms = [f.get("geometry") if f.get("type") == "Feature" else f for f in features]
    geoms = [g for g in geoms if g]
    if not geoms or any(g.get("type") not in ("Polygon", "MultiPolygon") for g in geoms):
        raise _invalid(
            "spatial_extent", "the GeoJSON must hold Polygon or MultiPolygon geometries."
        )
    bounds = np.array([shape(g).bounds for g in geoms])
    west, south = bounds[:, :2].min(axis=0)
    east, north = bounds[:, 2:].max(axis=0)
    box = {"west": west, "south": south, "east": east, "north": north, "crs": 4326}
    return _Area(box, tuple(geoms))


def _item_times(item: pystac.Item) -> tuple[pd.Timestamp, pd.Timestamp]:
    props = item.properties
    start = props.get("start_datetime") or props.get("datetime")
    end = props.get("end_datetime") or props.get("datetime")
    return utc(start, "load_stac", "url"), utc(end, "load_stac", "url")


def _select_items(
    items: Iterable[pystac.Item],
    area: _Area | None,
    window: _Window | None,
    properties: Mapping[str, Any] | None,
    url: Any,
) -> list[pystac.Item]:
    items = list(items)
    if not items:
        raise NoDataAvailable(reason=f"{str(url)!r} holds no STAC items.")
    conditions = {k: _condition(k, v) for k, v in (properties or {}).items()}
    lonlat = bbox_in_crs(area.bbox, 4326) if area is not None else None
    kept = []
    for item in items:
        if window is not None:
            first, last = _item_times(item)
            start, end = window
            if (start is not None and last < start) or (end is not None and first >= end):
                continue
        if lonlat is not None and item.bbox and len(item.bbox) in (4, 6):
            b = item.bbox  # [w, s, e, n] or [w, s, zmin, e, n, zmax]
            w, s, e, n = (b[0], b[1], b[2], b[3]) if len(b) == 4 else (b[0], b[1], b[3], b[4])
            if w > lonlat[2] or e < lonlat[0] or s > lonlat[3] or n < lonlat[1]:
                continue
        if all(
            key in item.properties and check(item.properties[key])
            for key, check in conditions.items()
        ):
            kept.append(item)
    if not kept:
        raise NoDataAvailable(
            reason=f"none of the {len(items)} STAC items at {str(url)!r} matches the extents and properties."
        )
    return kept


def _condition(key: str, condition: Any) -> Callable[[Any], bool]:
    """A ``properties`` condition as ``value -> bool``.

    The executor hands each condition's process graph over as a callback with the openEO
    calling convention (its parameter ``value`` passed as ``named_parameters``)."""
    if not callable(condition):
        raise _invalid(
            "properties",
            f"the condition for {key!r} must be a process graph run by the executor (run_process_graph), "
            f"got {condition!r}.",
        )
    return lambda value: _is_true(condition(named_parameters={"value": value}))


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, np.bool_) and bool(value))


# --- assets and bands ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Band:
    label: str  # the label in the cube
    key: str  # the name the reader knows it by
    aliases: tuple[str, ...] = ()  # other names a user may ask for (asset key, common name)


def _asset_kind(asset: pystac.Asset) -> str | None:
    roles = set(asset.roles or [])
    if roles & _SKIP_ROLES and "data" not in roles:
        return None
    media = (asset.media_type or "").lower()
    path = urlparse(asset.href).path.lower().rstrip("/")
    if "zarr" in media or "netcdf" in media or path.endswith(_XARRAY_SUFFIXES):
        return "xarray"
    if media.startswith("image/") or path.endswith(_RASTER_SUFFIXES):
        return "raster"
    return None


def _item_kind(item: pystac.Item, url: Any) -> str:
    kinds = {_asset_kind(a) for a in item.assets.values()} - {None}
    if not kinds:
        raise _invalid(
            "url",
            f"item '{item.id}' at {str(url)!r} has no GeoTIFF/COG, zarr or netCDF data assets "
            f"(assets: {sorted(item.assets)}).",
        )
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _asset_path(item: pystac.Item, key: str, url: Any) -> str:
    """The asset's absolute href, checked by the execution policy; a local path for local
    files, which must exist.

    (A remote asset's URL is checked here; GDAL then reads it itself, following redirects
    without asking the policy.)
    """
    asset = item.assets[key]
    href = asset.get_absolute_href() or asset.href
    what = f"{_ID} (asset '{key}' of item '{item.id}')"
    if "://" in href and not href.startswith("file://"):
        current_policy().check_url(href, what=what)
        return href
    href = str(current_policy().check_read(href, what=what))
    if not Path(href).exists():
        raise _invalid(
            "url", f"asset '{key}' of item '{item.id}' at {str(url)!r}: {href!r} does not exist."
        )
    return href


def _choose(catalogue: list[_Band], requested: Sequence[str] | None, url: Any) -> list[_Band]:
    if requested is None:
        return catalogue
    if isinstance(requested, str):
        requested = [requested]
    by_label = {b.label: b for b in catalogue}
    chosen: list[_Band] = []
    missing = []
    for name in requested:
        label = normalize_band_label(name)
        matches = (
            [by_label[label]] if label in by_label else [b for b in catalogue if name in b.aliases]
        )
        if not matches:
            missing.append(name)
        chosen += [m for m in matches if m not in chosen]
    if missing:
        raise _invalid(
            "bands",
            f"{missing} not in the STAC data at {str(url)!r} (it has {[b.label for b in catalogue]}).",
        )
    return chosen


def _unique_labels(bands: list[_Band]) -> list[_Band]:
    """Where preferred labels collide, label those bands by their reader names."""
    counts: dict[str, int] = {}
    for band in bands:
        counts[band.label] = counts.get(band.label, 0) + 1
    return [
        _Band(str(normalize_band_label(b.key)), b.key, b.aliases) if counts[b.label] > 1 else b
        for b in bands
    ]


# --- GeoTIFF / COG through odc-stac --------------------------------------------------------


def _load_rasters(items: list[pystac.Item], bands: Sequence[str] | None, url: Any) -> xr.DataArray:
    import odc.stac

    items = [_prepared(item, url) for item in items]
    chosen = _choose(_raster_catalogue(items), bands, url)
    keys = [b.key for b in chosen]
    try:
        ds = odc.stac.load(
            items,
            bands=keys,
            chunks=_CHUNKS,
            groupby="time",
            fail_on_error=True,
            geobox=_output_geobox(items, keys),
        )
    except ValueError as exc:
        raise _invalid("url", f"cannot stack the items at {str(url)!r}: {exc}") from exc
    ds = ds.rename({k: v for k, v in (("latitude", "y"), ("longitude", "x")) if k in ds.dims})
    nodata = {ds[b.key].attrs.get("nodata") for b in chosen}
    cube = ds[keys].to_dataarray("bands").transpose("time", "bands", "y", "x")
    cube = canonical_cube(cube.assign_coords(bands=[b.label for b in chosen]), _ID)
    cube.attrs = {}
    if len(nodata) == 1 and None not in nodata:
        cube.attrs["nodata"] = nodata.pop()
    return cube


def _output_geobox(items: list[pystac.Item], keys: list[str]) -> Any:
    """The output grid when items are on different grids; ``None`` when they share one.

    The most common CRS and resolution, in the exact pixel phase of an item on that grid,
    grown to cover every item. (odc-stac's own choice keeps CRS and resolution but not a pixel
    phase other than edge or centre aligned: native pixels would be resampled off-grid.)
    """
    import odc.stac
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import bbox_union

    boxes = [gb[0] for p in odc.stac.parse_items(items) if (gb := p.geoboxes(keys))]
    if len(set(boxes)) <= 1:
        return None
    (crs, resolution), _ = Counter((g.crs, g.resolution) for g in boxes).most_common(1)[0]
    ref = next(g for g in boxes if (g.crs, g.resolution) == (crs, resolution))
    bounds = bbox_union(g.footprint(crs).boundingbox for g in boxes)
    corners = [(x, y) for x in (bounds.left, bounds.right) for y in (bounds.bottom, bounds.top)]
    cols, rows = np.round(np.array([~ref.affine @ c for c in corners]).T, 6)
    col0, row0 = int(np.floor(cols.min())), int(np.floor(rows.min()))
    shape = (int(np.ceil(rows.max())) - row0, int(np.ceil(cols.max())) - col0)
    return GeoBox(shape, ref.affine @ Affine.translation(col0, row0), crs)


def _raster_catalogue(items: list[pystac.Item]) -> list[_Band]:
    """Bands as odc-stac names them (per collection, from its first item), with our labels."""
    import odc.stac

    firsts: dict[str | None, pystac.Item] = {}
    for item in items:
        firsts.setdefault(item.collection_id, item)
    found: dict[str, _Band] = {}
    for item in firsts.values():
        md = odc.stac.extract_collection_metadata(item)
        aliases = md.band_aliases()
        for name in md.all_bands:
            asset, index = md.band_key(name)
            eo = item.assets[asset].extra_fields.get("eo:bands") or []
            preferred = eo[index - 1].get("name") if len(eo) >= index else None
            label = str(normalize_band_label(preferred or name))
            names = {name, *aliases.get((asset, index), [])} - {label}
            found.setdefault(name, _Band(label, name, tuple(sorted(names))))
    return _unique_labels(list(found.values()))


def _prepared(item: pystac.Item, url: Any) -> pystac.Item:
    """A copy of ``item`` with its raster assets only, absolute hrefs and complete metadata."""
    item = item.clone()
    for key in list(item.assets):
        if _asset_kind(item.assets[key]) != "raster":
            del item.assets[key]
            continue
        asset = item.assets[key]
        asset.href = _asset_path(item, key, url)
        _eo_from_common_bands(asset)
        if not _has_grid(asset) or not _has_dtype(asset):
            _fill_from_header(item, key, url)
    return item


def _eo_from_common_bands(asset: pystac.Asset) -> None:
    """odc-stac names bands from ``eo:bands`` only: copy names of STAC 1.1 ``bands`` there."""
    from pystac.extensions.eo import Band, EOExtension

    common = asset.extra_fields.get("bands")
    if not common or "eo:bands" in asset.extra_fields or not all("name" in b for b in common):
        return
    EOExtension.ext(asset, add_if_missing=True).bands = [
        Band.create(name=b["name"], common_name=b.get("eo:common_name")) for b in common
    ]


def _has_grid(asset: pystac.Asset) -> bool:
    fields = {**(asset.owner.properties if asset.owner else {}), **asset.extra_fields}
    has_crs = any(fields.get(k) for k in ("proj:code", "proj:epsg", "proj:wkt2", "proj:projjson"))
    return has_crs and bool(fields.get("proj:shape")) and bool(fields.get("proj:transform"))


def _has_dtype(asset: pystac.Asset) -> bool:
    bands = asset.extra_fields.get("raster:bands") or asset.extra_fields.get("bands") or []
    return bool(bands) and all("data_type" in b for b in bands)


def _fill_from_header(item: pystac.Item, key: str, url: Any) -> None:
    import rasterio
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterBand, RasterExtension

    asset = item.assets[key]
    try:
        with rasterio.open(asset.href) as src:
            crs, transform, shape = src.crs, src.transform, (src.height, src.width)
            dtypes, nodata, names = src.dtypes, src.nodata, src.descriptions
    except rasterio.errors.RasterioIOError as exc:
        raise _invalid(
            "url",
            f"asset '{key}' of item '{item.id}' at {str(url)!r} is not a readable raster: {exc}",
        ) from exc
    if crs is None:
        raise _invalid(
            "url",
            f"asset '{key}' of item '{item.id}' has no CRS (neither proj:code nor in the file).",
        )
    if not _has_grid(asset):
        proj = ProjectionExtension.ext(asset, add_if_missing=True)
        epsg = crs.to_epsg()
        if epsg is not None:
            proj.code = f"EPSG:{epsg}"
        else:
            proj.wkt2 = crs.to_wkt()
        proj.shape = list(shape)
        proj.transform = list(transform)[:6]
    if not _has_dtype(asset):
        RasterExtension.ext(asset, add_if_missing=True).bands = [
            RasterBand.create(data_type=d, nodata=_nodata(nodata, d)) for d in dtypes
        ]
    if (
        len(dtypes) > 1
        and "eo:bands" not in asset.extra_fields
        and all(names)
        and len(set(names)) == len(names)
    ):
        EOExtension.ext(asset, add_if_missing=True).bands = [Band.create(name=n) for n in names]


def _nodata(value: float | None, dtype: str) -> float | int | str | None:
    """A file's nodata as STAC writes it: integers for integer bands, ``"nan"`` for NaN."""
    if value is None:
        return None
    if np.isnan(value):
        return "nan"
    return int(value) if np.dtype(dtype).kind in "iu" and float(value).is_integer() else value


# --- zarr / netCDF through xarray ----------------------------------------------------------


def _load_arrays(items: list[pystac.Item], bands: Sequence[str] | None, url: Any) -> xr.DataArray:
    cubes = [_item_cube(item, url) for item in items]
    try:
        cube = xr.concat(cubes, "t", join="exact", coords="minimal", compat="override")
    except ValueError as exc:
        raise _invalid(
            "url",
            f"the zarr/netCDF items at {str(url)!r} are not on one grid with the same bands "
            f"({exc}); this reader does not resample them.",
        ) from exc
    cube = cube.sortby("t")
    aliases: dict[str, set[str]] = {}
    for item in items:
        for asset in item.assets.values():
            for band in asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []:
                common = band.get("common_name") or band.get("eo:common_name")
                if band.get("name") and common:
                    aliases.setdefault(str(normalize_band_label(band["name"])), set()).add(common)
    catalogue = [
        _Band(str(b), str(b), tuple(sorted(aliases.get(str(b), ())))) for b in cube["bands"].values
    ]
    chosen = _choose(catalogue, bands, url)
    return cube.sel(bands=[b.label for b in chosen])


def _item_cube(item: pystac.Item, url: Any) -> xr.DataArray:
    import rioxarray  # noqa: F401

    from ..io import open_cube

    parts = []
    for key, asset in item.assets.items():
        if _asset_kind(asset) != "xarray":
            continue
        href = _asset_path(item, key, url)
        if "://" in href:
            raise FeatureUnsupported(
                reason=f"load_stac reads zarr/netCDF assets from local files only, not {href!r}."
            )
        try:
            opened = open_cube(href, chunks={})
        except ProcessParameterInvalid as exc:
            reason = exc.fields.get("reason", exc)
            raise _invalid("url", f"asset '{key}' of item '{item.id}': {reason}") from exc
        except (OSError, ValueError) as exc:
            raise _invalid(
                "url", f"asset '{key}' of item '{item.id}' ({href}) cannot be read: {exc}"
            ) from exc
        single = (
            isinstance(opened, xr.Dataset)
            and len([v for v in opened.data_vars if opened[v].ndim >= 2]) == 1
        )
        try:
            part = canonical_cube(_xy_dims(opened), _ID)
        except OpenEOError as exc:
            raise _invalid("url", f"asset '{key}' of item '{item.id}': {exc}") from exc
        if single:  # one variable, no band dimension: the asset is the band
            eo = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
            name = eo[0].get("name") if len(eo) == 1 else None
            part = part.assign_coords(bands=[normalize_band_label(name or key)])
        parts.append(part)
    cube = parts[0] if len(parts) == 1 else xr.concat(parts, "bands", join="exact")
    if "t" not in cube.dims:
        cube = cube.expand_dims(t=[_item_times(item)[0]])
    if cube.rio.crs is None:
        crs = item.properties.get("proj:code") or item.properties.get("proj:epsg")
        if crs is not None:
            cube = cube.rio.write_crs(crs)
    return cube.transpose("t", "bands", "y", "x")


def _xy_dims(data: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
    pairs = (("latitude", "y"), ("lat", "y"), ("longitude", "x"), ("lon", "x"))
    renames = {a: b for a, b in pairs if a in data.dims and b not in data.dims}
    return data.rename(renames) if renames else data


# --- extents on the cube -------------------------------------------------------------------


def _crop(cube: xr.DataArray, area: _Area | None, window: _Window | None, url: Any) -> xr.DataArray:
    import rioxarray  # noqa: F401

    if window is not None:
        times = pd.DatetimeIndex(cube["t"].values)
        start, end = window
        keep = np.ones(len(times), bool)
        if start is not None:
            keep &= times >= start
        if end is not None:
            keep &= times < end
        cube = cube.isel(t=np.flatnonzero(keep))
    if area is not None:
        west, south, east, north = bbox_in_crs(area.bbox, cube.rio.crs)
        ys = cube["y"].values
        cube = cube.sel(
            x=slice(west, east), y=slice(north, south) if ys[0] > ys[-1] else slice(south, north)
        )
        if area.geometries and all(cube.sizes[d] for d in cube.dims):
            from rioxarray.exceptions import NoDataInBounds

            try:
                cube = cube.rio.clip(list(area.geometries), crs="EPSG:4326", drop=False)
            except NoDataInBounds:
                cube = cube.isel(x=slice(0, 0))
    if any(cube.sizes[d] == 0 for d in cube.dims):
        raise NoDataAvailable(
            reason=f"the STAC data at {str(url)!r} has no pixels in the requested extents (sizes {dict(cube.sizes)})."
        )
    return cube


def _local_spec() -> dict[str, Any]:
    """The openEO spec, with ``url`` also accepting local paths and ``file://`` URLs."""
    spec = upstream_spec(_ID)
    for param in spec["parameters"]:
        if param["name"] == "spatial_extent" and not any(
            s.get("subtype") == "geojson" for s in param["schema"]
        ):  # as in openEO processes 2.0.0-rc.2 (proposals/load_stac.json)
            param["schema"].insert(-1, _GEOJSON_SCHEMA)
        if param["name"] == "url":
            param["schema"] = {k: v for k, v in param["schema"].items() if k != "pattern"}
            param["description"] += (
                "\n\nLocal executor: also a local file path or a `file://` URL of a STAC Item, "
                "Collection, Catalog or ItemCollection (FeatureCollection) JSON file."
            )
    return spec


#: ``load_stac``'s spec for this executor
SPEC = _local_spec()
