"""Processes the upstream stack lacks, implemented to their openEO specs for local runs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..cube_input import format_labels
from ..errors import CollectionNotFound, NoDataAvailable, ProcessParameterInvalid
from ..sentinel2 import canonical_cube, normalize_band_label
from ..stac import GEOTIFF, JSON, NETCDF, ZARR, cube_item
from .extents import bbox_in_crs, temporal_bounds

__all__ = [
    "RunSettings",
    "array_contains",
    "array_create",
    "load_collection",
    "open_collection",
    "save_result",
    "settings",
]


class RunSettings:
    """Per-run settings the processes read: collections and where results go."""

    def __init__(
        self, collections: Mapping[str, Any] | None = None, output: str | Path | None = None
    ) -> None:
        self.collections = dict(collections or {})
        self.output = Path(output) if output is not None else None
        self.saved: list[dict[str, Any]] = []


settings: ContextVar[RunSettings] = ContextVar("deepfeatures_run_settings")


def open_collection(collection_id: str) -> xr.DataArray:
    """The cube registered for ``collection_id`` in this run (``DEMO_S2``: the demo cube)."""
    run = settings.get(RunSettings())
    source = run.collections.get(collection_id)
    if source is None and collection_id == "DEMO_S2":
        from ..data import load_demo_cube

        return load_demo_cube(chunks={"t": 20})
    if source is None:
        known = sorted({"DEMO_S2", *run.collections})
        raise CollectionNotFound(
            f"Collection '{collection_id}' does not exist; available locally: {known}.",
            collection=collection_id,
        )
    if isinstance(source, (xr.DataArray, xr.Dataset)):
        return canonical_cube(source, "load_collection")
    from ..io import open_cube
    from ..policy import current_policy

    path = current_policy().check_read(source, what=f"load_collection '{collection_id}'")
    return canonical_cube(open_cube(path, chunks={}), "load_collection")


def load_collection(
    id: str,
    spatial_extent: Mapping[str, Any] | None = None,
    temporal_extent: Sequence[Any] | None = None,
    bands: Sequence[str] | None = None,
    properties: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Local collections: ``DEMO_S2`` (the embedded demo cube) and any registered path or cube."""
    import rioxarray  # noqa: F401

    cube = open_collection(id)
    if bands is not None:
        labels = [normalize_band_label(b) for b in bands]
        have = [str(b) for b in cube["bands"].values]
        missing = [b for b in labels if b not in have]
        if missing:
            raise ProcessParameterInvalid(
                process="load_collection",
                parameter="bands",
                reason=(
                    f"bands {format_labels(missing)} are not in collection '{id}'; it has "
                    f"{format_labels(have)}."
                ),
            )
        cube = cube.sel(bands=labels)
    if temporal_extent is not None and "t" in cube.dims:
        start, end = temporal_bounds(temporal_extent, "load_collection")
        times = pd.DatetimeIndex(cube["t"].values)
        keep = np.ones(len(times), bool)
        if start is not None:
            keep &= times >= start
        if end is not None:
            keep &= times < end  # end is exclusive
        cube = cube.isel(t=np.flatnonzero(keep))
    if spatial_extent is not None:
        west, south, east, north = bbox_in_crs(spatial_extent, cube.rio.crs)
        ys = cube["y"].values
        ysel = slice(north, south) if ys[0] > ys[-1] else slice(south, north)
        cube = cube.sel(x=slice(west, east), y=ysel)
    if any(cube.sizes[d] == 0 for d in cube.dims):
        raise NoDataAvailable(
            reason=f"collection '{id}' has no data in the requested extents (sizes {dict(cube.sizes)})."
        )
    return cube


#: save_result formats: file suffix and STAC media type.
_FORMATS = {
    "ZARR": (".zarr", ZARR),
    "NETCDF": (".nc", NETCDF),
    "NC": (".nc", NETCDF),
    "GTIFF": (".tif", GEOTIFF),
    "GEOTIFF": (".tif", GEOTIFF),
    "JSON": (".json", JSON),
}


