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
    """Read the (3 MB) file from memory into memory; chunk afterwards if asked.

    The file is opened as an in-memory HDF5 image, never by path: HDF5 refuses a second open
    of a file that is already open (for example lazily, by a user's ``open_dataset``), and
    no file handle is left for dask worker threads to share.
    """
    import netCDF4
    import rioxarray  # noqa: F401  (registers .rio)
    from xarray.backends.locks import HDF5_LOCK, NETCDFC_LOCK, combine_locks

    # netCDF-C/HDF5 are not thread-safe, and xarray locks only its array reads: the whole
    # read holds the locks xarray takes for its netCDF4 calls (a server's threads read the
    # demo while others read or write netCDF)
    image = demo_path().read_bytes()
    with combine_locks([NETCDFC_LOCK, HDF5_LOCK]):
        nc = netCDF4.Dataset(DEMO_FILE, mode="r", memory=image)
        try:
            store = xr.backends.NetCDF4DataStore(nc, lock=False)  # the lock is held already
            loaded = xr.open_dataset(store, decode_coords="all").load()
        finally:
            nc.close()
    return loaded.chunk(chunks) if chunks is not None else loaded


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
