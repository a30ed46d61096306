"""The Web Editor's own client library, @openeo/js-client (npm), against the server from node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rioxarray

import openeo_deepfeatures as odf

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "webeditor" / "jsclient_check.mjs"
INSTALL_HINT = (
    "run `bash scripts/setup_test_tools.sh` (npm ci --prefix webeditor; needs Node.js >= 18)"
)


@pytest.fixture(scope="module")
def report(server, tmp_path_factory):
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"`node` is not on PATH: install Node.js, then {INSTALL_HINT}")
    if not (ROOT / "webeditor" / "node_modules" / "@openeo" / "js-client").is_dir():
        pytest.fail(f"webeditor/node_modules/@openeo/js-client is missing: {INSTALL_HINT}")
    out = tmp_path_factory.mktemp("js") / "mean_ndvi.tif"
    args = [node, str(SCRIPT), server.url, "editor", server.config.token, str(out), "DEMO_S2"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), out


def test_listing_through_js_client(report, server):
    import requests

    info, _ = report
    assert info["api_version"] == "1.2.0"
    assert info["can_compute"] and info["can_batch"]
    assert info["collections"] == ["DEMO_S2", "demo_small"]
    assert info["bands"] == [str(b) for b in odf.load_demo_cube()["bands"].values]
    assert info["processes"] == len(requests.get(f"{server.url}/processes").json()["processes"])
    assert info["has_deepfeatures"]
    assert info["validation_errors"] == []


def test_sync_result_through_js_client(report):
    info, path = report
    assert info["result_type"].startswith("image/tiff")
    got = rioxarray.open_rasterio(path).squeeze("band", drop=True)
    dn = odf.load_demo_cube().sel(
        bands=["B04", "B08"],
        x=slice(5272000, 5272100),
        y=slice(2533000, 2532900),
        t=slice("2015-08-01", "2015-08-11"),
    )
    red, nir = (dn.sel(bands=b).astype(np.float64) for b in ("B04", "B08"))
    expected = ((nir - red) / (nir + red)).mean("t")
    assert got.shape == expected.shape == (5, 5)
    np.testing.assert_allclose(got.values, expected.values, rtol=1e-6)
    np.testing.assert_allclose(got["x"].values, expected["x"].values)
