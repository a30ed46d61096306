"""The local executor: graphs run correctly, each upstream defect fixed, numpy references."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.errors import (
    CollectionNotFound,
    NoDataAvailable,
    ProcessGraphInvalid,
    ProcessParameterInvalid,
    ProcessParameterMissing,
    ProcessUnsupported,
)
from openeo_deepfeatures.local import run_process_graph
from openeo_deepfeatures.policy import ExecutionPolicy


def node(process_id, result=False, namespace=None, **arguments):
    out = {"process_id": process_id, "arguments": arguments}
    if namespace:
        out["namespace"] = namespace
    if result:
        out["result"] = True
    return out


def callback(process_id, **arguments):
    return {"process_graph": {"r": node(process_id, result=True, **arguments)}}


P = {"from_parameter": "data"}
DEMO_BANDS = ["B04", "B08", "SCL"]


@pytest.fixture(scope="module")
def ndvi_reference():
    cube = odf.load_demo_cube().sel(bands=DEMO_BANDS)
    return odf.compute_indices(odf.preprocess_s2(cube), ["NDVI"])


def demo_ndvi_nodes(**load_args):
    load_args = {"spatial_extent": None, "temporal_extent": None} | load_args
    return {
        "load": node("load_collection", id="DEMO_S2", bands=DEMO_BANDS, **load_args),
        "pre": node(
            "deepfeatures_preprocess_s2", namespace="deepfeatures", data={"from_node": "load"}
        ),
        "si": node("deepfeatures_spectral_indices", data={"from_node": "pre"}, indices=["NDVI"]),
    }


def test_pipeline_matches_native_api(ndvi_reference):
    nodes = demo_ndvi_nodes()
    nodes["red"] = node(
        "reduce_dimension",
        result=True,
        data={"from_node": "si"},
        dimension="t",
        reducer=callback("median", data=P),
    )
    got = run_process_graph({"process_graph": nodes}).compute()
    np.testing.assert_allclose(
        got.values, ndvi_reference.median("t").values, rtol=1e-6, equal_nan=True
    )


def test_callback_called_per_group_is_fresh_each_time(ndvi_reference):
    # upstream caches a callback node's result: every group would get the first group's value
    nodes = demo_ndvi_nodes()
    nodes["agg"] = node(
        "aggregate_temporal_period",
        result=True,
        data={"from_node": "si"},
        period="year",
        reducer=callback("max", data=P),
    )
    got = run_process_graph(nodes).compute()
    ref = ndvi_reference.groupby("t.year").max("t")
    assert got.sizes["t"] == ref.sizes["year"] == 7  # 2015 .. 2021-01-01
    np.testing.assert_allclose(
        got.transpose("t", "bands", "y", "x").values,
        ref.transpose("year", "bands", "y", "x").values,
        equal_nan=True,
    )
    assert not np.allclose(got.isel(t=0).values, got.isel(t=1).values, equal_nan=True)


def test_nested_parameter_references_and_top_level_parameters(ndvi_reference):
    x = odf.load_demo_cube()["x"].values
    y = odf.load_demo_cube()["y"].values
    extent = {
        "west": {"from_parameter": "west"},
        "east": float(x[9] + 10),
        "south": float(y[19] - 10),
        "north": float(y[0] + 10),
        "crs": 3035,
    }
    nodes = demo_ndvi_nodes(
        spatial_extent=extent, temporal_extent=[{"from_parameter": "start"}, None]
    )
    nodes["si"]["result"] = True
    got = run_process_graph(
        nodes, parameters={"west": float(x[0] - 10), "start": "2019-01-01"}
    ).compute()
    ref = ndvi_reference.sel(t=slice("2019-01-01", None)).isel(x=slice(0, 10), y=slice(0, 20))
    np.testing.assert_allclose(got.values, ref.values, equal_nan=True)


# apply() callback multiplying each value by the parameter `factor` of the enclosing graph
SCALE_BY_FACTOR = {
    "process_graph": {
        "m": node(
            "multiply", result=True, x={"from_parameter": "x"}, y={"from_parameter": "factor"}
        )
    }
}


def test_callback_sees_parent_scope():
    # a parameter of the graph used inside a callback: apply(multiply(x, factor))
    cube = _cube()
    nodes = {
        "a": node(
            "apply",
            result=True,
            data={"from_parameter": "cube"},
            process=SCALE_BY_FACTOR,
        ),
    }
    got = run_process_graph(nodes, parameters={"factor": 10.0, "cube": cube})
    np.testing.assert_allclose(got.values, cube.values * 10.0, rtol=1e-6)


UDP = {
    "id": "scaled_ndvi",
    "parameters": [
        {
            "name": "data",
            "description": "cube",
            "schema": {"type": "object", "subtype": "datacube"},
        },
        {
            "name": "factor",
            "description": "scale",
            "schema": {"type": "number"},
            "default": 2.0,
            "optional": True,
        },
    ],
    "process_graph": {
        "si": node(
            "deepfeatures_spectral_indices", data={"from_parameter": "data"}, indices=["NDVI"]
        ),
        "ap": node(
            "apply",
            result=True,
            data={"from_node": "si"},
            process=SCALE_BY_FACTOR,
        ),
    },
}


def _cube():
    from tests.conftest import make_cube

    return make_cube(bands=["B04", "B08"], shape=(3, 2, 2))


def _expected_ndvi(cube):
    return odf.compute_indices(cube, ["NDVI"])


@pytest.mark.parametrize("factor", [None, 5.0])
def test_udp_as_result_node_with_defaults_and_params_in_callbacks(factor):
    cube = _cube()
    args = {"data": {"from_parameter": "cube"}} | ({"factor": factor} if factor else {})
    graph = {"u": node("scaled_ndvi", result=True, **args)}
    got = run_process_graph(graph, parameters={"cube": cube}, udps={"scaled_ndvi": UDP})
    np.testing.assert_allclose(got.values, _expected_ndvi(cube).values * (factor or 2.0), rtol=1e-6)


def test_udp_inside_reducer_and_nested(tmp_path):
    cube = _cube()
    inner = {
        "id": "my_mean",
        "parameters": [{"name": "values", "description": "v", "schema": {"type": "array"}}],
        "process_graph": {"m": node("mean", result=True, data={"from_parameter": "values"})},
    }
    (tmp_path / "my_mean.json").write_text(json.dumps(inner))
    outer = {
        "id": "mean_of_scaled",
        "parameters": [
            {
                "name": "data",
                "description": "d",
                "schema": {"type": "object", "subtype": "datacube"},
            }
        ],
        "process_graph": {
            "s": node("scaled_ndvi", data={"from_parameter": "data"}, factor=3.0),
            "r": node(
                "reduce_dimension",
                result=True,
                data={"from_node": "s"},
                dimension="t",
                reducer={
                    "process_graph": {
                        "u": node(
                            "my_mean",
                            result=True,
                            namespace=str(tmp_path),
                            values={"from_parameter": "data"},
                        )
                    }
                },
            ),
        },
    }
    graph = {"u": node("mean_of_scaled", result=True, data={"from_parameter": "cube"})}
    got = run_process_graph(
        graph,
        parameters={"cube": cube},
        udps={"scaled_ndvi": UDP, "mean_of_scaled": outer},
        policy=ExecutionPolicy(read_roots=[tmp_path]),  # the namespace folder is readable
    )
    np.testing.assert_allclose(got.values, (_expected_ndvi(cube) * 3.0).mean("t").values, rtol=1e-6)


def test_udp_from_url_namespace(tmp_path):
    (tmp_path / "scaled_ndvi.json").write_text(json.dumps(UDP))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/scaled_ndvi.json"
        cube = _cube()
        graph = {
            "u": node("scaled_ndvi", result=True, namespace=url, data={"from_parameter": "cube"})
        }
        host = f"127.0.0.1:{server.server_address[1]}"  # loopback and http: allowed by name
        policy = ExecutionPolicy(allowed_hosts=[host])
        got = run_process_graph(graph, parameters={"cube": cube}, policy=policy)
        np.testing.assert_allclose(got.values, _expected_ndvi(cube).values * 2.0, rtol=1e-6)
    finally:
        server.shutdown()


def test_save_result_formats(tmp_path, ndvi_reference):
    for fmt, suffix in [("ZARR", ".zarr"), ("netCDF", ".nc")]:
        nodes = demo_ndvi_nodes(temporal_extent=["2016-03-01", "2016-05-01"])
        nodes["save"] = node("save_result", result=True, data={"from_node": "si"}, format=fmt)
        item = run_process_graph(nodes, output=tmp_path / fmt)
        href = item["assets"]["data"]["href"]
        assert href.endswith(suffix)
        assert (
            item["properties"].get("proj:code") == "EPSG:3035"
            or item["properties"].get("proj:epsg") == 3035
        )
        zarr_kw = {"engine": "zarr", "consolidated": False} if fmt == "ZARR" else {}
        back = xr.open_dataset(href, decode_coords="all", **zarr_kw)
        data = back[next(iter(back.data_vars))]
        ref = ndvi_reference.sel(t=slice("2016-03-01", "2016-04-30"))
        np.testing.assert_allclose(data.values, ref.values, equal_nan=True)
    nodes = demo_ndvi_nodes(temporal_extent=["2016-03-01", "2016-05-01"])
    nodes["m"] = node(
        "reduce_dimension",
        data={"from_node": "si"},
        dimension="t",
        reducer=callback("mean", data=P),
    )
    nodes["save"] = node("save_result", result=True, data={"from_node": "m"}, format="GTiff")
    item = run_process_graph(nodes, output=tmp_path / "tif")
    import rioxarray

    tif = rioxarray.open_rasterio(item["assets"]["data"]["href"])
    assert tif.rio.crs.to_epsg() == 3035


def test_save_result_json(tmp_path, ndvi_reference):
    """JSON: a cube as xarray's dict form (NaN as null, dates as ISO text), a number as is."""
    nodes = demo_ndvi_nodes(temporal_extent=["2016-03-01", "2016-05-01"])
    nodes["save"] = node("save_result", result=True, data={"from_node": "si"}, format="JSON")
    item = run_process_graph(nodes, output=tmp_path)
    assert item["assets"]["data"]["type"] == "application/json"
    text = Path(item["assets"]["data"]["href"]).read_text()
    assert "NaN" not in text
    back = xr.DataArray.from_dict(json.loads(text))
    ref = ndvi_reference.sel(t=slice("2016-03-01", "2016-04-30"))
    assert back.dims == ref.dims
    np.testing.assert_allclose(back.values.astype(float), ref.values, equal_nan=True)
    assert pd.DatetimeIndex(back["t"].values).equals(pd.DatetimeIndex(ref["t"].values))
    graph = {
        "a": node("add", x=1, y=2),
        "save": node("save_result", result=True, data={"from_node": "a"}, format="JSON"),
    }
    item = run_process_graph(graph, output=tmp_path / "n")
    assert json.loads(Path(item["assets"]["data"]["href"]).read_text()) == 3


