"""The openEO client helpers: graphs built offline, inlined or by reference, equal to the UDPs.

Inlined, a helper adds the very nodes of the published UDP (same generator), with the UDP's
parameters replaced by the caller's values; by reference, one node with the UDP's id and
namespace. Two small graphs also run on our executor.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import openeo
import pytest
from openeo.rest.datacube import DataCube

import openeo_deepfeatures as odf
from openeo_deepfeatures import client, udps
from openeo_deepfeatures.errors import BandMissing, IndexUnknown, ProcessParameterInvalid
from openeo_deepfeatures.local.connection import LocalConnection

ROOT = Path(__file__).resolve().parents[1]
PROCESS_GRAPHS = ROOT / "process_graphs"
MODEL = "/models/encoder.onnx"
SHA = "0" * 64


def offline_cube(bands=("B02", "B03", "B04", "B08", "B8A", "B11", "SCL")) -> DataCube:
    """A ``load_collection`` cube without any connection or metadata."""
    return DataCube.load_collection(
        "SENTINEL2_L2A", connection=None, fetch_metadata=False, bands=list(bands)
    )


@pytest.fixture(scope="module")
def demo_cube() -> DataCube:
    """A cube with collection metadata (bands B02..B11, SCL) from our LocalConnection."""
    return LocalConnection().load_collection(
        "DEMO_S2", temporal_extent=["2015-08-01", "2015-09-15"]
    )


def nodes_of(cube: DataCube) -> dict:
    """The graph without its ``load_collection`` node, the ``result`` flag dropped."""
    graph = copy.deepcopy(cube.flat_graph())
    (load,) = [k for k, v in graph.items() if v["process_id"] == "load_collection"]
    del graph[load]
    for node in graph.values():
        node.pop("result", None)
    return graph, load


def udp_nodes(process_id: str, values: dict) -> dict:
    """The UDP's nodes with its parameters replaced by ``values`` (callbacks have
    their own parameters and are left as they are)."""

    def substitute(value):
        if isinstance(value, dict):
            if set(value) == {"from_parameter"}:
                return copy.deepcopy(values[value["from_parameter"]])
            if "process_graph" in value:
                return value
            return {k: substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [substitute(v) for v in value]
        return value

    doc = udps.build_udp(process_id)  # the process_graphs/ files equal it (tests/test_udps.py)
    out = {}
    for key, node in doc["process_graph"].items():
        node = {k: substitute(v) for k, v in node.items() if k != "result"}
        out[key] = node
    return out


def process_ids(nodes: dict) -> list[str]:
    return [n["process_id"] for n in nodes.values()]


# --------------------------------------------------------------------------- inlined


def test_feature_cube_inlined_is_the_udp(demo_cube):
    nodes, load = nodes_of(client.feature_cube(demo_cube, MODEL, model_sha256=SHA))
    want = udp_nodes(
        "deepfeatures_feature_cube",
        {"data": {"from_node": load}, "model": MODEL, "model_sha256": SHA},
    )
    assert nodes == want
    assert process_ids(nodes)[-1] == "apply_neighborhood"


@pytest.mark.parametrize("cube", [offline_cube(), None], ids=["offline", "with-metadata"])
def test_preprocess_inlined_is_the_udp(cube, demo_cube):
    cube = cube if cube is not None else demo_cube
    built = client.preprocess_s2(cube, boa_offset=-1000, invalid_scl=[3, 8, 9])
    nodes, load = nodes_of(built)
    want = udp_nodes(
        "deepfeatures_preprocess_s2",
        {
            "data": {"from_node": load},
            "bands": list(client.DEFAULT_BANDS),
            "boa_offset": -1000,
            "invalid_scl": [3, 8, 9],
        },
    )
    assert nodes == want
    assert process_ids(nodes) == ["filter_bands", "apply", "reduce_dimension", "apply", "mask"]


def test_preprocess_bands_from_metadata_or_argument():
    con = LocalConnection()
    cube = con.load_collection("DEMO_S2", bands=["B04", "B08", "SCL"])
    graph = client.preprocess_s2(cube).flat_graph()
    assert graph["filterbands1"]["arguments"]["bands"] == ["B04", "B08"]  # SCL is not kept
    graph = client.preprocess_s2(cube, bands=["B08"]).flat_graph()
    assert graph["filterbands1"]["arguments"]["bands"] == ["B08"]
    no_metadata = client.preprocess_s2(offline_cube(["B04", "SCL"])).flat_graph()
    assert no_metadata["filterbands1"]["arguments"]["bands"] == list(client.DEFAULT_BANDS)


def test_spectral_indices_inlined(demo_cube):
    refl = client.preprocess_s2(demo_cube)
    nodes, _ = nodes_of(client.spectral_indices(demo_cube))
    udp = udp_nodes("deepfeatures_spectral_indices", {"data": None, "indices": None})
    # the UDP's nodes for the default indices, without the UDP's final `indices` selection
    assert process_ids(nodes)[-3:] == ["apply_dimension", "apply", "rename_labels"]
    assert process_ids(udp) == ["apply_dimension", "apply", "rename_labels", "filter_bands"]
    for key in ("applydimension1", "apply1"):
        assert nodes[key]["arguments"]["process"] == udp[key]["arguments"]["process"]
    assert nodes["renamelabels1"]["arguments"]["target"] == list(udps.default_indices())

    few = client.spectral_indices(refl, ["NDVI", "kNDVI"]).flat_graph()
    assert few["renamelabels1"]["arguments"]["target"] == ["NDVI", "kNDVI"]
    callback = few["applydimension1"]["arguments"]["process"]["process_graph"]
    labels = {n["arguments"]["label"] for n in callback.values() if "label" in n["arguments"]}
    assert labels == {"B04", "B08"}  # bands picked by label, only those the indices need


def test_spectral_indices_any_index_when_inlined():
    """Inlined, any computable index (not only the default model's) becomes openEO math."""
    assert "NDWI" in udps.default_indices() and "NBR" not in udps.default_indices()
    cube = offline_cube()
    graph = client.spectral_indices(cube, ["NBR"]).flat_graph()
    assert graph["renamelabels1"]["arguments"]["target"] == ["NBR"]


def test_embed_inlined():
    graph = client.embed(offline_cube(), MODEL).flat_graph()
    node = graph["applyneighborhood1"]
    assert node["arguments"]["context"] == {
        "model": MODEL,
        "model_sha256": None,
        "overlap": udps.EMBED_OVERLAP,
    }
    udf = node["arguments"]["process"]["process_graph"]["udf"]
    assert udf["process_id"] == "run_udf"
    assert udf["arguments"]["udf"] == (ROOT / "udf" / "feature_embedding.py").read_text("utf-8")
    default = client.embed(offline_cube()).flat_graph()["applyneighborhood1"]
    assert default["arguments"]["context"]["model"] == client.DEFAULT_MODEL_URL


# --------------------------------------------------------------------------- by reference


@pytest.mark.parametrize("namespace", [client.NAMESPACE_URL, "deepfeatures", str(PROCESS_GRAPHS)])
def test_namespace_references_the_udps(namespace):
    cube = offline_cube()
    cases = {
        "deepfeatures_preprocess_s2": (
            client.preprocess_s2(cube, namespace=namespace),
            {
                "bands": list(client.DEFAULT_BANDS),
                "boa_offset": 0,
                "invalid_scl": [0, 1, 3, 8, 9, 10],
            },
        ),
        "deepfeatures_spectral_indices": (
            client.spectral_indices(cube, ["NDVI", "EVI"], namespace=namespace),
            {"indices": ["NDVI", "EVI"]},
        ),
        "deepfeatures_embed": (
            client.embed(cube, MODEL, model_sha256=SHA, namespace=namespace),
            {"model": MODEL, "model_sha256": SHA},
        ),
        "deepfeatures_feature_cube": (
            client.feature_cube(cube, MODEL, namespace=namespace),
            {"model": MODEL},  # model_sha256=None is left out: the UDP default applies
        ),
    }
    for process_id, (built, arguments) in cases.items():
        graph = built.flat_graph()
        assert list(graph) == ["loadcollection1", process_id.replace("_", "") + "1"]
        node = graph[process_id.replace("_", "") + "1"]
        assert node["process_id"] == process_id
        assert node["namespace"] == namespace
        assert node["result"] is True
        assert node["arguments"] == {"data": {"from_node": "loadcollection1"}, **arguments}


def test_namespace_arguments_are_udp_parameters():
    cube = offline_cube()
    for built in (
        client.preprocess_s2(cube, namespace="ns"),
        client.spectral_indices(cube, namespace="ns"),
        client.embed(cube, namespace="ns"),
        client.feature_cube(cube, namespace="ns"),
    ):
        (node,) = [n for n in built.flat_graph().values() if n.get("namespace") == "ns"]
        doc = json.loads((PROCESS_GRAPHS / f"{node['process_id']}.json").read_text("utf-8"))
        assert set(node["arguments"]) <= {p["name"] for p in doc["parameters"]}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "helper", [client.preprocess_s2, client.spectral_indices, client.embed, client.feature_cube]
)
@pytest.mark.parametrize("value", [None, {"process_id": "load_collection"}, "SENTINEL2_L2A"])
def test_not_a_datacube(helper, value):
    with pytest.raises(ProcessParameterInvalid, match=r"openeo\.DataCube is needed"):
        helper(value)