def save_result(
    data: xr.DataArray, format: str, options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``data`` (zarr, netCDF or GeoTIFF) atomically and return a STAC Item for it."""

    from ..io import atomic_path, clean_attrs, keep_coordinates, write_zarr
    from ..policy import current_policy

    fmt = str(format).upper()
    if fmt not in _FORMATS:
        raise ProcessParameterInvalid(
            process="save_result",
            parameter="format",
            reason=f"{format!r}: use one of ZARR, netCDF, GTiff, JSON.",
        )
    run = settings.get(RunSettings())
    out_dir = run.output or Path.cwd()
    options = dict(options or {})
    suffix, media_type = _FORMATS[fmt]
    name = str(options.get("filename", f"result{len(run.saved) or ''}")) + suffix
    target = current_policy().check_write(out_dir / name, what="save_result")
    overwrite = bool(options.get("overwrite", False))
    described = data  # what the file holds, for its STAC item
    if fmt == "ZARR":
        write_zarr(data, target, overwrite=overwrite)
    elif fmt in ("NETCDF", "NC"):
        with atomic_path(target, overwrite=overwrite) as tmp:
            out = data.rename(data.name or "data")
            out.attrs = clean_attrs(out.attrs)
            if "bands" in out.coords:
                out = out.assign_coords(bands=[str(b) for b in out["bands"].values])
            keep_coordinates(out.to_dataset()).to_netcdf(tmp)
    elif fmt == "JSON":
        with atomic_path(target, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(_json_value(data), allow_nan=False), "utf-8")
    else:
        cube = data
        extra = [d for d in cube.dims if d not in ("y", "x", "bands")]
        if any(cube.sizes[d] != 1 for d in extra):
            raise ProcessParameterInvalid(
                process="save_result",
                parameter="format",
                reason=f"GTiff holds one raster; reduce the dimensions {extra} first (or use ZARR / netCDF).",
            )
        described = cube.squeeze(extra)  # the date stays, as a scalar coordinate
        cube = cube.squeeze(extra, drop=True)
        cube.attrs = clean_attrs(cube.attrs)
        if "bands" in cube.dims:
            cube = cube.rename(bands="band").transpose("band", "y", "x")
        with atomic_path(target, overwrite=overwrite) as tmp:
            cube.rio.to_raster(tmp, driver="GTiff")
    item = cube_item(
        described, item_id=target.stem, href=str(target), media_type=media_type
    ).to_dict()
    run.saved.append(item)
    return item


def _json_value(data: Any) -> Any:
    """A JSON value: a cube as xarray's dict form (``dims``, ``coords``, ``data``), NaN as null."""
    if isinstance(data, xr.DataArray):
        out = data.compute()
        out.attrs = {}
        value = out.to_dict(data="list", encoding=False)
        for coord in value.get("coords", {}).values():
            coord.pop("attrs", None)
        value.pop("attrs", None)
    elif hasattr(data, "compute"):
        value = np.asarray(data.compute()).tolist()
    elif isinstance(data, np.ndarray | np.generic):
        value = data.tolist()
    else:
        value = data

    def plain(v: Any) -> Any:
        if isinstance(v, float) and not np.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, np.generic):
            return plain(v.item())
        if isinstance(v, pd.Timestamp | np.datetime64) or hasattr(v, "isoformat"):
            return pd.Timestamp(v).isoformat()
        return v

    return plain(value)


def array_create(data: Sequence[Any] | None = None, repeat: int = 1, axis: int | None = None):
    """``array_create`` that stacks per-pixel arrays along the callback's axis.

    Inside ``apply_dimension`` a callback works on whole arrays with the processed dimension
    on ``axis``; upstream tiles the elements along the first axis instead, so graphs such as
    those of ``openeo.extra.spectral_indices`` fail or come out transposed.
    """
    import dask.array as da
    from openeo_processes_dask.process_implementations.arrays import array_create as upstream

    from ..policy import current_policy

    items = list(data) if data is not None else []
    lazy = any(isinstance(v, da.Array) for v in items)
    # held in memory at once: every element, a per-pixel array counted whole (a lazy one is
    # not computed here: the executor checks the chunks of the result)
    chunked = any(getattr(v, "chunks", None) is not None for v in items)
    each = 1 if chunked else max((_elements(v) for v in items), default=1)
    values = len(items) * max(int(repeat), 1) * each
    current_policy().check_limit(
        "max_array_bytes", values * 8, f"array_create of {values:,} values ({values * 8:,} bytes)"
    )
    if axis is None or not any(np.ndim(v) for v in items):
        return upstream(data=data, repeat=repeat)
    shape = np.broadcast_shapes(*(np.shape(v) for v in items))
    stack, full = (da.stack, da.full) if lazy else (np.stack, np.full)
    arrays = [v if np.ndim(v) else full(shape, v) for v in items]
    out = stack(arrays, axis=axis)
    return out if repeat == 1 else (da if lazy else np).concatenate([out] * repeat, axis=axis)


def _elements(value: Any) -> int:
    try:
        return int(np.prod(np.shape(value), dtype=np.int64))
    except ValueError:  # a ragged list
        return 1


def array_contains(data: Any, value: Any, axis: int | None = None) -> Any:
    """``array_contains`` that also works per pixel inside ``apply``.

    In ``apply`` the callback's ``x`` is the whole cube (one value per pixel), so a graph such
    as ``array_contains(data=[3, 8, 9], value=x)`` asks, pixel by pixel, whether ``x`` is in the
    list. Upstream sees an array where it expects a scalar and answers a single ``false``.
    No-data (NaN) is never contained.
    """
    from openeo_processes_dask.process_implementations.arrays import array_contains as upstream

    vectorised = not isinstance(value, (list, tuple)) and np.ndim(value) > 0
    if not vectorised or np.ndim(data) != 1:
        return upstream(data=data, value=value, axis=axis)
    items = [v for v in data if not pd.isnull(v)]
    if isinstance(value, xr.DataArray):
        return value.isin(items)
    import dask.array as da

    return da.isin(value, items) if isinstance(value, da.Array) else np.isin(value, items)
