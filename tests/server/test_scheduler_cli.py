"""``deepfeatures serve`` from the command line, and batch jobs on a dask.distributed cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from dask.distributed import LocalCluster, default_client

from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.server import ServerConfig, create_app

from .conftest import free_port, start_server

HERE = Path(__file__).resolve().parent
JOB = json.loads((HERE / "payload_examples" / "post_jobs" / "mean_ndvi.json").read_text())


def test_an_unreachable_scheduler_is_refused_before_serving(tmp_path):
    with pytest.raises(ProcessParameterInvalid, match="--scheduler"):
        create_app(ServerConfig(jobs=tmp_path, scheduler=f"tcp://127.0.0.1:{free_port()}"))


def test_batch_jobs_run_on_a_distributed_scheduler(tmp_path):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        before = cluster.scheduler.transition_counter
        srv = start_server(
            ServerConfig(jobs=tmp_path, token="t", scheduler=cluster.scheduler_address)
        )
        try:
            r = requests.post(f"{srv.url}/jobs", json=JOB, headers=srv.auth)
            url = r.headers["Location"]
            requests.post(f"{url}/results", headers=srv.auth)
            deadline = time.monotonic() + 120
            while requests.get(url, headers=srv.auth).json()["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert requests.get(url, headers=srv.auth).json()["status"] == "finished"
            assert cluster.scheduler.transition_counter > before  # the tasks ran there
        finally:
            srv.stop()
    with pytest.raises(ValueError, match="No clients found"):
        default_client()  # the server's client closed with it: later dask work stays local


def test_serve_command_starts_a_backend(tmp_path):
    port = free_port()
    cmd = [
        sys.executable, "-m", "openeo_deepfeatures.cli", "serve", "--port", str(port),
        "--jobs", str(tmp_path), "--token", "cli-token",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                caps = requests.get(f"{url}/", timeout=1).json()
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "deepfeatures serve did not answer"
                time.sleep(0.2)
        assert caps["api_version"] == "1.2.0"
        me = requests.get(f"{url}/me", headers={"Authorization": "Bearer basic//cli-token"})
        assert me.json()["user_id"] == "local"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"openEO backend at http://127.0.0.1:{port}  (token: cli-token)" in out
