"""The HTTP API itself: authentication, CORS, errors, stored processes, validation, results, jobs."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from pathlib import Path

import pytest
import requests
import xarray as xr

from openeo_deepfeatures.server import ServerConfig

from .conftest import start_server

HERE = Path(__file__).resolve().parent
MEAN_NDVI = json.loads((HERE / "payload_examples" / "post_result" / "mean_ndvi.json").read_text())


def graph(**nodes) -> dict:
    return {"process": {"process_graph": nodes}}


def load(bands=("B04", "B08"), collection="DEMO_S2") -> dict:
    return {
        "process_id": "load_collection",
        "arguments": {
            "id": collection,
            "spatial_extent": {
                "west": 5272000, "east": 5272100, "south": 2532900, "north": 2533000, "crs": 3035,
            },
            "temporal_extent": ["2015-08-01", "2015-08-12"],
            "bands": list(bands),
        },
    }  # fmt: skip


def save(node: str, fmt: str) -> dict:
    return {
        "process_id": "save_result",
        "arguments": {"data": {"from_node": node}, "format": fmt},
        "result": True,
    }


def assert_openeo_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert set(body) >= {"id", "code", "message"}
    assert "Traceback" not in body["message"]
    return body


def wait_for(url: str, auth: dict, statuses=("finished", "error", "canceled")) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = requests.get(url, headers=auth).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"{url} did not reach {statuses}")


# -- authentication and CORS -----------------------------------------------------------------
def test_basic_login_gives_the_token(server):
    good = base64.b64encode(f"anyone:{server.config.token}".encode()).decode()
    bad = base64.b64encode(b"anyone:wrong").decode()
    r = requests.get(f"{server.url}/credentials/basic", headers={"Authorization": f"Basic {good}"})
    assert r.json() == {"access_token": server.config.token}
    r = requests.get(f"{server.url}/credentials/basic", headers={"Authorization": f"Basic {bad}"})
    assert_openeo_error(r, 403, "CredentialsInvalid")
    assert_openeo_error(
        requests.get(f"{server.url}/credentials/basic"), 401, "AuthenticationRequired"
    )


def test_protected_endpoints_need_the_token(server):
    assert_openeo_error(requests.get(f"{server.url}/jobs"), 401, "AuthenticationRequired")
    wrong = {"Authorization": "Bearer basic//nope"}
    assert_openeo_error(requests.get(f"{server.url}/me", headers=wrong), 403, "TokenInvalid")
    r = requests.post(f"{server.url}/result", json=MEAN_NDVI)
    assert_openeo_error(r, 401, "AuthenticationRequired")
    assert requests.get(f"{server.url}/collections").status_code == 200  # public


def test_cors_lets_a_browser_hosted_editor_in(server):
    origin = "https://editor.openeo.org"
    preflight = requests.options(
        f"{server.url}/jobs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == origin
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    r = requests.get(f"{server.url}/", headers={"Origin": origin})
    assert r.headers["access-control-allow-origin"] == origin
    assert "OpenEO-Identifier" in r.headers["access-control-expose-headers"]


def test_capabilities_list_only_answered_endpoints(server):
    caps = requests.get(f"{server.url}/").json()
    assert caps["api_version"] == "1.2.0"
    routed = {(r.path, m) for r in server.app.routes for m in getattr(r, "methods", ())}
    listed = {(e["path"], m) for e in caps["endpoints"] for m in e["methods"]}
    assert listed <= routed, listed - routed
    for endpoint in caps["endpoints"]:
        path = endpoint["path"].replace("{collection_id}", "DEMO_S2")
        if "{" in path or "GET" not in endpoint["methods"] or path == "/credentials/basic":
            continue
        r = requests.get(f"{server.url}{path}", headers=server.auth)
        assert r.status_code == 200, (path, r.text)


# -- errors of bad graphs --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (graph(a={"process_id": "no_such_process", "arguments": {}, "result": True}), 400,
         "ProcessUnsupported"),
        (graph(a={"process_id": "add", "arguments": {"x": {"from_node": "b"}, "y": 1}},
               b={"process_id": "add", "arguments": {"x": {"from_node": "a"}, "y": 1},
                  "result": True}), 400, "ProcessGraphInvalid"),
        (graph(a={"process_id": "add", "arguments": {"x": 1, "y": 2}}), 400,
         "ProcessGraphInvalid"),
        (graph(a=load(collection="NOPE") | {"result": True}), 404, "CollectionNotFound"),
        (graph(a=load(bands=["B99"]) | {"result": True}), 400, "ProcessParameterInvalid"),
        (graph(a=load(), s=save("a", "PNG")), 400, "ProcessParameterInvalid"),
        ({"process": {}}, 400, "ProcessGraphMissing"),
        ({}, 400, "ProcessGraphMissing"),
    ],
)  # fmt: skip
def test_bad_graphs_are_openeo_errors(server, body, status, code):
    r = requests.post(f"{server.url}/result", json=body, headers=server.auth)
    assert_openeo_error(r, status, code)


def test_a_failing_upstream_process_says_which_node_without_a_traceback(server):
    """A process of openeo-processes-dask failing outside its openEO errors (here: ``ndvi``
    without ``red``/``nir`` on a cube whose bands have no common names) is an internal error,
    reported as JSON with the node."""
    ndvi = {"process_id": "ndvi", "arguments": {"data": {"from_node": "a"}}, "result": True}
    r = requests.post(f"{server.url}/result", json=graph(a=load(), n=ndvi), headers=server.auth)
    body = assert_openeo_error(r, 500, "Internal")
    assert "process 'ndvi' failed" in body["message"] and "node 'n'" in body["message"]


def test_malformed_json_is_a_bad_request(server):
    headers = {**server.auth, "Content-Type": "application/json"}
    r = requests.post(f"{server.url}/result", data="{not json", headers=headers)
    assert_openeo_error(r, 400, "BadRequest")


def test_unknown_paths_and_ids(server):
    assert_openeo_error(requests.get(f"{server.url}/nowhere"), 404, "NotFound")
    assert_openeo_error(requests.get(f"{server.url}/collections/NOPE"), 404, "CollectionNotFound")
    r = requests.get(f"{server.url}/jobs/0123abcd", headers=server.auth)
    assert_openeo_error(r, 404, "JobNotFound")
    r = requests.get(f"{server.url}/process_graphs/nope", headers=server.auth)
    assert_openeo_error(r, 404, "ProcessGraphNotFound")


def test_udfs_are_refused_unless_allowed(tmp_path):
    srv = start_server(ServerConfig(jobs=tmp_path, token="t"))  # allow_udf defaults to False
    try:
        udf = {
            "process_id": "run_udf",
            "arguments": {"data": [1, 2], "udf": "def f(x): return x", "runtime": "Python"},
            "result": True,
        }
        r = requests.post(f"{srv.url}/result", json=graph(u=udf), headers=srv.auth)
        body = assert_openeo_error(r, 400, "ProcessUnsupported")
        assert "run_udf" in body["message"]
    finally:
        srv.stop()


# -- synchronous results ---------------------------------------------------------------------
def test_sync_formats(server, tmp_path):
    ndvi = {
        "process_id": "ndvi",
        "arguments": {"data": {"from_node": "a"}, "red": "B04", "nir": "B08"},
    }
    r = requests.post(
        f"{server.url}/result", json=graph(a=load(), n=ndvi, s=save("n", "netCDF")),
        headers=server.auth,
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "application/netcdf"
    (tmp_path / "r.nc").write_bytes(r.content)
    with xr.open_dataset(tmp_path / "r.nc") as ds:
        assert dict(ds.sizes) == {"t": 2, "y": 5, "x": 5}
    r = requests.post(
        f"{server.url}/result", json=graph(a=load(), s=save("a", "ZARR")), headers=server.auth
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert "zarr.json" in archive.namelist()
    r = requests.post(
        f"{server.url}/result",
        json=graph(a={"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}),
        headers=server.auth,
    )
    assert r.status_code == 200 and r.json() == 3


# -- stored processes and validation ---------------------------------------------------------
def test_process_graph_store_round_trip(server):
    udp = json.loads(
        (HERE / "payload_examples" / "put_process_graphs" / "scaled_sum.json").read_text()
    )
    url = f"{server.url}/process_graphs/scaled_sum"
    assert requests.put(url, json=udp, headers=server.auth).status_code == 200
    assert requests.get(url, headers=server.auth).json()["process_graph"] == udp["process_graph"]
    listed = requests.get(f"{server.url}/process_graphs", headers=server.auth).json()
    assert [p["id"] for p in listed["processes"]] == ["scaled_sum"]
    call = {"process_id": "scaled_sum", "arguments": {"x": 1, "y": 2}, "result": True}
    r = requests.post(f"{server.url}/result", json=graph(c=call), headers=server.auth)
    assert r.json() == 6  # (1 + 2) * default factor 2
    assert requests.delete(url, headers=server.auth).status_code == 204
    assert_openeo_error(requests.get(url, headers=server.auth), 404, "ProcessGraphNotFound")
    r = requests.put(url, json={"process_graph": {}}, headers=server.auth)
    assert_openeo_error(r, 400, "ProcessGraphInvalid")


def test_validation_reports_without_running(server):
    ok = requests.post(f"{server.url}/validation", json=MEAN_NDVI["process"], headers=server.auth)
    assert ok.json() == {"errors": []}
    bad = {
        "process_graph": {
            "a": load(collection="NOPE"),
            "r": {
                "process_id": "reduce_dimension",
                "arguments": {
                    "data": {"from_node": "a"},
                    "dimension": "t",
                    "reducer": {"process_graph": {"m": {"process_id": "meen", "arguments": {},
                                                        "result": True}}},
                },
            },
            "s": {"process_id": "save_result", "arguments": {"data": {"from_node": "r"}},
                  "result": True},
        }
    }  # fmt: skip
    errors = requests.post(f"{server.url}/validation", json=bad).json()["errors"]
    assert sorted(e["code"] for e in errors) == [
        "CollectionNotFound",
        "ProcessParameterMissing",  # save_result's format
        "ProcessUnsupported",  # meen, in the callback
    ]


# -- batch jobs ------------------------------------------------------------------------------
def test_job_lifecycle_and_restart(server, tmp_path):
    auth = server.auth
    body = {"title": "mean NDVI", **MEAN_NDVI}
    r = requests.post(f"{server.url}/jobs", json=body, headers=auth)
    assert r.status_code == 201
    job_id = r.headers["OpenEO-Identifier"]
    job_url = r.headers["Location"]
    assert job_url == f"{server.url}/jobs/{job_id}"
    assert requests.get(job_url, headers=auth).json()["status"] == "created"
    assert_openeo_error(requests.get(f"{job_url}/results", headers=auth), 400, "JobNotFinished")
    r = requests.patch(job_url, json={"title": "renamed"}, headers=auth)
    assert r.status_code == 204
    assert requests.post(f"{job_url}/results", headers=auth).status_code == 202
    job = wait_for(job_url, auth)
    assert (job["status"], job["progress"], job["title"]) == ("finished", 100, "renamed")
    results = requests.get(f"{job_url}/results", headers=auth).json()
    assert results["type"] == "Collection" and results["openeo:status"] == "finished"
    [(name, asset)] = results["assets"].items()
    assert name == "result.tif" and asset["type"].startswith("image/tiff")
    data = requests.get(asset["href"], headers=auth).content
    assert len(data) == asset["file:size"]
    # signed URLs: a browser following the link sends no Authorization header
    assert requests.get(asset["href"]).content == data
    tampered = asset["href"].replace("signature=", "signature=0")
    assert_openeo_error(requests.get(tampered), 401, "AuthenticationRequired")
    logs = requests.get(f"{job_url}/logs", headers=auth).json()["logs"]
    assert [e["message"] for e in logs if e["level"] == "info"] == [
        "Job created.", "Job queued.", "Job started.", "Job finished."
    ]  # fmt: skip
    progress = [e["message"] for e in logs if e["level"] == "debug"]
    assert progress == [f"{p}% of the dask tasks done." for p in (25, 50, 75)]
    info = requests.get(f"{job_url}/logs?level=info", headers=auth).json()["logs"]
    assert all(e["level"] != "debug" for e in info) and len(info) == 4

    # a second server on the same folder (a restart) lists the job and serves its results
    again = start_server(ServerConfig(jobs=server.config.jobs, token="other"))
    try:
        listed = requests.get(f"{again.url}/jobs", headers=again.auth).json()["jobs"]
        assert {j["id"]: j["status"] for j in listed}[job_id] == "finished"
        href = requests.get(f"{again.url}/jobs/{job_id}/results", headers=again.auth).json()
        href = href["assets"]["result.tif"]["href"]
        assert requests.get(href, headers=again.auth).content == data
    finally:
        again.stop()
    assert requests.delete(job_url, headers=auth).status_code == 204
    assert_openeo_error(requests.get(job_url, headers=auth), 404, "JobNotFound")


def test_null_arguments_in_a_job_stay(server):
    """``spatial_extent: null`` (what the Python client sends without an extent) is an argument."""
    node = load(bands=["B04"])
    node["arguments"]["spatial_extent"] = None
    node["arguments"]["temporal_extent"] = ["2015-08-01", "2015-08-02"]
    body = graph(a=node, s=save("a", "netCDF"))
    job_url = requests.post(f"{server.url}/jobs", json=body, headers=server.auth).headers[
        "Location"
    ]
    stored = requests.get(job_url, headers=server.auth).json()["process"]["process_graph"]
    assert stored["a"]["arguments"]["spatial_extent"] is None
    requests.post(f"{job_url}/results", headers=server.auth)
    assert wait_for(job_url, server.auth)["status"] == "finished"


def test_failing_job_reports_the_error_and_leaves_no_results(server):
    body = graph(a=load(bands=["B99"]), s=save("a", "netCDF"))
    r = requests.post(f"{server.url}/jobs", json=body, headers=server.auth)
    job_url = r.headers["Location"]
    requests.post(f"{job_url}/results", headers=server.auth)
    assert wait_for(job_url, server.auth)["status"] == "error"
    last = requests.get(f"{job_url}/logs", headers=server.auth).json()["logs"][-1]
    assert last["level"] == "error" and last["code"] == "ProcessParameterInvalid"
    assert "B99" in last["message"]
    job_dir = server.config.jobs / "jobs" / r.headers["OpenEO-Identifier"]
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.json"]
    r = requests.get(f"{job_url}/results", headers=server.auth)
    assert_openeo_error(r, 400, "JobNotFinished")


def test_jobs_left_running_by_a_stopped_server_are_errors(tmp_path):
    folder = tmp_path / "jobs" / "abc123"
    folder.mkdir(parents=True)
    job = {"id": "abc123", "status": "running", "progress": 40, "process": MEAN_NDVI["process"],
           "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z", "logs": []}  # fmt: skip
    (folder / "job.json").write_text(json.dumps(job))
    srv = start_server(ServerConfig(jobs=tmp_path, token="t"))
    try:
        got = requests.get(f"{srv.url}/jobs/abc123", headers=srv.auth).json()
        assert got["status"] == "error"
        logs = requests.get(f"{srv.url}/jobs/abc123/logs", headers=srv.auth).json()["logs"]
        assert "stopped" in logs[-1]["message"]
    finally:
        srv.stop()


def test_json_output_of_a_cube(server):
    r = requests.post(
        f"{server.url}/result",
        json=graph(a=load(bands=["B04"]), s=save("a", "JSON")),
        headers=server.auth,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    cube = xr.DataArray.from_dict(r.json())
    assert cube.dims == ("t", "bands", "y", "x") and cube.shape == (2, 1, 5, 5)
    assert list(cube["bands"].values) == ["B04"]


# -- the execution policy --------------------------------------------------------------------
def test_save_result_stays_in_the_run_folder(server, tmp_path):
    node = save("a", "netCDF")
    node["arguments"]["options"] = {"filename": f"../../../../{tmp_path.name}/escaped"}
    r = requests.post(f"{server.url}/result", json=graph(a=load(), s=node), headers=server.auth)
    assert_openeo_error(r, 403, "PermissionDenied")
    assert not list(tmp_path.parent.glob("**/escaped.nc"))


@pytest.mark.parametrize(
    "url",
    [
        "/etc/passwd",  # a file outside the --data folders
        "file:///etc/hostname",
        "http://127.0.0.1:9/collection.json",  # not https, and a loopback address
    ],
)
def test_load_stac_reads_only_the_data_folders_and_public_https(server, url):
    node = {"process_id": "load_stac", "arguments": {"url": url}, "result": True}
    r = requests.post(f"{server.url}/result", json=graph(a=node), headers=server.auth)
    body = assert_openeo_error(r, 403, "PermissionDenied")
    assert url.split("://")[-1].split(":")[0] in body["message"]


def test_a_cube_in_the_data_folders_is_readable(server, demo_netcdf):
    node = load(collection="demo_small", bands=["B04"])
    node["arguments"]["spatial_extent"] = None
    r = requests.post(
        f"{server.url}/result", json=graph(a=node, s=save("a", "JSON")), headers=server.auth
    )
    assert r.status_code == 200, r.text
    assert xr.DataArray.from_dict(r.json()).shape == (2, 1, 6, 5)
