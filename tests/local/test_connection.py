"""LocalConnection: openEO client code runs on the deepfeatures executor."""

from __future__ import annotations

import numpy as np
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.local.connection import LocalConnection


def test_demo_collection_through_the_client(tmp_path):
    con = LocalConnection(output=tmp_path)
    meta = con.describe_collection("DEMO_S2")
    assert meta["cube:dimensions"]["bands"]["values"][:2] == ["B02", "B03"]
    assert meta["cube:dimensions"]["x"]["reference_system"] == 3035
    west, south, east, north = meta["extent"]["spatial"]["bbox"][0]
    assert 22 < west < east < 23 and 45 < south < north < 46  # WGS84, as STAC wants
    cube = con.load_collection(
        "DEMO_S2", bands=["B04", "B08"], temporal_extent=["2018-05-01", "2018-06-01"]
    )
    assert cube.metadata.band_names == ["B04", "B08"]
    got = cube.ndvi(red="B04", nir="B08").execute()
    demo = odf.load_demo_cube().sel(t=slice("2018-05-01", "2018-05-31")).astype("float64")
    nir, red = demo.sel(bands="B08").values, demo.sel(bands="B04").values
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(got.values, (nir - red) / (nir + red), rtol=1e-6)


def test_folder_collections_and_download(tmp_path):
    demo = odf.load_demo_cube().sel(bands=["B04", "B08"]).isel(t=slice(0, 3))
    folder = tmp_path / "collections"
    folder.mkdir()
    path = folder / "small.nc"
    demo.to_dataset(dim="bands").to_netcdf(path)
    con = LocalConnection(folder)
    assert str(path) in [c["id"] for c in con.list_collections()]
    cube = con.load_collection(str(path), bands=["B08"])
    out = tmp_path / "out" / "b08.nc"
    out.parent.mkdir()
    assert cube.download(out) is None
    assert sorted(p.name for p in out.parent.iterdir()) == ["b08.nc"]  # nothing else left
    np.testing.assert_array_equal(xr.open_dataarray(out).values, demo.sel(bands=["B08"]).values)
    tif = cube.filter_temporal("2015-01-01", "2015-09-01").reduce_dimension("t", reducer="max")
    data = tif.download(format="GTiff")
    assert data[:4] in (b"II*\x00", b"MM\x00*")
