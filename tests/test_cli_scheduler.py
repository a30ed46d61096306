"""``deepfeatures feature-cube --scheduler``: dask.distributed gives the same feature cube.

``--scheduler local`` starts an in-process ``LocalCluster``; ``--scheduler ADDRESS`` connects to
a running one (here ``LocalCluster(n_workers=1, threads_per_worker=1)`` with thread and with
process workers, over TCP). Input: 20 dates x 24 x 24 px of the demo cube, as netCDF and zarr.
"""

from __future__ import annotations

import dask
import dask.distributed
import numpy as np
import pytest
import xarray as xr
from distributed import LocalCluster, Scheduler

import openeo_deepfeatures as odf
from openeo_deepfeatures.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("input")
    dn = odf.load_demo_cube().isel(t=slice(40, 60), y=slice(0, 24), x=slice(0, 24))
    bands = dn.to_dataset(dim="bands")
    bands.to_netcdf(folder / "s2.nc")
    bands.to_zarr(folder / "s2.zarr", consolidated=False)
    return {"nc": str(folder / "s2.nc"), "zarr": str(folder / "s2.zarr")}


def features(path) -> np.ndarray:
    return xr.open_zarr(path, consolidated=False)["features"].values


@pytest.fixture(scope="module")
def plain(sources, tmp_path_factory) -> np.ndarray:
    """The run without a scheduler (dask's default threads)."""
    out = tmp_path_factory.mktemp("plain") / "f.zarr"
    assert main(["feature-cube", sources["nc"], "-o", str(out), "-q"]) == 0
    return features(out)


def running_schedulers() -> set:
    return {s for s in Scheduler._instances if s.status.name == "running"}


@pytest.fixture
def started(monkeypatch):
    """The clusters ``--scheduler local`` starts; any still running is closed afterwards."""
    clusters: list[LocalCluster] = []

    class Recorded(LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            clusters.append(self)

    monkeypatch.setattr(dask.distributed, "LocalCluster", Recorded)
    yield clusters
    for cluster in clusters:
        if cluster.status.name != "closed":
            cluster.close()


def test_plain_run(plain, sources, tmp_path):
    assert plain.shape == (20, 6, 24, 24) and plain.dtype == np.float32
    assert not np.isnan(plain).any()
    out = tmp_path / "f.zarr"
    assert main(["feature-cube", sources["zarr"], "-o", str(out), "-q"]) == 0
    np.testing.assert_array_equal(features(out), plain)  # zarr input, same features


def test_scheduler_local_equals_plain_run(plain, sources, tmp_path, started):
    before = set(Scheduler._instances)
    out = tmp_path / "f.zarr"
    assert main(["feature-cube", sources["nc"], "-o", str(out), "-q", "--scheduler", "local"]) == 0
    np.testing.assert_allclose(features(out), plain, rtol=0, atol=1e-6)
    used = [s for s in Scheduler._instances if s not in before]
    assert len(used) == 1 and used[0].transition_counter > 0  # the tasks ran on it
    with pytest.raises(ValueError, match="No clients found"):
        dask.distributed.default_client()


def test_scheduler_local_leaves_no_cluster_running(sources, tmp_path, started):
    before = running_schedulers()
    out = tmp_path / "f.zarr"
    assert main(["feature-cube", sources["nc"], "-o", str(out), "-q", "--scheduler", "local"]) == 0
    assert running_schedulers() - before == set()


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_scheduler_address_equals_plain_run(plain, sources, tmp_path, processes):
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=processes,
        protocol="tcp",
        dashboard_address=":0",
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        out = tmp_path / "f.zarr"
        argv = ["feature-cube", sources["nc"], "-o", str(out), "-q", "--scheduler", address]
        assert main(argv) == 0
        assert cluster.scheduler.transition_counter > 0  # the work went to this cluster
        assert cluster.status.name == "running"  # the command leaves the user's cluster alone
        assert len(cluster.scheduler.clients) <= 1  # and disconnected its client
    np.testing.assert_allclose(features(out), plain, rtol=0, atol=1e-6)


def test_unreachable_scheduler_leaves_no_output(sources, tmp_path, capsys):
    out = tmp_path / "f.zarr"
    argv = ["feature-cube", sources["nc"], "-o", str(out), "-q", "--scheduler", "tcp://127.0.0.1:9"]
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ProcessParameterInvalid" in err or "--scheduler" in err
    assert "tcp://127.0.0.1:9" in err
    assert not out.exists()
