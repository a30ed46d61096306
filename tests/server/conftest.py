"""A real HTTP server for the tests: uvicorn in a thread on a free localhost port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from openeo_deepfeatures.server import ServerConfig, create_app

TOKEN = "test-token"


@dataclass
class Server:
    url: str
    config: ServerConfig
    app: object
    uvicorn: uvicorn.Server
    thread: threading.Thread

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer basic//{self.config.token}"}

    def stop(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config: ServerConfig) -> Server:
    app = create_app(config)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return Server(f"http://127.0.0.1:{port}", config, app, server, thread)


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_netcdf) -> Iterator[Server]:
    """A server with the demo cube, one --data folder (a small netCDF cube) and UDFs allowed."""
    jobs = tmp_path_factory.mktemp("jobs")
    config = ServerConfig(data=(demo_netcdf.parent,), jobs=jobs, token=TOKEN, allow_udf=True)
    srv = start_server(config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def demo_netcdf(tmp_path_factory) -> Path:
    """A --data folder with one cube: 3 dates x 6 x 5 px of the demo cube, as netCDF."""
    import openeo_deepfeatures as odf

    folder = tmp_path_factory.mktemp("data")
    cube = odf.load_demo_cube().isel(t=slice(0, 3), y=slice(0, 6), x=slice(0, 5))
    path = folder / "demo_small.nc"
    cube.to_netcdf(path)
    return path
