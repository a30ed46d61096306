"""Embedded demo data: a real Sentinel-2 L2A time series (nrt 0.2.1, EUPL-1.2).

140 dates 2015-08-01..2021-01-01 of a 1 km2 forest in Romania on a 20 m grid (50 x 50 px,
EPSG:3035): B02, B03, B04, B08, B8A, B11 as uint16 digital numbers and SCL, plus the
Copernicus HRL tree-cover density 2018. Contains modified Copernicus Sentinel data.
"""

from __future__ import annotations

from importlib import resources

import xarray as xr

__all__ = ["DEMO_FILE", "demo_path", "load_demo_cube", "load_demo_tree_cover"]

DEMO_FILE = "demo_s2_romania.nc"


def demo_path():
    """Path of the packaged demo netCDF file."""
    return resources.files(__name__).joinpath(DEMO_FILE)


def _open(chunks: dict | None) -> xr.Dataset:
    import rioxarray  # noqa: F401  (registers .rio)

    with resources.as_file(demo_path()) as path:
        ds = xr.open_dataset(path, engine="netcdf4", decode_coords="all", chunks=chunks)
        return ds if chunks is not None else ds.load()


def load_demo_cube(*, chunks: dict | None = None) -> xr.DataArray:
    """The demo cube as DN ``(t, bands, y, x)`` uint16 with ``SCL``, real dates, EPSG:3035.

    ``chunks`` (e.g. ``{"t": 20}``) returns it dask-backed; by default it is loaded in memory.
    Convert to reflectance with :func:`openeo_deepfeatures.preprocess_s2`.
    """
    cube = _open(chunks)["s2_l2a"]
    cube.attrs.setdefault("nodata", 0)
    return cube


def load_demo_tree_cover() -> xr.DataArray:
    """Tree-cover density 2018 (percent, NaN = nodata) on the demo cube's grid."""
    return _open(None)["tree_cover_density"]