def test_xarray_is_not_a_datacube(demo_dn):
    with pytest.raises(ProcessParameterInvalid, match="not DataArray"):
        client.feature_cube(demo_dn)


def test_unknown_indices_with_namespace():
    with pytest.raises(ProcessParameterInvalid, match=r"\['NBR', 'NOPE'\]") as info:
        client.spectral_indices(offline_cube(), ["NDVI", "NOPE", "NBR"], namespace="ns")
    assert info.value.code == "ProcessParameterInvalid"
    assert "Leave `namespace` unset" in str(info.value)


def test_unknown_index_and_missing_band_inlined():
    with pytest.raises(IndexUnknown, match="NOPE"):
        client.spectral_indices(offline_cube(), ["NOPE"])
    cube = LocalConnection().load_collection("DEMO_S2", bands=["B04", "B08"])
    with pytest.raises(BandMissing, match="B02"):
        client.spectral_indices(cube, ["EVI"])


# --------------------------------------------------------------------------- job options


def test_job_options():
    assert client.job_options() == {"executor-memory": "2G", "python-memory": "3G"}
    options = client.job_options(
        model_archive="https://host/model.zip#tmp/model",
        python_memory="6G",
        extra={"executor-memory": "4G", "max-executors": 10},
    )
    assert options == {
        "executor-memory": "4G",
        "python-memory": "6G",
        "udf-dependency-archives": ["https://host/model.zip#tmp/model"],
        "max-executors": 10,
    }
    json.dumps(options)  # sent as JSON with the batch job


