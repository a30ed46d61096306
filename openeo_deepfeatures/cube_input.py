"""Input cubes as users have them -> one openEO-shaped cube: the one place input is normalised.

:func:`canonical_cube` is called by every entry point (the Python API, the CLI, the executor's
``load_collection``/``load_stac`` and our processes). It returns an :class:`xarray.DataArray`
with openEO dimension names (``t``, ``bands``, ``y``, ``x``) and CDSE band labels, and records
in its attributes what the values are:

- band names of the common openEO/CDSE/STAC spellings are mapped to CDSE labels
  (:func:`~openeo_deepfeatures.bands.normalize_band_label`); other bands are kept (indices may
  use external inputs such as ``PAR``) and dropped later by whoever does not need them;
- a Dataset with one variable per band is stacked; grid-mapping variables (``crs``,
  ``spatial_ref``) are not bands; a variable on another grid is refused when it is a
  Sentinel-2 band and dropped (with an INFO line) otherwise;
- no-data: ``_FillValue``, ``missing_value`` and ``nodata`` attributes of raw (undecoded)
  variables are collected in :data:`NODATA_ATTR`, so preprocessing masks them with DN 0 and
  the 65535 convention; CF ``scale_factor``/``add_offset`` of raw variables are applied;
- :data:`VALUES_ATTR` says whether the values are digital numbers (``"DN"``: integers, or
  decoded from integers without a scale) or physical reflectance (``"reflectance"``: decoded
  with a CF scale factor); it is absent when nothing tells (float cubes without metadata).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import xarray as xr

from .bands import is_s2_label, normalize_band_label
from .errors import DimensionNotAvailable, ProcessParameterInvalid

__all__ = [
    "NODATA_ATTR",
    "VALUES_ATTR",
    "canonical_cube",
    "declared_nodata",
    "format_labels",
]

log = logging.getLogger(__name__)

#: Attribute listing raw no-data values declared by the input (besides DN 0 and 65535).
NODATA_ATTR = "deepfeatures_nodata"
#: Attribute: ``"DN"`` or ``"reflectance"`` when the input's metadata tells which.
VALUES_ATTR = "deepfeatures_values"
_BAND_DIMS = ("bands", "band")
_TIME_DIMS = ("t", "time")
_NODATA_KEYS = ("_FillValue", "missing_value", "nodata")
_GRID_MAPPING_NAMES = ("crs", "spatial_ref")
#: A CF scale factor at most this turns DN into reflectance (Sentinel-2: 1e-4).
_REFLECTANCE_SCALE = 1e-3


def format_labels(labels: Iterable[Hashable]) -> str:
    """``B02, B03, SCL``: labels for a message (plain strings, no numpy reprs)."""
    return ", ".join(str(v) for v in labels)


def declared_nodata(cube: xr.DataArray) -> tuple[float, ...]:
    """The raw no-data values the input declared (see :data:`NODATA_ATTR`)."""
    values = cube.attrs.get(NODATA_ATTR, ())
    return tuple(float(v) for v in np.ravel(values))


def _scalar_values(value: Any) -> list[float]:
    out = []
    for v in np.ravel(np.asarray(value)):
        try:
            number = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(number):
            out.append(number)
    return out


def _describe(var: xr.DataArray) -> tuple[xr.DataArray, list[float], str | None]:
    """One variable -> (values with raw CF scaling applied, raw no-data values, value kind).

    ``var`` may hold several bands (a ``bands`` dimension): a raw scale then applies to all of
    them but ``SCL``, whose classes are not scaled.
    """
    raw_scale = "scale_factor" in var.attrs or "add_offset" in var.attrs
    nodata = [v for key in _NODATA_KEYS if key in var.attrs for v in _scalar_values(var.attrs[key])]
    source_dtype = np.dtype(var.encoding.get("dtype", var.dtype))
    decoded_scale = var.encoding.get("scale_factor")
    if raw_scale:
        scale = float(var.attrs.get("scale_factor", 1.0))
        offset = float(var.attrs.get("add_offset", 0.0))
        data = var.astype(np.float32)
        if nodata:
            data = data.where(~data.isin(nodata))
        scaled = data * np.float32(scale) + np.float32(offset)
        if "bands" in var.dims and "SCL" in var["bands"].values.tolist():
            scaled = scaled.where(var["bands"] != "SCL", data)
        scaled.attrs = {
            k: v
            for k, v in var.attrs.items()
            if k not in ("scale_factor", "add_offset", *_NODATA_KEYS)
        }
        kind = "reflectance" if abs(scale) <= _REFLECTANCE_SCALE else None
        return scaled, [], kind  # no-data is NaN now
    if decoded_scale is not None and abs(float(decoded_scale)) <= _REFLECTANCE_SCALE:
        return var, nodata, "reflectance"
    if np.issubdtype(source_dtype, np.integer):
        return var, nodata, "DN"
    return var, nodata, None


def _merge_kinds(kinds: dict[Hashable, str | None]) -> str | None:
    """One value kind for the reflectance bands (SCL and others do not count)."""
    found = {k for label, k in kinds.items() if label != "SCL" and is_s2_label(label)}
    found.discard(None)
    if len(found) > 1:
        raise ProcessParameterInvalid(
            process="load",
            parameter="data",
            reason=(
                "some bands are digital numbers and others reflectance (CF scale_factor on "
                "some variables only); give all bands the same scaling."
            ),
        )
    return found.pop() if found else None


def _grid_mappings(ds: xr.Dataset) -> set[Hashable]:
    names = {v.attrs.get("grid_mapping") for v in ds.variables.values()}
    names |= {v.encoding.get("grid_mapping") for v in ds.variables.values()}
    names |= {n for n in ds.variables if str(n) in _GRID_MAPPING_NAMES}
    return {n for n in names if n is not None and n in ds.variables}


def _dataset_to_cube(ds: xr.Dataset, process: str) -> xr.DataArray:
    mappings = _grid_mappings(ds)
    variables = [v for v in ds.data_vars if v not in mappings and ds[v].ndim >= 2]
    if not variables:
        raise DimensionNotAvailable(
            reason=f"process '{process}': the dataset has no raster variables."
        )
    labels = {v: normalize_band_label(v) for v in variables}
    s2 = [v for v in variables if is_s2_label(labels[v])]
    reference = ds[s2[0] if s2 else variables[0]].dims
    odd = [v for v in variables if ds[v].dims != reference]
    odd_s2 = [v for v in odd if v in s2]
    if odd_s2:
        raise ProcessParameterInvalid(
            process=process,
            parameter="data",
            reason=(
                f"bands {format_labels(odd_s2)} are on another grid "
                f"({'; '.join(format_labels(ds[v].dims) for v in odd_s2)}) than "
                f"{s2[0] if s2 else variables[0]} ({format_labels(reference)}). Resample all bands "
                "to one grid first (for example with rioxarray's `reproject_match` or odc-geo); "
                "this function does not resample."
            ),
        )
    if odd:
        log.info(
            "%s: variables %s are not on the bands' grid and not Sentinel-2 bands: ignored.",
            process,
            format_labels(odd),
        )
    keep = [v for v in variables if v not in odd]
    described = {v: _describe(ds[v]) for v in keep}
    nodata = sorted({n for v in keep if is_s2_label(labels[v]) for n in described[v][1]})
    kind = _merge_kinds({labels[v]: described[v][2] for v in keep})
    crs = _crs(ds, keep[0])
    stacked = xr.Dataset({v: described[v][0] for v in keep}, attrs=ds.attrs)
    stacked = stacked.drop_vars([m for m in mappings if m in stacked.variables])
    cube = stacked.to_dataarray(dim="bands")
    time_dims = [d for d in _TIME_DIMS if d in cube.dims]
    cube = cube.transpose(*time_dims, "bands", ...)  # openEO order: t, bands, y, x
    cube.attrs = dict(ds.attrs)
    if crs is not None:  # as rioxarray writes it: a `spatial_ref` coordinate
        cube = cube.rio.write_crs(crs)
    return _mark(cube, nodata, kind)


def _crs(ds: xr.Dataset, variable: Hashable):
    """The CRS of a variable: its grid mapping (``crs``, ``spatial_ref``), else the dataset's."""
    import rioxarray  # noqa: F401

    for source in (ds[variable], ds):
        try:
            crs = source.rio.crs
        except (ValueError, RuntimeError, KeyError):  # unreadable grid-mapping attributes
            crs = None
        if crs is not None:
            return crs
    return None


