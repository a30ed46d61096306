"""The UDPs in ``process_graphs/``: generated (no drift), documented, bound to the native process
specs, and equal to the native API when our executor runs them.

The spectral-index UDP is pure openEO math. Our executor evaluates it in the input's precision
(float32 reflectance -> float32 arithmetic), while ``compute_indices`` works in float64 by
default (``precision="float32"`` selects float32 intermediates). The tests below show that the
UDP equals the native float32 evaluation bit for bit, so every difference to the float64 default
is arithmetic precision, and then bound those differences index by index.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures import udps
from openeo_deepfeatures.cli import main as cli_main
from openeo_deepfeatures.errors import ProcessUnsupported
from openeo_deepfeatures.local import default_registry, run_process_graph
from openeo_deepfeatures.processes import get_spec

from .processes.test_specs import PROCESS_SCHEMA, schemas_of

ROOT = Path(__file__).resolve().parents[1]
PROCESS_GRAPHS = ROOT / "process_graphs"
UDF_FILE = ROOT / "udf" / "feature_embedding.py"
SUBTYPES = ROOT.parent / "shared" / "openeo-processes" / "meta" / "subtype-schemas.json"


def load_udp(process_id: str) -> dict:
    return json.loads((PROCESS_GRAPHS / f"{process_id}.json").read_text("utf-8"))


def run_udp(process_id: str, cube: xr.DataArray, **arguments) -> xr.DataArray:
    """``process_id`` from the repository's ``process_graphs/`` folder, on ``cube``."""
    graph = {
        "load": {
            "process_id": "load_collection",
            "arguments": {"id": "CUBE", "spatial_extent": None, "temporal_extent": None},
        },
        "udp": {
            "process_id": process_id,
            "namespace": str(PROCESS_GRAPHS),
            "arguments": {"data": {"from_node": "load"}, **arguments},
            "result": True,
        },
    }
    return run_process_graph(graph, collections={"CUBE": cube}).compute()


def schema_list(schema) -> list[dict]:
    return schema if isinstance(schema, list) else [schema]


def types_of(schema) -> set[str]:
    out: set[str] = set()
    for s in schema_list(schema):
        kind = s.get("type")
        out.update(kind if isinstance(kind, list) else [kind])
    return out


def process_ids(nodes: dict) -> set[str]:
    """Every process id in a flat graph, callbacks included."""
    found = set()
    for node in nodes.values():
        found.add(node["process_id"])
        for value in node.get("arguments", {}).values():
            if isinstance(value, dict) and "process_graph" in value:
                found |= process_ids(value["process_graph"])
    return found


def find_nodes(nodes: dict, process_id: str) -> list[dict]:
    out = []
    for node in nodes.values():
        if node["process_id"] == process_id:
            out.append(node)
        for value in node.get("arguments", {}).values():
            if isinstance(value, dict) and "process_graph" in value:
                out += find_nodes(value["process_graph"], process_id)
    return out


# --------------------------------------------------------------------------- drift


def test_checked_in_udps_equal_the_generator():
    assert sorted(p.stem for p in PROCESS_GRAPHS.glob("*.json")) == sorted(udps.UDP_IDS)
    assert udps.write_udps(PROCESS_GRAPHS, check=True) == []
    assert cli_main(["udps", "--check", str(PROCESS_GRAPHS)]) == 0


def test_drift_is_reported_and_regenerated(tmp_path, capsys):
    folder = tmp_path / "process_graphs"
    assert udps.write_udps(folder) == [folder / f"{p}.json" for p in udps.UDP_IDS]
    assert udps.write_udps(folder, check=True) == []
    changed = folder / "deepfeatures_embed.json"
    doc = json.loads(changed.read_text("utf-8"))
    doc["summary"] += " (edited by hand)"
    changed.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    (folder / "deepfeatures_preprocess_s2.json").unlink()
    expected = [folder / "deepfeatures_preprocess_s2.json", changed]
    assert udps.write_udps(folder, check=True) == expected
    assert cli_main(["udps", str(folder), "--check"]) == 1
    out = capsys.readouterr().out
    assert out.count("drifted:") == 2 and all(f"drifted: {p}" in out for p in expected)

    assert cli_main(["udps", str(folder)]) == 0
    assert udps.write_udps(folder, check=True) == []
    for path in folder.iterdir():  # atomic writes leave no temporary files behind
        assert json.loads(path.read_text("utf-8")) == udps.build_udp(path.stem)
    assert len(list(folder.iterdir())) == len(udps.UDP_IDS)


