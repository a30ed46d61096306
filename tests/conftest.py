"""Shared fixtures: a synthetic-cube factory with hand-checkable values, the demo cube."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.policy import ExecutionPolicy

# tiny training cubes and briefly trained models, for tests/training and tests/encoder alike
pytest_plugins = ["tests.training.fixtures"]

ALL_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]


def tmp_policy(*, loopback: bool = False, **settings) -> ExecutionPolicy:
    """The policy for tests whose graphs read their own temporary files (pytest's temporary
    folders) and, with ``loopback``, fetch from their own servers on 127.0.0.1 over http."""
    if loopback:
        settings = {"url_schemes": ("https", "http"), "allow_private_hosts": True, **settings}
    return ExecutionPolicy.local(read_roots=[Path(tempfile.gettempdir()), Path.cwd()], **settings)


def make_cube(
    values: dict[str, float | np.ndarray] | None = None,
    *,
    bands: list[str] = ALL_BANDS,
    shape: tuple[int, int, int] = (3, 4, 5),
    seed: int = 0,
    low: float = 0.01,
    high: float = 0.8,
    band_dim: str = "bands",
    time_dim: str = "t",
    start: str = "2021-06-01",
) -> xr.DataArray:
    """A reflectance cube (t, bands, y, x): random in [low, high) or the given per-band values."""
    rng = np.random.default_rng(seed)
    t, y, x = shape
    data = rng.uniform(low, high, size=(t, len(bands), y, x)).astype(np.float32)
    for label, value in (values or {}).items():
        data[:, bands.index(label)] = value
    return xr.DataArray(
        data,
        dims=(time_dim, band_dim, "y", "x"),
        coords={
            time_dim: pd.date_range(start, periods=t, freq="5D"),
            band_dim: bands,
            "y": 1000.0 - 20.0 * np.arange(y),
            "x": 500.0 + 20.0 * np.arange(x),
        },
        name="reflectance",
    )


@pytest.fixture
def cube_factory():
    return make_cube


@pytest.fixture(scope="session")
def demo_dn() -> xr.DataArray:
    return odf.load_demo_cube()


@pytest.fixture(scope="session")
def demo_reflectance(demo_dn) -> xr.DataArray:
    return odf.preprocess_s2(demo_dn)


@pytest.fixture(scope="session")
def shared_dir():
    """``../shared`` beside the repository (CI always has it): fail loudly when it is missing."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not (path / "openeo-processes").is_dir():
        pytest.fail(f"{path} is missing: the openEO specs and test data live in ../shared")
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Python sockets only to loopback: a schema fetch or a remote catalog fails the test."""
    real_connect = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            pytest.fail(f"a test tried to reach the network: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