def _mark(cube: xr.DataArray, nodata: list[float], kind: str | None) -> xr.DataArray:
    """A shallow copy of ``cube`` with the no-data values and the value kind in its attributes."""
    marks: dict[str, Any] = {}
    if nodata:
        marks[NODATA_ATTR] = sorted(set(nodata) | set(declared_nodata(cube)))
    if kind is not None:
        marks[VALUES_ATTR] = kind
    return cube.assign_attrs(marks) if marks else cube


def canonical_cube(cube: object, process: str) -> xr.DataArray:
    """Return ``cube`` with openEO dimension names (``t``, ``bands``) and CDSE band labels.

    Accepts an :class:`xarray.DataArray` with a ``bands``/``band`` dimension, or an
    :class:`xarray.Dataset` whose data variables are the bands (all on one grid). See the
    module docstring for band names, no-data and scaling.
    """
    from_dataset = isinstance(cube, xr.Dataset)
    if from_dataset:
        cube = _dataset_to_cube(cube, process)
    if not isinstance(cube, xr.DataArray):
        raise ProcessParameterInvalid(
            process=process,
            parameter="data",
            reason=f"expected an xarray.DataArray with a 'bands' dimension, got {type(cube).__name__}.",
        )
    renames = {}
    band_dims = [d for d in _BAND_DIMS if d in cube.dims]
    if not band_dims:
        raise DimensionNotAvailable(
            reason=(
                f"process '{process}' needs a 'bands' (or 'band') dimension; the cube has "
                f"dimensions ({format_labels(cube.dims)}). Build one with e.g. "
                "`dataset.to_dataarray(dim='bands')`."
            )
        )
    if band_dims[0] != "bands":
        renames["band"] = "bands"
    if "time" in cube.dims and "t" not in cube.dims:
        renames["time"] = "t"
    if renames:
        cube = cube.rename(renames)
    names = [str(b) if isinstance(b, np.str_) else b for b in cube["bands"].values.tolist()]
    labels = [normalize_band_label(b) for b in names]
    if len(set(labels)) != len(labels):
        seen: dict[Hashable, list[Hashable]] = {}
        for name, label in zip(names, labels, strict=True):
            seen.setdefault(label, []).append(name)
        clashes = "; ".join(
            f"{format_labels(group)} all mean {label}"
            for label, group in seen.items()
            if len(group) > 1
        )
        raise ProcessParameterInvalid(
            process=process,
            parameter="data",
            reason=f"duplicate bands: {clashes}. Keep one of each (e.g. `cube.sel(bands=[...])`).",
        )
    cube = cube.assign_coords(bands=labels)
    if not from_dataset and VALUES_ATTR not in cube.attrs:
        described, nodata, kind = _describe(cube)
        cube = _mark(described, nodata, kind)
    return cube