def test_unknown_udp():
    with pytest.raises(ProcessUnsupported, match="deepfeatures_nope"):
        udps.build_udp("deepfeatures_nope")


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("process_id", udps.UDP_IDS)
def test_udp_is_a_documented_process(process_id):
    doc = load_udp(process_id)
    jsonschema.validate(doc, PROCESS_SCHEMA)
    assert doc["id"] == process_id
    for key in ("summary", "description"):
        assert isinstance(doc[key], str) and len(doc[key]) > 20, key
    assert doc["categories"] and all(isinstance(c, str) for c in doc["categories"])
    assert doc["returns"]["description"]
    assert doc["returns"]["schema"]["subtype"] == "datacube"
    assert doc["links"] and all(link["href"].startswith("https://") for link in doc["links"])
    for param in doc["parameters"]:
        assert param["description"], param["name"]
        for schema in schemas_of(param["schema"]):
            jsonschema.Draft7Validator.check_schema(schema)
        if "default" in param:
            jsonschema.validate(param["default"], {"anyOf": schema_list(param["schema"])})
    names = {p["name"] for p in doc["parameters"]}
    required = {p["name"] for p in doc["parameters"] if "default" not in p}
    assert required == {"data"}
    assert doc["examples"]
    for example in doc["examples"]:
        assert example["title"] and example["description"]
        assert required <= set(example["arguments"]) <= names


@pytest.mark.parametrize("process_id", udps.UDP_IDS)
def test_udp_parameter_subtypes(process_id, shared_dir):
    known = set(json.loads(SUBTYPES.read_text("utf-8"))["definitions"])
    params = {p["name"]: p for p in load_udp(process_id)["parameters"]}
    assert params["data"]["schema"]["subtype"] == "datacube"
    used = {
        s["subtype"] for p in params.values() for s in schemas_of(p["schema"]) if "subtype" in s
    }
    assert used <= known
    if "model" in params:
        assert params["model"]["schema"]["subtype"] == "uri"
        assert params["model"]["default"] == udps.DEFAULT_MODEL_URL
    if "bands" in params:
        assert params["bands"]["schema"]["items"]["subtype"] == "band-name"


# --------------------------------------------------------------------------- one description


METADATA = ("summary", "description", "categories", "returns", "exceptions", "links")


@pytest.mark.parametrize("process_id", udps.UDP_IDS)
def test_udp_metadata_is_the_spec(process_id):
    """Each process is described once, in its spec: the UDP says the same, apart from its graph
    and the defaults a portable graph needs where the spec says ``null``."""
    spec, udp = get_spec(process_id), load_udp(process_id)
    assert set(udp) - {"process_graph"} <= set(spec)
    assert udp["id"] == spec["id"] == process_id
    for key in METADATA:
        assert udp.get(key) == spec.get(key), key
    assert udp.get("experimental") == spec.get("experimental")
    assert udp["examples"] and all(e in spec["examples"] for e in udp["examples"])

    native = {p["name"]: p for p in spec["parameters"]}
    changed = udps.portable_defaults(process_id)
    names = [p["name"] for p in udp["parameters"]]
    assert names == [n for n in native if n in names]  # the spec's order
    for param in udp["parameters"]:
        name = param["name"]
        want = native[name]
        if name in changed:  # the portable default, a valid value of the native process
            assert want["default"] is None and param["default"] == changed[name].default
            jsonschema.validate(param["default"], {"anyOf": schema_list(want["schema"])})
            assert "null" not in types_of(param["schema"])
            assert types_of(param["schema"]) == types_of(want["schema"]) - {"null"}
            assert f"`{name}`" in spec["description"]  # the spec tells UDP users
            param = {k: v for k, v in param.items() if k not in ("default", "schema")}
            want = {k: v for k, v in want.items() if k not in ("default", "schema")}
        assert param == want, name
    assert set(changed) <= set(names)
    for name, spec_param in native.items():  # what the UDP leaves out is optional natively
        if name not in names:
            assert spec_param.get("optional") and f"`{name}`" in spec["description"], name


