"""End to end with the real openEO Python client against ``deepfeatures serve`` over HTTP."""

from __future__ import annotations

import numpy as np
import openeo
import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures import client
from openeo_deepfeatures.features import feature_cube

DATES = 4
EXTENT_PX = 16  # y, x


@pytest.fixture(scope="module")
def con(server) -> openeo.Connection:
    return openeo.connect(server.url).authenticate_basic("me", server.config.token)


@pytest.fixture(scope="module")
def encoder():
    return odf.load_encoder()


@pytest.fixture(scope="module")
def small_dn() -> xr.DataArray:
    return odf.load_demo_cube().isel(
        t=slice(0, DATES), y=slice(0, EXTENT_PX), x=slice(0, EXTENT_PX)
    )


def _extents(dn: xr.DataArray) -> dict:
    times = odf.load_demo_cube()["t"].values
    xs, ys = dn["x"].values, dn["y"].values
    half = 10.0  # half a 20 m pixel: the bbox covers the pixel centres
    return {
        "temporal_extent": [str(times[0])[:10], str(times[DATES])[:10]],
        "spatial_extent": {
            "west": float(xs.min()) - half,
            "east": float(xs.max()) + half,
            "south": float(ys.min()) - half,
            "north": float(ys.max()) + half,
            "crs": 3035,
        },
    }


@pytest.fixture(scope="module")
def native(small_dn, encoder) -> xr.DataArray:
    return feature_cube(small_dn, model=encoder).compute()


@pytest.fixture(scope="module")
def features_cube(con, small_dn, encoder):
    cube = con.load_collection("DEMO_S2", **_extents(small_dn))
    return client.feature_cube(cube, str(encoder.path))


def test_listings(con):
    ids = [c["id"] for c in con.list_collections()]
    assert ids[0] == "DEMO_S2" and "demo_small" in ids
    meta = con.describe_collection("DEMO_S2")
    assert meta["cube:dimensions"]["bands"]["values"] == [
        str(b) for b in odf.load_demo_cube()["bands"].values
    ]
    processes = {p["id"] for p in con.list_processes()}
    assert {"load_collection", "save_result", "apply_neighborhood", "ndvi"} <= processes
    assert {"deepfeatures_feature_cube", "deepfeatures_spectral_indices"} <= processes
    assert con.describe_account()["user_id"] == "local"


def test_sync_download_equals_native_api(features_cube, native, tmp_path):
    path = tmp_path / "features.nc"
    features_cube.download(path, format="netCDF")
    got = _feature_array(path)
    assert got.shape == native.transpose(*got.dims).shape
    np.testing.assert_allclose(got.values, native.transpose(*got.dims).values, atol=1e-5)


def _feature_array(path) -> xr.DataArray:
    ds = xr.open_dataset(path)
    names = [v for v in ds.data_vars if {"y", "x"} <= set(ds[v].dims)]
    assert len(names) == 1, names
    arr = ds[names[0]].load()
    ds.close()
    return arr.rename({d: "bands" for d in arr.dims if d in ("band",)})


def test_batch_job_equals_native_api(features_cube, native, tmp_path, con):
    job = features_cube.create_job(title="features", out_format="netCDF")
    assert job.status() == "created"
    job.start_and_wait(max_poll_interval=0.5, soft_error_max=0, print=lambda *a: None)
    assert job.status() == "finished"
    results = job.get_results()
    files = results.download_files(tmp_path)
    data = [f for f in files if f.suffix == ".nc"]
    assert len(data) == 1, files
    got = _feature_array(data[0])
    np.testing.assert_allclose(got.values, native.transpose(*got.dims).values, atol=1e-5)
    logs = job.logs()
    assert [entry["message"] for entry in logs][-1] == "Job finished."
    assert any(j["id"] == job.job_id for j in con.list_jobs())
