"""Cubes in the shapes openEO backends write them, made from the embedded demo's real values.

The CDSE openEO backend's netCDF (``download``/batch ``save_result(format="netCDF")``): one
variable per band on (t, y, x), a ``crs`` grid-mapping variable, band names as the
collection spells them (``B02``, or ``S2-L2A-B02`` for the STAC-based collections), extra
bands (``AOT``, ``WVP``, ``CLP``), no-data 65535 with or without ``_FillValue``, sometimes
CF ``scale_factor``. Values are hand-checkable: the demo's DN on a small window.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

import openeo_deepfeatures as odf

TEN_M = ("B02", "B03", "B04", "B08")
#: The date of the 65535 pixels: cloud-free in the demo window (dates 0 and 1 are cloudy).
NODATA_DATE = 3


def cdse_dataset(
    *,
    bands: Sequence[str] = (*TEN_M, "SCL"),
    names: str = "S2-L2A-{}",
    extra: Sequence[str] = ("AOT",),
    dates: int = 12,
    size: int = 20,
    nodata_pixels: int = 5,
    fill_value: int | None = 65535,
    scale: float | None = None,
) -> xr.Dataset:
    """A CDSE-style Dataset: ``names.format(band)`` variables, ``crs`` grid mapping, uint16.

    ``nodata_pixels`` pixels of the first reflectance band on :data:`NODATA_DATE` are 65535 (declared as
    ``_FillValue`` when ``fill_value`` is given). ``scale``: store reflectance as DN with a CF
    ``scale_factor`` (xarray decodes it on open).
    """
    demo = odf.load_demo_cube().isel(t=slice(0, dates), y=slice(0, size), x=slice(0, size))
    coords = {"t": demo["t"].values, "y": demo["y"].values, "x": demo["x"].values}
    dn = {band: demo.sel(bands=band).values.astype(np.uint16) for band in bands}
    first = next(b for b in bands if b != "SCL")
    dn[first][NODATA_DATE].reshape(-1)[np.arange(nodata_pixels) * 7] = 65535  # a clear date
    variables = {}
    for band in bands:
        name = names.format(band)
        if scale is not None and band != "SCL":  # reflectance, stored as DN with a CF scale
            values = np.where(dn[band] == 65535, np.nan, dn[band] * scale).astype(np.float32)
            var = xr.DataArray(values, dims=("t", "y", "x"), attrs={"long_name": band})
            var.encoding.update(scale_factor=scale, add_offset=0.0, dtype="uint16")
        else:
            var = xr.DataArray(dn[band], dims=("t", "y", "x"), attrs={"long_name": band})
        if fill_value is not None:
            var.encoding["_FillValue"] = np.uint16(fill_value)
        variables[name] = var
    for name in extra:
        variables[name] = xr.DataArray(
            np.full((dates, size, size), 150, np.uint16), dims=("t", "y", "x")
        )
    ds = xr.Dataset(
        variables, coords=coords, attrs={"description": "CDSE-style netCDF (test cube)"}
    )
    return ds.rio.write_crs(demo.rio.crs, grid_mapping_name="crs")


def reflectance(
    band: str, *, dates: int = 12, size: int = 20, nodata_pixels: int = 5
) -> np.ndarray:
    """The reflectance :func:`cdse_dataset` encodes for ``band`` (first band: with its no-data)."""
    demo = odf.load_demo_cube().isel(t=slice(0, dates), y=slice(0, size), x=slice(0, size))
    values = demo.sel(bands=band).values.astype(np.float64) / 10000.0
    if band == next(b for b in demo["bands"].values.tolist() if b != "SCL"):
        values[NODATA_DATE].reshape(-1)[np.arange(nodata_pixels) * 7] = np.nan
    return np.where(values == 0, np.nan, values)


def write_netcdf(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` as netCDF4 (what the CDSE backend returns)."""
    path = Path(path)
    ds.to_netcdf(path)
    return path
