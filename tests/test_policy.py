"""The execution policy: an untrusted graph stays inside its folders and fetches only what the
policy allows (no file escape, no server-side request forgery, bounded graphs), and interrupted
writes leave no temporary sibling behind.

Every escape is refused under the default policy (``run_process_graph`` without ``policy=``:
the working directory readable and writable, public https only) and allowed under a policy
that allows it; on refusal nothing is written, and the test servers see no request.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import openeo_deepfeatures as odf
from openeo_deepfeatures import cli
from openeo_deepfeatures.errors import OpenEOError, PermissionDenied, ProcessUnsupported
from openeo_deepfeatures.io import atomic_path
from openeo_deepfeatures.local import run_process_graph
from openeo_deepfeatures.policy import ExecutionPolicy, current_policy, use_policy

from .conftest import make_cube

IDENTITY_UDF = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube
"""
DEMO_NC = Path(odf.__file__).parent / "data" / "demo_s2_romania.nc"


def node(process_id, result=False, namespace=None, **arguments):
    out = {"process_id": process_id, "arguments": arguments}
    if namespace:
        out["namespace"] = namespace
    if result:
        out["result"] = True
    return out


def load_collection(collection_id="DEMO_S2", result=False, **arguments):
    arguments = {"spatial_extent": None, "temporal_extent": None} | arguments
    return node("load_collection", result, id=collection_id, **arguments)


def small_cube():
    return make_cube(bands=["B04", "B08"], shape=(2, 3, 3))


def double_udp(udp_id="double", body_process="apply"):
    """A UDP: ``data * 2``."""
    times_two = {"process_graph": {"m": node("multiply", True, x={"from_parameter": "x"}, y=2)}}
    return {
        "id": udp_id,
        "parameters": [
            {
                "name": "data",
                "description": "d",
                "schema": {"type": "object", "subtype": "datacube"},
            }
        ],
        "process_graph": {
            "a": node(body_process, True, data={"from_parameter": "data"}, process=times_two)
        },
    }


def calls(udp_id, namespace=None):
    """A graph calling ``udp_id`` on the parameter ``cube``."""
    return {"u": node(udp_id, True, namespace=namespace, data={"from_parameter": "cube"})}


def load_stac(url, **arguments):
    return {"l": node("load_stac", True, url=url, **arguments)}


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """``work`` (the working directory: readable and writable by default) and ``outside``."""
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    monkeypatch.chdir(work)
    return work, outside


def write_item(folder: Path, *, asset: Path | None = None) -> Path:
    """A STAC Item with one netCDF asset (3 x 3 px of the demo, B04 and B08, one date)."""
    cube = odf.load_demo_cube().isel(t=[0], x=slice(0, 3), y=slice(0, 3)).sel(bands=["B04", "B08"])
    data = asset or folder / "data.nc"
    if not data.exists():
        cube.isel(t=0).load().to_dataset("bands").to_netcdf(data)
    item = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "small",
        "geometry": None,
        "properties": {"datetime": str(cube["t"].values[0])[:19] + "Z"},
        "assets": {
            "data": {"href": data.as_uri(), "type": "application/netcdf", "roles": ["data"]}
        },
        "links": [],
    }
    path = folder / "item.json"
    path.write_text(json.dumps(item))
    return path


# --- a recording HTTP server --------------------------------------------------------------