@pytest.mark.parametrize("archive", ["https://host/model.zip", "model.zip"])
def test_job_options_bad_model_archive(archive):
    with pytest.raises(ProcessParameterInvalid, match="URL#folder") as info:
        client.job_options(model_archive=archive)
    assert info.value.fields["parameter"] == "model_archive"


# --------------------------------------------------------------------------- run locally


def test_inlined_and_namespace_graphs_run_and_agree():
    con = LocalConnection()
    cube = con.load_collection("DEMO_S2", temporal_extent=["2016-06-01", "2016-07-15"])
    names = ["NDVI", "EVI", "kNDVI"]
    inlined = client.spectral_indices(client.preprocess_s2(cube), names).execute()
    by_udp = client.spectral_indices(
        client.preprocess_s2(cube, namespace=str(PROCESS_GRAPHS)),
        names,
        namespace=str(PROCESS_GRAPHS),
    ).execute()
    dn = odf.load_demo_cube().sel(t=slice("2016-06-01", "2016-07-14"))
    want = odf.compute_indices(odf.preprocess_s2(dn), names)
    assert inlined["bands"].values.tolist() == names == by_udp["bands"].values.tolist()
    assert inlined.sizes["t"] == want.sizes["t"] > 0
    np.testing.assert_array_equal(inlined.values.astype(np.float32), want.values)
    np.testing.assert_array_equal(by_udp.values.astype(np.float32), want.values)


def test_graphs_are_json_for_any_backend():
    """What ``create_job`` sends: a JSON document of the openEO API."""
    built = client.feature_cube(offline_cube(), MODEL)
    doc = json.loads(built.to_json())
    assert doc["process_graph"]["applyneighborhood1"]["result"] is True
    assert isinstance(built, openeo.DataCube)


# --------------------------------------------------------------------------- shipped models


def _embed_context(cube: DataCube) -> dict:
    (node,) = [n for n in cube.flat_graph().values() if n["process_id"] == "apply_neighborhood"]
    return node["arguments"]["context"]


def _preprocess_bands(cube: DataCube) -> list[str]:
    (node,) = [n for n in cube.flat_graph().values() if n["process_id"] == "filter_bands"]
    return node["arguments"]["bands"]


def test_feature_cube_of_a_10m_cube_uses_the_10m_model():
    ten_m = offline_cube(("B02", "B03", "B04", "B08", "SCL"))
    built = client.feature_cube(ten_m)
    assert _embed_context(built)["model"] == client.MODEL_URLS["s2-10m"]
    assert client.MODEL_URLS["s2-10m"].endswith("/openeo_deepfeatures/data/encoder/s2_10m.onnx")
    assert _preprocess_bands(built) == ["B02", "B03", "B04", "B08"]
    channels = list(odf.load_encoder("s2-10m").contract.channels)
    by_name = client.feature_cube(offline_cube(), "s2-10m")  # asked for by name
    assert _embed_context(by_name)["model"] == client.MODEL_URLS["s2-10m"]
    graph = json.dumps(built.flat_graph())
    assert all(f'"{c}"' in graph for c in channels)  # every channel's band math is there
    assert '"B8A"' not in graph and '"B11"' not in graph


def test_feature_cube_default_model_for_six_bands_or_no_metadata():
    six = client.feature_cube(offline_cube())
    assert _embed_context(six)["model"] == client.DEFAULT_MODEL_URL
    assert client.MODEL_URLS["default"] == client.DEFAULT_MODEL_URL
    bare = DataCube.load_collection("SENTINEL2_L2A", connection=None, fetch_metadata=False)
    assert _embed_context(client.feature_cube(bare))["model"] == client.DEFAULT_MODEL_URL
    assert _preprocess_bands(client.feature_cube(bare)) == list(client.DEFAULT_BANDS)
