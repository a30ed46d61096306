"""openEO process-graph emission, evaluated with openeo-processes-dask's own implementations."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import openeo_deepfeatures as odf
from openeo_deepfeatures.indices.to_openeo import indices_callback, spectral_indices_graph

from ..conftest import make_cube

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import openeo_processes_dask.process_implementations as upstream

BANDS = ["B02", "B03", "B04", "B08", "B8A", "B11"]


def run_callback(nodes: dict, data: np.ndarray, labels: list[str]) -> np.ndarray:
    """Walk the callback in dependency order, calling the upstream process implementations."""
    done: dict[str, object] = {}

    def value(arg):
        if isinstance(arg, dict) and "from_node" in arg:
            return done[arg["from_node"]]
        if isinstance(arg, dict) and "from_parameter" in arg:
            return data
        if isinstance(arg, list):
            return [value(a) for a in arg]
        return arg

    pending = dict(nodes)
    while pending:
        for node_id, node in list(pending.items()):
            deps = json.dumps(node["arguments"])
            if any(f'"from_node": "{d}"' in deps for d in pending if d != node_id):
                continue
            args = {k: value(v) for k, v in node["arguments"].items()}
            process = getattr(upstream, node["process_id"])
            if node["process_id"] == "array_element":
                args.update(axis=0, dim_labels=np.array(labels))
            if node["process_id"] == "array_create":
                done[node_id] = np.stack(args["data"])
            else:
                done[node_id] = process(**args)
            del pending[node_id]
    return done["result"]


def test_band_selection_by_label_and_sharing():
    nodes = indices_callback(["NDVI", "kNDVI", "EVI"], ["B02", "B04", "B08"])
    elements = [n for n in nodes.values() if n["process_id"] == "array_element"]
    assert sorted(n["arguments"]["label"] for n in elements) == ["B02", "B04", "B08"]
    assert all("index" not in n["arguments"] for n in elements)
    subtracts = [n["arguments"] for n in nodes.values() if n["process_id"] == "subtract"]
    assert len(subtracts) == len({json.dumps(a, sort_keys=True) for a in subtracts})
    assert nodes["result"]["process_id"] == "array_create" and nodes["result"]["result"] is True
    json.dumps(nodes)


def test_emitted_graph_matches_native_engine():
    names = odf.list_indices(bands=BANDS)
    cube = make_cube(bands=BANDS, shape=(2, 3, 4), seed=7)
    nodes = indices_callback(names, BANDS)
    data = np.moveaxis(cube.values, 1, 0).astype(np.float64)  # (bands, t, y, x)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        via_graph = run_callback(nodes, data, BANDS)
    via_graph = np.moveaxis(np.asarray(via_graph, dtype=np.float64), 0, 1)
    via_graph[~np.isfinite(via_graph)] = np.nan
    native = odf.compute_indices(cube, names).values
    np.testing.assert_allclose(native, via_graph, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_full_graph_nodes():
    graph = spectral_indices_graph(["NDVI", "NDWI"], BANDS, data={"from_node": "load"})
    assert graph["indices"]["arguments"]["dimension"] == "bands"
    assert graph["indices"]["arguments"]["data"] == {"from_node": "load"}
    assert graph["rename"]["arguments"]["target"] == ["NDVI", "NDWI"]
    assert graph["rename"]["result"] is True


def test_emission_checks_bands():
    with pytest.raises(odf.errors.BandMissing):
        indices_callback(["NDWI"], ["B04", "B08"])