@pytest.mark.parametrize("process_id", udps.UDP_IDS)
def test_udp_parameters_are_those_its_graph_reads(process_id):
    doc = load_udp(process_id)
    assert udps.parameters_used(doc["process_graph"]) == {p["name"] for p in doc["parameters"]}


def test_embed_spec_states_the_udp_windows():
    description = get_spec("deepfeatures_embed")["description"]
    window, overlap = udps.EMBED_WINDOW, udps.EMBED_OVERLAP
    assert f"{window} x {window} px with all dates and {overlap} px of overlap" in description
    assert f"spatial context of up to {overlap} px" in description


@pytest.mark.parametrize("process_id", udps.UDP_IDS)
def test_udp_uses_only_predefined_processes(process_id):
    registry = default_registry()
    used = process_ids(load_udp(process_id)["process_graph"])
    assert used, process_id
    missing = sorted(p for p in used if not registry.has(p))
    assert not missing
    assert not used & set(udps.UDP_IDS)  # self-contained: no UDP calls another


@pytest.mark.parametrize("process_id", ["deepfeatures_embed", "deepfeatures_feature_cube"])
def test_embedding_udps_carry_the_udf_file(process_id):
    nodes = udps.build_udp(process_id)["process_graph"]  # the files equal it (drift test)
    (neighborhood,) = find_nodes(nodes, "apply_neighborhood")
    (udf,) = find_nodes(nodes, "run_udf")
    assert udf["arguments"]["udf"] == UDF_FILE.read_text("utf-8")
    assert udf["arguments"]["runtime"] == "Python"
    context = neighborhood["arguments"]["context"]
    assert context["model"] == {"from_parameter": "model"}
    assert context["model_sha256"] == {"from_parameter": "model_sha256"}
    assert context["overlap"] == udps.EMBED_OVERLAP
    size = {s["dimension"]: s["value"] for s in neighborhood["arguments"]["size"]}
    assert size == {"x": udps.EMBED_WINDOW, "y": udps.EMBED_WINDOW, "t": None}


def test_defaults_follow_the_default_model():
    contract = odf.load_encoder().contract
    assert udps.default_indices() == tuple(contract.channels)
    indices = {p["name"]: p for p in load_udp("deepfeatures_spectral_indices")["parameters"]}
    assert indices["indices"]["default"] == list(contract.channels)
    assert indices["indices"]["schema"]["items"]["enum"] == list(contract.channels)
    pre = {p["name"]: p for p in load_udp("deepfeatures_preprocess_s2")["parameters"]}
    assert pre["bands"]["default"] == list(udps.default_bands())
    needed = {band for name in contract.channels for band in odf.get_index(name).bands}
    assert set(udps.default_bands()) == needed
    assert needed <= set(odf.load_demo_cube()["bands"].values.tolist())


# --------------------------------------------------------------------------- run locally


@pytest.fixture(scope="module")
def dn() -> xr.DataArray:
    """40 dates of the demo cube (DN with SCL), all 50 x 50 px."""
    return odf.load_demo_cube().isel(t=slice(0, 40))


@pytest.fixture(scope="module")
def reflectance(dn) -> xr.DataArray:
    return odf.preprocess_s2(dn).compute()


def test_preprocess_udp_equals_native_preprocess(dn, reflectance):
    got = run_udp("deepfeatures_preprocess_s2", dn)
    assert got.dims == reflectance.dims and got.dtype == np.float32
    assert got["bands"].values.tolist() == list(udps.default_bands())
    np.testing.assert_array_equal(got["t"].values, reflectance["t"].values)
    np.testing.assert_array_equal(got.values, reflectance.values)  # NaN where NaN, else exact
    assert 0.05 < np.isnan(got.values).mean() < 0.95  # the mask did mask something