def test_graph_from_openeo_client(tmp_path, ndvi_reference):
    import openeo
    from openeo.rest.datacube import DataCube

    cube = DataCube.load_collection(
        "DEMO_S2", connection=None, bands=DEMO_BANDS, temporal_extent=["2017-01-01", "2018-01-01"]
    )
    cube = cube.process("deepfeatures_preprocess_s2", data=cube, namespace="deepfeatures")
    cube = cube.process("deepfeatures_spectral_indices", data=cube, indices=["NDVI"])
    cube = cube.reduce_dimension(dimension="t", reducer="max")
    cube = cube.save_result(format="netCDF")
    path = tmp_path / "graph.json"
    path.write_text(cube.to_json())
    item = run_process_graph(path, output=tmp_path)
    got = xr.open_dataarray(item["assets"]["data"]["href"])
    ref = ndvi_reference.sel(t=slice("2017-01-01", "2017-12-31")).max("t")
    np.testing.assert_allclose(got.values, ref.values, equal_nan=True)
    assert openeo.__version__


@pytest.mark.parametrize(
    ("graph", "error", "match"),
    [
        ("{not json", ProcessGraphInvalid, "malformed JSON"),
        ({"a": node("add", x=1, y=2)}, ProcessGraphInvalid, "exactly one node"),
        (
            {
                "a": node("add", x={"from_node": "b"}, y=1),
                "b": node("add", result=True, x={"from_node": "a"}, y=1),
            },
            ProcessGraphInvalid,
            "cycle",
        ),
        (
            {"a": node("add", result=True, x={"from_node": "zz"}, y=1)},
            ProcessGraphInvalid,
            "unknown node 'zz'",
        ),
        ({"a": node("no_such_process", result=True)}, ProcessUnsupported, "no_such_process"),
        (
            {"a": node("add", result=True, namespace="nowhere", x=1, y=2)},
            ProcessUnsupported,
            "nowhere",
        ),
        (
            {"a": node("add", result=True, x=1)},
            ProcessParameterMissing,
            r"'y' is missing.*node 'a'",
        ),
        ({"a": node("add", result=True, x="one", y=2)}, ProcessParameterInvalid, r"'x'.*node 'a'"),
        (
            {"a": node("add", result=True, x=1, y=2, z=3)},
            ProcessParameterInvalid,
            "not a parameter",
        ),
        (
            {
                "a": node(
                    "load_collection",
                    result=True,
                    id="S2_NOPE",
                    spatial_extent=None,
                    temporal_extent=None,
                )
            },
            CollectionNotFound,
            "DEMO_S2",
        ),
        (
            {
                "a": node(
                    "load_collection",
                    result=True,
                    id="DEMO_S2",
                    spatial_extent=None,
                    temporal_extent=["2030-01-01", None],
                )
            },
            NoDataAvailable,
            "node 'a'",
        ),
        (
            {"a": node("add", result=True, x={"from_parameter": "nope"}, y=1)},
            ProcessParameterMissing,
            "nope",
        ),
    ],
)
def test_bad_graphs(graph, error, match, tmp_path):
    with pytest.raises(error, match=match):
        run_process_graph(graph, output=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_writes_nothing(tmp_path):
    nodes = demo_ndvi_nodes()
    nodes["save"] = node("save_result", result=True, data={"from_node": "si"}, format="GTiff")
    with pytest.raises(ProcessParameterInvalid, match="GTiff holds one raster"):
        run_process_graph(nodes, output=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_collections_registered_by_path(tmp_path):
    from tests.conftest import make_cube

    cube = make_cube(bands=["B04", "B08"], shape=(4, 3, 3))
    path = tmp_path / "mine.nc"
    cube.to_dataset(dim="bands").to_netcdf(path)
    nodes = {
        "load": node(
            "load_collection",
            id="MINE",
            spatial_extent=None,
            temporal_extent=[str(pd.Timestamp(cube.t.values[1]).date()), None],
        ),
        "si": node(
            "deepfeatures_spectral_indices",
            result=True,
            data={"from_node": "load"},
            indices=["NDVI"],
        ),
    }
    got = run_process_graph(nodes, collections={"MINE": path}).compute()
    np.testing.assert_allclose(
        got.values, odf.compute_indices(cube.isel(t=slice(1, None)), ["NDVI"]).values, rtol=1e-6
    )


def test_openeo_client_spectral_indices_graph():
    """``openeo.extra.spectral_indices`` (array_create inside apply_dimension) runs and is right."""
    from openeo.extra.spectral_indices import compute_indices
    from openeo.metadata import CollectionMetadata
    from openeo.rest.datacube import DataCube

    bands = ["B02", "B03", "B04", "B08", "B11"]
    indices = ["NDVI", "EVI", "NDWI", "NDMI", "GNDVI"]
    loaded = DataCube.load_collection("DEMO_S2", connection=None, bands=bands)
    dims = {"bands": {"type": "bands", "values": bands}}
    cube = DataCube(
        loaded._pg, metadata=CollectionMetadata({"id": "SENTINEL2_L2A", "cube:dimensions": dims})
    )
    cube = cube.filter_temporal("2017-05-01", "2017-09-01").apply(lambda x: x * 0.0001)
    got = run_process_graph(compute_indices(cube, indices).flat_graph())
    assert list(got["bands"].values) == indices
    demo = odf.load_demo_cube().sel(t=slice("2017-05-01", "2017-08-31"))
    B, G, R, N, S1 = (demo.sel(bands=k).values * 0.0001 for k in bands)
    with np.errstate(divide="ignore", invalid="ignore"):  # numpy reference, float64
        expected = np.stack(
            [
                (N - R) / (N + R),
                2.5 * (N - R) / (N + 6 * R - 7.5 * B + 1),
                (G - N) / (G + N),
                (N - S1) / (N + S1),
                (N - G) / (N + G),
            ],
            axis=1,
        )
    expected[~np.isfinite(expected)] = np.nan
    values = np.where(np.isfinite(got.values), got.values, np.nan)
    # the graph computes in float32 (upstream arithmetic): leave out the few pixel-dates where
    # EVI's denominator nearly cancels (cond. number > 1e3), where float32 cannot agree
    with np.errstate(divide="ignore"):
        ill = (N + 6 * R + 7.5 * B + 1) / np.abs(N + 6 * R - 7.5 * B + 1) > 1e3
    assert ill.mean() < 0.01  # bright clouds, where B is close to (N + 6R + 1) / 7.5
    values[:, 1][ill] = expected[:, 1][ill]
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6)


def test_builtin_process_graphs_namespace(tmp_path, monkeypatch):
    """UDPs in the package's process_graphs/ resolve by plain id and in namespace deepfeatures."""
    import openeo_deepfeatures.local as local

    udp = {"id": "my_scaled", **{k: v for k, v in UDP.items() if k != "id"}}
    (tmp_path / "my_scaled.json").write_text(json.dumps(udp))
    monkeypatch.setattr(local, "_builtin_udp_dirs", lambda: (tmp_path,))
    cube = _cube()
    for namespace in (None, "deepfeatures"):
        graph = {
            "u": node("my_scaled", result=True, namespace=namespace, data={"from_parameter": "c"})
        }
        got = run_process_graph(graph, parameters={"c": cube})
        np.testing.assert_allclose(got.values, _expected_ndvi(cube).values * 2.0, rtol=1e-6)


def test_temporal_extent_in_utc_and_empty():
    def load(extent):
        args = {"id": "DEMO_S2", "spatial_extent": None, "temporal_extent": extent}
        graph = {"l": node("load_collection", result=True, **args)}
        return run_process_graph(graph)

    times = odf.load_demo_cube()["t"].values
    # 01:00+02:00 is 23:00 UTC the day before, so the acquisition at 00:00 UTC is inside
    day = pd.Timestamp(times[1])
    local = load([(day + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+02:00"), None])
    np.testing.assert_array_equal(local["t"].values, times[1:])
    with pytest.raises(ProcessParameterInvalid, match="TemporalExtentEmpty"):
        load(["2018-01-01", "2017-01-01"])
