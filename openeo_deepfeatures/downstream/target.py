"""The per-pixel target of a downstream evaluation: reading it, checking it, putting it on the grid.

A target is a 2-D raster ``(y, x)`` of numbers with NaN (or its declared nodata) where it is
unknown, on the grid of the feature cube. A target on another grid or CRS is refused with the
reason; when its CRS is known, :func:`align_target` resamples it onto the features' grid on
request (``reproject=True``, area-weighted average via :meth:`rioxarray` ``reproject_match``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DimensionNotAvailable, ProcessParameterInvalid
from .options import PROCESS

__all__ = ["align_target", "as_target", "grid_mismatch", "load_target"]

_GEOTIFF = (".tif", ".tiff", ".gtiff")


def _invalid(reason: str, parameter: str = "target") -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=PROCESS, parameter=parameter, reason=reason)


def load_target(path: str | os.PathLike, *, variable: str | None = None) -> xr.DataArray:
    """Read a target raster: GeoTIFF (one band), netCDF or zarr (one 2-D variable, or ``variable``).

    Nodata values declared in the file become NaN. The result is checked by :func:`as_target`.
    """
    import rioxarray

    path = Path(path)
    if not path.exists():
        raise _invalid(f"{str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix in _GEOTIFF:
        return as_target(rioxarray.open_rasterio(path, mask_and_scale=True).load())
    try:
        if suffix == ".zarr" or path.is_dir():
            ds = xr.open_zarr(path, consolidated=False, decode_coords="all")
        else:
            ds = xr.open_dataset(path, decode_coords="all")
    except (OSError, ValueError) as exc:
        raise _invalid(f"cannot read {path.name}: {exc}; use .tif, .nc or .zarr.") from None
    if variable is not None:
        if variable not in ds.data_vars:
            raise _invalid(f"{variable!r} not in {sorted(ds.data_vars)}.", "target_variable")
        return as_target(ds[variable].load())
    rasters = [v for v in ds.data_vars if ds[v].ndim >= 2]
    if len(rasters) != 1:
        raise _invalid(
            f"{path.name} holds {len(rasters)} raster variables {sorted(map(str, rasters))}; "
            "pick one (--target-variable).",
            "target_variable",
        )
    return as_target(ds[rasters[0]].load())


def as_target(target: xr.DataArray) -> xr.DataArray:
    """``target`` as a float64 ``(y, x)`` array with NaN for nodata; length-1 dims are dropped."""
    if not isinstance(target, xr.DataArray):
        raise _invalid(f"expected an xarray.DataArray (y, x), got {type(target).__name__}.")
    if not (np.issubdtype(target.dtype, np.number) or target.dtype == bool):
        raise _invalid(f"values must be numbers, not {target.dtype}.")
    extra = [d for d in target.dims if d not in ("y", "x")]
    target = target.squeeze([d for d in extra if target.sizes[d] == 1], drop=True)
    if "y" not in target.dims or "x" not in target.dims:
        raise DimensionNotAvailable(
            reason=(
                f"the target needs the spatial dimensions y and x; it has {tuple(target.dims)}. "
                "Rename them, e.g. target.rename(lat='y', lon='x')."
            )
        )
    if target.ndim != 2:
        sizes = {d: target.sizes[d] for d in target.dims}
        raise _invalid(
            f"the target must be 2-D (y, x), one value per pixel; it has dimensions {sizes}. "
            "Select one layer first (e.g. target.isel(band=0) or --target-variable)."
        )
    import rioxarray  # noqa: F401  (registers .rio)

    nodata = target.rio.nodata
    out = target.transpose("y", "x").astype(np.float64)
    if nodata is not None and np.isfinite(nodata):
        out = out.where(target.transpose("y", "x") != nodata)
    out = out.where(np.isfinite(out))
    out.attrs = {k: v for k, v in target.attrs.items() if k not in ("_FillValue", "nodata")}
    return out.rio.write_crs(target.rio.crs) if target.rio.crs is not None else out


def grid_mismatch(target: xr.DataArray, like: xr.DataArray) -> str | None:
    """Why ``target`` is not on the ``(y, x)`` grid of ``like``, or None when it is."""
    import rioxarray  # noqa: F401

    crs_t, crs_l = target.rio.crs, like.rio.crs
    if crs_t is not None and crs_l is not None and crs_t != crs_l:
        return f"its CRS is {crs_t.to_string()}, the features' is {crs_l.to_string()}"
    if (target.sizes["y"], target.sizes["x"]) != (like.sizes["y"], like.sizes["x"]):
        return (
            f"it has {target.sizes['y']} x {target.sizes['x']} pixels (y, x), the features "
            f"{like.sizes['y']} x {like.sizes['x']}"
        )
    for dim in ("y", "x"):
        a = np.asarray(target[dim].values, dtype=np.float64)
        b = np.asarray(like[dim].values, dtype=np.float64)
        step = np.abs(np.diff(b)).min() if b.size > 1 else 1.0
        if not np.allclose(a, b, rtol=0.0, atol=1e-3 * step):
            worst = float(np.abs(a - b).max())
            return f"its {dim} coordinates differ from the features' by up to {worst:g}"
    return None


def align_target(
    target: xr.DataArray,
    like: xr.DataArray,
    *,
    reproject: bool = False,
    resampling: str = "average",
) -> xr.DataArray:
    """``target`` on the ``(y, x)`` grid of ``like`` (a cube), with ``like``'s coordinates.

    On another grid or CRS it is an error, unless ``reproject`` and both CRSs are known: then
    the target is resampled (``resampling``: a :class:`rasterio.enums.Resampling` name).
    """
    from rasterio.enums import Resampling

    target = as_target(target)
    grid = like.isel({d: 0 for d in like.dims if d not in ("y", "x")}, drop=True)
    why = grid_mismatch(target, grid)
    if why is None:
        return target.assign_coords(y=grid["y"].values, x=grid["x"].values)
    if not reproject:
        hint = (
            "Pass reproject=True (deepfeatures evaluate --reproject) to resample it onto the "
            "features' grid."
            if target.rio.crs is not None and grid.rio.crs is not None
            else "Its CRS is unknown, so it cannot be reprojected: put it on the features' grid, "
            "or declare its CRS (target.rio.write_crs(...)) and pass reproject=True."
        )
        raise _invalid(f"the target is not on the features' grid: {why}. {hint}")
    if target.rio.crs is None or grid.rio.crs is None:
        which = "target" if target.rio.crs is None else "feature cube"
        raise _invalid(
            f"cannot reproject the target ({why}): the {which} has no CRS; declare it with "
            ".rio.write_crs(...)."
        )
    try:
        method = Resampling[resampling]
    except KeyError:
        raise _invalid(
            f"unknown resampling {resampling!r}; use one of {[r.name for r in Resampling]}.",
            "resampling",
        ) from None
    source = target.rio.write_nodata(np.nan, encoded=False)
    out = source.rio.reproject_match(grid, resampling=method)
    out = out.assign_coords(y=grid["y"].values, x=grid["x"].values)
    out.attrs = dict(target.attrs)
    out.attrs["reprojected_from"] = target.rio.crs.to_string()
    return as_target(out)