def test_preprocess_udp_arguments_equal_native_arguments(dn):
    small = dn.isel(t=slice(0, 12))
    args = {"bands": ["B04", "B08"], "boa_offset": -1000, "invalid_scl": [3, 8, 9]}
    got = run_udp("deepfeatures_preprocess_s2", small, **args)
    want = odf.preprocess_s2(
        small.sel(bands=["B04", "B08", "SCL"]), boa_offset=-1000, invalid_scl=[3, 8, 9]
    )
    assert got["bands"].values.tolist() == ["B04", "B08"]
    np.testing.assert_array_equal(got.values, want.values)
    assert (got.values < 0).any()  # the offset applied: DN < 1000 became negative


@pytest.fixture(scope="module")
def udp_indices(reflectance) -> xr.DataArray:
    return run_udp("deepfeatures_spectral_indices", reflectance)


@pytest.fixture(scope="module")
def native_indices(reflectance) -> dict[str, np.ndarray]:
    names = list(udps.default_indices())
    return {
        # the numpy engine applies the same numpy ufuncs as the UDP: bit-equal; the numba
        # engine (sqrt for x ** 0.5, libm exp/pow) is within 1 float32 ulp (tests/indices)
        precision: odf.compute_indices(
            reflectance, names, precision=precision, engine="numpy"
        ).values
        for precision in ("float32", "float64")
    }


def test_spectral_indices_udp_is_the_native_evaluation(udp_indices, native_indices):
    """Our executor runs band math in float64 (openEO numbers are doubles), as the native
    engine's intermediates are: the UDP gives the native indices to the last float32 bit,
    VARI's rounding-noise poles included."""
    assert udp_indices["bands"].values.tolist() == list(udps.default_indices())
    assert udp_indices.dtype == np.float64
    np.testing.assert_array_equal(udp_indices.values.astype(np.float32), native_indices["float64"])
    assert not np.isinf(udp_indices.values).any()  # division by zero is no-data


def test_float32_band_math_would_differ_only_through_cancellation(dn, reflectance, native_indices):
    """Why band math runs in float64: in float32 (as on many backends) indices whose terms
    cancel lose digits, and VARI's exact poles (zero denominator in the digital numbers)
    come out as no-data or as other noise."""
    names = list(udps.default_indices())
    got = native_indices["float32"].astype(np.float64)
    want = native_indices["float64"].astype(np.float64)
    poles = exact_vari_poles(dn, reflectance)
    differ = np.isnan(got) != np.isnan(want)
    vari = names.index("VARI")
    assert not np.delete(differ, vari, axis=1).any()
    assert not (differ[:, vari] & ~poles).any()
    finite = np.isfinite(got) & np.isfinite(want)
    finite[:, vari] &= ~poles
    bad = finite & (np.abs(got - want) > ATOL + RTOL * np.abs(want))
    offenders = {names[i] for i in np.unique(np.nonzero(bad)[1])}
    assert offenders <= CANCELLING, sorted(offenders - CANCELLING)


# Indices whose float32 evaluation loses more than 1e-5 relative accuracy on the demo cube,
# each through cancellation: near a pole of a ratio (the denominator is a difference of
# reflectances that nearly cancel) or in a numerator that nearly cancels (CRI550: 1/B - 1/G,
# IBI, TGI; kEVI: 1 - exp(-d^2), d small).
CANCELLING = {"CRI550", "EVI", "EVIv", "IAVI", "IBI", "NDDI", "TGI", "VARI", "VIBI", "kEVI"}
RTOL, ATOL = 1e-5, 2.0**-22  # ATOL: 2 float32 ulp at 1, the magnitude of most indices


def exact_vari_poles(dn: xr.DataArray, reflectance: xr.DataArray) -> np.ndarray:
    """Where VARI = (G - R) / (G + R - B) has a zero denominator in the digital numbers."""
    g, r, b = (dn.sel(bands=band).values.astype(np.int64) for band in ("B03", "B04", "B02"))
    return (g + r - b == 0) & np.isfinite(reflectance.sel(bands="B03").values)


def test_spectral_indices_udp_selects_indices(reflectance, native_indices):
    names = ["NDVI", "EVI", "kNDVI"]
    got = run_udp("deepfeatures_spectral_indices", reflectance.isel(t=slice(0, 5)), indices=names)
    assert got["bands"].values.tolist() == names
    want = odf.compute_indices(reflectance.isel(t=slice(0, 5)), names)
    np.testing.assert_array_equal(got.values.astype(np.float32), want.values)