class Server:
    """A loopback HTTP server in a thread that records the paths asked for."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.routes = routes
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                status, headers, body = outer.routes.get(self.path, (404, {}, b"not here"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(routes=None):
        servers.append(Server(dict(routes or {})))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def json_route(document) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(document).encode()


def redirect_route(url: str) -> tuple[int, dict[str, str], bytes]:
    return 302, {"Location": url}, b""


# --- the error ----------------------------------------------------------------------------


def test_permission_denied_is_an_openeo_403():
    exc = PermissionDenied(reason="no.")
    assert exc.code == "PermissionDenied" and exc.status_code == 403
    assert exc.to_dict() == {"code": "PermissionDenied", "message": "Permission denied: no."}
    assert isinstance(exc, OpenEOError)


# --- save_result: absolute paths, .., symlinks --------------------------------------------


def save(filename: str) -> dict:
    options = {"filename": filename}
    return {
        "s": node(
            "save_result", True, data={"from_parameter": "cube"}, format="netCDF", options=options
        )
    }


def all_files(*folders: Path) -> list[str]:
    return sorted(str(p.relative_to(f)) for f in folders for p in f.rglob("*"))


@pytest.mark.parametrize("escape", ["absolute", "dotdot", "symlink"])
def test_save_result_stays_inside_the_output_folder(folders, tmp_path, escape):
    work, outside = folders
    out = work / "out"
    out.mkdir()
    (out / "inside").mkdir()
    refused, allowed = {
        "absolute": (str(outside / "x"), str(out / "x")),
        "dotdot": ("../../outside/x", "inside/../x"),
        "symlink": ("away/x", "here/x"),
    }[escape]
    (out / "away").symlink_to(outside, target_is_directory=True)
    (out / "here").symlink_to(out / "inside", target_is_directory=True)
    before = all_files(tmp_path)
    with pytest.raises(PermissionDenied, match="not inside the output folder") as info:
        run_process_graph(save(refused), parameters={"cube": small_cube()}, output=out)
    assert refused in str(info.value) and str(out) in str(info.value)
    assert all_files(tmp_path) == before  # nothing written, no temporary sibling either
    item = run_process_graph(save(allowed), parameters={"cube": small_cube()}, output=out)
    written = Path(item["assets"]["data"]["href"])
    assert written.is_file() and out in written.parents


def test_nothing_is_writable_without_a_write_root(folders):
    with pytest.raises(PermissionDenied, match="no writable folder"):
        run_process_graph(save("x"), parameters={"cube": small_cube()}, policy=ExecutionPolicy())
    assert all_files(folders[0]) == []


def test_check_write_resolves_dotdot_inside_the_root(tmp_path):
    assert ExecutionPolicy(write_root=tmp_path).check_write(tmp_path / "a" / ".." / "b") == (
        tmp_path / "b"
    )
    with pytest.raises(PermissionDenied):
        ExecutionPolicy(write_root=tmp_path / "a").check_write(tmp_path / "a" / ".." / "b")
    with pytest.raises(PermissionDenied):
        ExecutionPolicy(write_root=tmp_path).check_write(tmp_path)  # the root itself


# --- reading: load_stac, its assets, UDP namespaces, UDF files, models --------------------


@pytest.mark.parametrize("escape", ["absolute", "dotdot", "symlink", "file-url"])
def test_load_stac_reads_only_readable_folders(folders, escape):
    work, outside = folders
    item = write_item(outside)
    (work / "link.json").symlink_to(item)
    url = {
        "absolute": str(item),
        "dotdot": "../outside/item.json",
        "symlink": "link.json",
        "file-url": item.as_uri(),
    }[escape]
    with pytest.raises(PermissionDenied, match="outside the readable folders") as info:
        run_process_graph(load_stac(url))  # the default policy: the working directory only
    assert url in str(info.value) and "--data" in str(info.value)
    cube = run_process_graph(load_stac(url), policy=ExecutionPolicy(read_roots=[work, outside]))
    assert cube.sizes == {"t": 1, "bands": 2, "y": 3, "x": 3}


def test_load_stac_assets_are_checked_too(folders):
    work, outside = folders
    data = outside / "data.nc"
    write_item(outside)  # writes data.nc there
    write_item(work, asset=data)  # an item inside, its asset outside
    with pytest.raises(PermissionDenied, match=r"asset 'data'.*outside the readable folders"):
        run_process_graph(load_stac("item.json"))
    cube = run_process_graph(load_stac("item.json"), policy=ExecutionPolicy.local([work, data]))
    assert cube.sizes["bands"] == 2


def test_registered_collections_stay_readable(folders):
    _, outside = folders
    path = outside / "mine.nc"
    small_cube().to_dataset("bands").to_netcdf(path)
    graph = {"l": load_collection("MINE", True)}
    got = run_process_graph(graph, collections={"MINE": path})  # the caller named the file
    assert got.sizes["bands"] == 2


def test_udp_namespace_folder_outside_is_refused(folders):
    _, outside = folders
    (outside / "double.json").write_text(json.dumps(double_udp()))
    cube = small_cube()
    with pytest.raises(PermissionDenied, match="namespace of process 'double'"):
        run_process_graph(calls("double", str(outside)), parameters={"cube": cube})
    with pytest.raises(PermissionDenied, match="outside the readable folders"):
        run_process_graph(calls("double", outside.as_uri()), parameters={"cube": cube})
    policy = ExecutionPolicy(read_roots=[outside])
    got = run_process_graph(calls("double", str(outside)), parameters={"cube": cube}, policy=policy)
    np.testing.assert_allclose(got.values, cube.values * 2)


def test_plain_namespace_names_stay_unsupported(folders):
    with pytest.raises(ProcessUnsupported, match="namespace 'user'"):
        run_process_graph(
            calls("double", "user"), parameters={"cube": small_cube()}, policy=ExecutionPolicy()
        )


def test_udf_file_and_model_outside_are_refused(folders):
    _, outside = folders
    udf = outside / "udf.py"
    udf.write_text(IDENTITY_UDF)
    graph = {
        "u": node("run_udf", True, data={"from_parameter": "cube"}, udf=str(udf), runtime="Python")
    }
    with pytest.raises(PermissionDenied, match="run_udf may not read"):
        run_process_graph(graph, parameters={"cube": small_cube()})
    got = run_process_graph(
        graph, parameters={"cube": small_cube()}, policy=ExecutionPolicy(read_roots=[outside])
    )
    assert got.sizes == small_cube().sizes
    model = outside / "model.onnx"
    model.write_bytes(b"not a model")
    embed = {
        "e": node("deepfeatures_embed", True, data={"from_parameter": "cube"}, model=str(model))
    }
    with pytest.raises(PermissionDenied, match="the model may not read"):
        run_process_graph(embed, parameters={"cube": small_cube()})
    with pytest.raises(OpenEOError, match=r"model\.onnx") as info:  # allowed: read, and not ONNX
        run_process_graph(
            embed, parameters={"cube": small_cube()}, policy=ExecutionPolicy.local([outside])
        )
    assert not isinstance(info.value, PermissionDenied)


def test_the_package_data_is_always_readable(folders):
    cube = run_process_graph({"l": load_collection("DEMO_S2", True)}, policy=ExecutionPolicy())
    assert cube.sizes["t"] == 140
    model = Path(odf.__file__).parent / "data" / "encoder" / "default.onnx"
    assert ExecutionPolicy().check_read(model) == model.resolve()


# --- URLs: schemes, loopback and private addresses, redirects -----------------------------


def test_loopback_udp_namespace_is_not_fetched(folders, serve):
    server = serve({"/double.json": json_route(double_udp())})
    cube = small_cube()
    graph = calls("double", server.url("/double.json"))
    with pytest.raises(PermissionDenied, match=r"scheme 'http' is not allowed"):
        run_process_graph(graph, parameters={"cube": cube})
    http_ok = ExecutionPolicy.local(url_schemes=("https", "http"))
    with pytest.raises(PermissionDenied, match=r"127\.0\.0\.1, a loopback, private"):
        run_process_graph(graph, parameters={"cube": cube}, policy=http_ok)
    localhost = calls("double", server.url("/double.json").replace("127.0.0.1", "localhost"))
    with pytest.raises(PermissionDenied, match="loopback, private"):
        run_process_graph(localhost, parameters={"cube": cube}, policy=http_ok)
    assert server.requests == []
    allowed = ExecutionPolicy.local(allowed_hosts=[server.host])
    got = run_process_graph(graph, parameters={"cube": cube}, policy=allowed)
    np.testing.assert_allclose(got.values, cube.values * 2)
    assert server.requests == ["/double.json"]


def test_loopback_load_stac_is_not_fetched(folders, serve):
    work, _ = folders
    item = json.loads(write_item(work).read_text())
    server = serve({"/item.json": json_route(item)})
    with pytest.raises(PermissionDenied):
        run_process_graph(load_stac(server.url("/item.json")))
    with pytest.raises(PermissionDenied, match="loopback"):
        run_process_graph(
            load_stac(server.url("/item.json")), policy=ExecutionPolicy.local(url_schemes=("http",))
        )
    assert server.requests == []
    private_ok = ExecutionPolicy.local(url_schemes=("https", "http"), allow_private_hosts=True)
    cube = run_process_graph(load_stac(server.url("/item.json")), policy=private_ok)
    assert cube.sizes["bands"] == 2 and server.requests == ["/item.json"]


@pytest.mark.parametrize("kind", ["udp", "load_stac"])
def test_redirect_to_loopback_is_not_followed(folders, serve, kind):
    work, _ = folders
    document = double_udp() if kind == "udp" else json.loads(write_item(work).read_text())
    forbidden = serve({"/doc.json": json_route(document)})
    allowed = serve({"/doc.json": redirect_route(forbidden.url("/doc.json"))})
    cube = small_cube()
    graph = (
        calls("double", allowed.url("/doc.json"))
        if kind == "udp"
        else load_stac(allowed.url("/doc.json"))
    )
    policy = ExecutionPolicy.local(allowed_hosts=[allowed.host])
    with pytest.raises(PermissionDenied, match=forbidden.host.replace(".", r"\.")):
        run_process_graph(graph, parameters={"cube": cube}, policy=policy)
    assert allowed.requests == ["/doc.json"] and forbidden.requests == []
    both = ExecutionPolicy.local(allowed_hosts=[allowed.host, forbidden.host])
    got = run_process_graph(graph, parameters={"cube": cube}, policy=both)
    assert forbidden.requests == ["/doc.json"]
    if kind == "udp":
        np.testing.assert_allclose(got.values, cube.values * 2)
    else:
        assert got.sizes["bands"] == 2


def test_udf_and_model_urls_are_checked(folders, serve):
    server = serve()
    udf = {
        "u": node(
            "run_udf",
            True,
            data={"from_parameter": "cube"},
            udf=server.url("/udf.py"),
            runtime="Python",
        )
    }
    embed = {
        "e": node(
            "deepfeatures_embed", True, data={"from_parameter": "cube"}, model=server.url("/m.onnx")
        )
    }
    for graph in (udf, embed):
        with pytest.raises(PermissionDenied, match="may not fetch"):
            run_process_graph(graph, parameters={"cube": small_cube()})
    assert server.requests == []


def test_model_download_goes_through_the_policy(folders, serve, tmp_path, monkeypatch):
    """``cached_model``: the kernel's download with the policy's opener (each redirect checked);
    a cached copy is refused too when the policy refuses its URL; a refusal leaves no file."""
    from openeo_deepfeatures.encoder.download import cached_model

    cache = tmp_path / "cache"
    monkeypatch.setenv("DEEPFEATURES_CACHE", str(cache))
    model = (Path(odf.__file__).parent / "data" / "encoder" / "default.onnx").read_bytes()
    server = serve({"/m.onnx": (200, {}, model)})
    allowed = ExecutionPolicy.local(url_schemes=("http",), allowed_hosts=[server.host])
    path = cached_model(server.url("/m.onnx"), policy=allowed)
    assert path.read_bytes() == model and path.parent == cache
    assert cached_model(server.url("/m.onnx"), policy=allowed) == path
    assert server.requests == ["/m.onnx"]  # downloaded once
    with pytest.raises(PermissionDenied, match="the model may not fetch"):
        cached_model(server.url("/m.onnx"), policy=ExecutionPolicy())
    forbidden = serve({"/m.onnx": (200, {}, model)})
    hop = serve({"/r.onnx": redirect_route(forbidden.url("/m.onnx"))})
    only_hop = ExecutionPolicy.local(url_schemes=("http",), allowed_hosts=[hop.host])
    with pytest.raises(PermissionDenied, match="the model may not fetch"):
        cached_model(hop.url("/r.onnx"), policy=only_hop)
    assert hop.requests == ["/r.onnx"] and forbidden.requests == []
    assert [p.name for p in cache.iterdir()] == [path.name]  # no partial download


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/udps/",
        "https://192.168.0.1/x.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/x.json",
        "https://[::ffff:127.0.0.1]/x.json",
        "https://[fe80::1]/x.json",
        "https://0.0.0.0/x.json",
        "https://100.64.0.1/x.json",
    ],
)
def test_private_and_reserved_addresses_are_refused_before_connecting(url):
    with pytest.raises(PermissionDenied, match="loopback, private, link-local or reserved"):
        ExecutionPolicy().check_url(url)
    assert ExecutionPolicy(allow_private_hosts=True).check_url(url) == url


def test_schemes(tmp_path):
    policy = ExecutionPolicy()
    for url in ("http://example.org/x", "ftp://example.org/x", "gopher://x/", "file:///etc/passwd"):
        with pytest.raises(PermissionDenied, match="url_schemes"):
            policy.check_url(url)
    assert ExecutionPolicy(url_schemes=("https", "http"), allow_private_hosts=True).check_url(
        "http://127.0.0.1:9/x"
    )
    with pytest.raises(PermissionDenied, match="not an absolute URL"):
        policy.check_url("https:///x")


def test_every_address_of_a_host_is_checked(monkeypatch):
    from openeo_deepfeatures import policy as policy_module

    monkeypatch.setattr(policy_module, "_resolve", lambda host, port: ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(PermissionDenied, match=r"resolves to 10\.0\.0\.7"):
        ExecutionPolicy().check_url("https://rebind.example/x.json")


def test_open_url_connects_to_the_addresses_it_checked(serve, monkeypatch):
    from openeo_deepfeatures import policy as policy_module

    server = serve({"/x": (200, {}, b"hello")})
    answers = iter([["127.0.0.1"]])  # one DNS answer; a second lookup would fail the test
    monkeypatch.setattr(policy_module, "_resolve", lambda host, port: next(answers))
    policy = ExecutionPolicy(url_schemes=("http",), allow_private_hosts=True)
    port = server.host.rpartition(":")[2]
    assert policy.read_url(f"http://pinned.invalid:{port}/x") == b"hello"
    assert server.requests == ["/x"]


def test_private_namespace_in_a_graph_sends_nothing(folders):
    with pytest.raises(PermissionDenied, match=r"10\.1\.2\.3"):
        run_process_graph(
            calls("double", "https://10.1.2.3/udps"), parameters={"cube": small_cube()}
        )


# --- limits: nodes, recursive UDPs, windows, arrays ---------------------------------------


def test_recursive_udp_is_stopped(folders):
    rec = double_udp("rec")
    rec["process_graph"] = {"r": node("rec", True, data={"from_parameter": "data"})}
    with pytest.raises(PermissionDenied, match="max_udp_depth=32"):
        run_process_graph(calls("rec"), parameters={"cube": small_cube()}, udps={"rec": rec})


def test_udp_nesting_up_to_the_limit(folders):
    outer = double_udp("outer")
    outer["process_graph"] = {"r": node("middle", True, data={"from_parameter": "data"})}
    middle = double_udp("middle")
    middle["process_graph"] = {"r": node("double", True, data={"from_parameter": "data"})}
    udps = {"outer": outer, "middle": middle, "double": double_udp()}
    cube = small_cube()
    run = {"parameters": {"cube": cube}, "udps": udps}
    with pytest.raises(PermissionDenied, match="nested 3 deep"):
        run_process_graph(calls("outer"), **run, policy=ExecutionPolicy(max_udp_depth=2))
    got = run_process_graph(calls("outer"), **run, policy=ExecutionPolicy(max_udp_depth=3))
    np.testing.assert_allclose(got.values, cube.values * 2)


def test_graph_nodes_are_limited_callbacks_included(folders):
    graph = {
        "u": node(
            "apply",
            True,
            data={"from_parameter": "cube"},
            process=double_udp()["process_graph"]["a"]["arguments"]["process"],
        )
    }
    cube = small_cube()
    with pytest.raises(PermissionDenied, match="max_nodes=1"):
        run_process_graph(graph, parameters={"cube": cube}, policy=ExecutionPolicy(max_nodes=1))
    got = run_process_graph(graph, parameters={"cube": cube}, policy=ExecutionPolicy(max_nodes=2))
    np.testing.assert_allclose(got.values, cube.values * 2)


def neighborhood(overlap_x: int) -> dict:
    identity = {"process_graph": {"m": node("multiply", True, x={"from_parameter": "data"}, y=1)}}
    size = [{"dimension": d, "value": 4, "unit": "px"} for d in ("x", "y")]
    overlap = [{"dimension": "x", "value": overlap_x, "unit": "px"}]
    return {
        "n": node(
            "apply_neighborhood",
            True,
            data={"from_parameter": "cube"},
            process=identity,
            size=size,
            overlap=overlap,
        )
    }


def test_oversize_window_is_refused(folders):
    cube = make_cube(bands=["B04"], shape=(1, 4, 4))
    with pytest.raises(PermissionDenied, match=r"10,004 cells along 'x'.*max_window=8,192"):
        run_process_graph(neighborhood(5000), parameters={"cube": cube})
    got = run_process_graph(
        neighborhood(5000), parameters={"cube": cube}, policy=ExecutionPolicy(max_window=10_004)
    )
    np.testing.assert_allclose(got.values, cube.values)
    with pytest.raises(PermissionDenied, match="one window holds"):
        run_process_graph(
            neighborhood(2), parameters={"cube": cube}, policy=ExecutionPolicy(max_array_bytes=100)
        )


def test_oversize_array_is_refused_before_it_is_made(folders):
    huge = {"a": node("array_create", True, data=[1.5], repeat=10**10)}
    with pytest.raises(PermissionDenied, match=r"80,000,000,000 bytes.*max_array_bytes"):
        run_process_graph(huge)  # 80 GB: never allocated
    small = {"a": node("array_create", True, data=[1.5], repeat=1000)}
    assert len(run_process_graph(small)) == 1000
    with pytest.raises(PermissionDenied, match="max_array_bytes=1,000"):
        run_process_graph(small, policy=ExecutionPolicy(max_array_bytes=1000))


def test_array_limit_applies_to_each_node_result(folders):
    graph = {"l": load_collection("DEMO_S2", True)}
    with pytest.raises(PermissionDenied, match="process 'load_collection': a chunk of its result"):
        run_process_graph(graph, policy=ExecutionPolicy(max_array_bytes=10_000))


# --- UDFs ---------------------------------------------------------------------------------


def test_udfs_off_by_policy_or_argument(folders):
    code = IDENTITY_UDF
    graph = {
        "u": node("run_udf", True, data={"from_parameter": "cube"}, udf=code, runtime="Python")
    }
    run = {"parameters": {"cube": small_cube()}}
    for kwargs in (
        {"policy": ExecutionPolicy(allow_udf=False)},
        {"allow_udf": False, "policy": ExecutionPolicy()},
    ):
        with pytest.raises(ProcessUnsupported, match="run_udf is disabled"):
            run_process_graph(graph, **run, **kwargs)
    assert run_process_graph(graph, **run, policy=ExecutionPolicy()).sizes == small_cube().sizes


def test_current_policy_is_unrestricted_outside_a_run():
    policy = ExecutionPolicy(max_nodes=7)
    with use_policy(policy):
        assert current_policy() is policy
    outside = current_policy()
    assert outside is not policy and outside.max_nodes > 10**9 and outside.allow_private_hosts


# --- deepfeatures run ---------------------------------------------------------------------


def test_cli_run_builds_the_policy(folders, serve, capsys):
    work, outside = folders
    item = write_item(outside)
    graph = work / "graph.json"
    graph.write_text(json.dumps({"process_graph": load_stac(str(item))}))
    assert cli.main(["run", str(graph), "-q"]) == 2
    assert "PermissionDenied" in capsys.readouterr().err
    assert cli.main(["run", str(graph), "-q", "--data", str(outside)]) == 0
    # save_result outside -o
    escape = {
        "process_graph": {
            "l": load_collection("DEMO_S2", temporal_extent=["2018-01-01", "2018-02-01"]),
            **{
                "s": node(
                    "save_result",
                    True,
                    data={"from_node": "l"},
                    format="netCDF",
                    options={"filename": "../escaped"},
                )
            },
        }
    }
    graph.write_text(json.dumps(escape))
    assert cli.main(["run", str(graph), "-q", "-o", str(work / "out")]) == 2
    assert "not inside the output folder" in capsys.readouterr().err
    assert not (work / "escaped.nc").exists()
    # a UDP from a loopback server
    server = serve({"/double.json": json_route(double_udp())})
    udp_graph = {
        "process_graph": {
            "l": load_collection(
                "DEMO_S2",
                bands=["B04"],
                temporal_extent=["2018-01-01", "2018-02-01"],
            ),
            "u": node(
                "double", True, namespace=server.url("/double.json"), data={"from_node": "l"}
            ),
        }
    }
    graph.write_text(json.dumps(udp_graph))
    assert cli.main(["run", str(graph), "-q"]) == 2
    assert server.requests == []
    capsys.readouterr()
    assert cli.main(["run", str(graph), "-q", "--allow-url-host", server.host]) == 0
    assert server.requests == ["/double.json"]
    assert cli.main(["run", str(graph), "-q", "--allow-http", "--allow-private-urls"]) == 0


# --- interrupted writes: temporary siblings ------------------------------------------------


def siblings(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_siblings_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    from openeo_deepfeatures.io import _host_tag

    target = tmp_path / "cube.nc"
    stale = tmp_path / f".cube.nc.tmp-{dead_pid()}-{_host_tag()}-0123abcd"
    stale_trash = tmp_path / f".cube.nc.trash-{dead_pid()}-{_host_tag()}-x_y1"
    live = tmp_path / f".cube.nc.tmp-{os.getppid()}-{_host_tag()}-0123abcd"  # our parent lives
    other_host = tmp_path / f".cube.nc.tmp-{dead_pid()}-ffffff-0123abcd"
    other_target = tmp_path / f".other.nc.tmp-{dead_pid()}-{_host_tag()}-0123abcd"
    legacy = tmp_path / ".cube.nc.tmp-0123abcd"  # no owner: not ours to judge
    for path in (stale, live, other_host, other_target, legacy):
        path.write_text("partial")
    (stale_trash / "cube.nc").mkdir(parents=True)
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(f".cube.nc.tmp-{os.getpid()}-{_host_tag()}-")
        tmp.write_text("done")
    assert not stale.exists() and not stale_trash.exists()
    assert live.exists() and other_host.exists() and other_target.exists() and legacy.exists()
    assert target.read_text() == "done"


def start_write(out: Path) -> subprocess.Popen:
    """``deepfeatures indices compute`` on the demo cube, one date per chunk (a few seconds)."""
    args = [
        "indices",
        "compute",
        str(DEMO_NC),
        "-o",
        str(out),
        "--preprocess",
        "--chunks",
        "t=1",
        "-q",
    ]
    return subprocess.Popen([sys.executable, "-m", "openeo_deepfeatures.cli", *args])


def wait_for_sibling(proc: subprocess.Popen, folder: Path, timeout: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = siblings(folder)
        if found and any((folder / found[0]).rglob("c*")):  # chunks are being written
            return found
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no temporary sibling seen while writing (exit code {proc.poll()})")


@pytest.mark.slow
def test_sigkilled_write_then_rerun_leaves_one_output_and_no_sibling(tmp_path):
    out = tmp_path / "si.zarr"
    proc = start_write(out)
    wait_for_sibling(proc, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and len(siblings(tmp_path)) == 1  # what a killed run leaves
    rerun = start_write(out)
    assert rerun.wait(timeout=600) == 0
    assert sorted(os.listdir(tmp_path)) == ["si.stac.json", "si.zarr"]
    assert odf.io.open_cube(out).sizes["t"] == 140


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_remove_the_sibling_at_once(tmp_path, signum):
    out = tmp_path / "si.zarr"
    proc = start_write(out)
    wait_for_sibling(proc, tmp_path)
    proc.send_signal(signum)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert os.listdir(tmp_path) == []


def test_upstream_io_processes_do_not_run():
    from openeo_deepfeatures.local import default_registry
    from openeo_deepfeatures.local.registry import Process

    registry = default_registry()
    fetched = []
    registry.add(Process("load_url", None, lambda **kw: fetched.append(kw), upstream=True))
    graph = {"l": node("load_url", True, url="https://example.org/x.tif", format="GTiff")}
    with pytest.raises(PermissionDenied, match="'load_url' reads or writes"):
        run_process_graph(graph, registry=registry)
    assert fetched == []
