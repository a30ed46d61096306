"""The backend plugin: register into an openeo-processes-dask registry, entry points, listings."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from openeo_pg_parser_networkx import OpenEOProcessGraph, ProcessRegistry
from openeo_pg_parser_networkx.process_registry import Process
from packaging.specifiers import SpecifierSet

import openeo_deepfeatures as odf
from openeo_deepfeatures import plugin
from openeo_deepfeatures import processes as ours
from openeo_deepfeatures.cli.processes import add_processes_parser
from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.plugin import (
    ENTRY_POINT_GROUP,
    PluginWarning,
    load_plugins,
    processes_listing,
    register,
    udf_runtimes,
    validate_spec,
)

REPO = Path(__file__).resolve().parents[1]


def dask_registry() -> ProcessRegistry:
    """A fresh registry as an openeo-processes-dask backend builds it (openeo-processes-dask
    README): every implementation wrapped by its ``process`` decorator, with its spec."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Did not load machine learning processes ..."
        from openeo_processes_dask.process_implementations.core import process

        implementations = importlib.import_module("openeo_processes_dask.process_implementations")
    specs = importlib.import_module("openeo_processes_dask.specs")
    registry = ProcessRegistry(wrap_funcs=[process])
    for name, func in inspect.getmembers(implementations, inspect.isfunction):
        if hasattr(specs, name):
            registry[name] = Process(spec=getattr(specs, name), implementation=func)
    return registry


def run(graph: dict, registry: ProcessRegistry, **parameters):
    return OpenEOProcessGraph({"process_graph": graph}).to_callable(process_registry=registry)(
        named_parameters=parameters
    )


def node(process_id: str, namespace: str | None = None, result: bool = False, **arguments):
    out = {"process_id": process_id, "arguments": arguments}
    if namespace is not None:
        out["namespace"] = namespace
    if result:
        out["result"] = True
    return out


def assert_same_cube(got, expected):
    assert got.dims == expected.dims
    assert list(got["bands"].values) == list(expected["bands"].values)
    np.testing.assert_array_equal(got["t"].values, expected["t"].values)
    np.testing.assert_array_equal(np.asarray(got.values), np.asarray(expected.values))


# --------------------------------------------------------------------------- running graphs


@pytest.mark.parametrize("namespace", [None, "deepfeatures"])
def test_spectral_indices_by_plain_id_and_namespace(namespace, demo_reflectance):
    registry = dask_registry()
    register(registry)
    graph = {"si": node("deepfeatures_spectral_indices", namespace, True, data=_param("cube"))}
    got = run(graph, registry, cube=demo_reflectance)
    expected = odf.compute_indices(demo_reflectance)
    assert got.sizes["bands"] > 100
    assert_same_cube(got, expected)
    # openeo-pg-parser-networkx's to_callable resolves every node in the predefined namespace
    # (it ignores "namespace"); the namespaced entry is the same process, and computes the same
    entry = registry["deepfeatures", "deepfeatures_spectral_indices"]
    direct = entry.implementation(data=demo_reflectance, indices=["EVI", "NDVI"])
    assert_same_cube(direct, expected.sel(bands=["EVI", "NDVI"]))


def test_graph_mixes_our_processes_with_upstream_ones(demo_dn):
    """DN -> our preprocess -> our indices -> openeo-processes-dask filter_bands."""
    registry = dask_registry()
    register(registry)
    graph = {
        "pre": node("deepfeatures_preprocess_s2", "deepfeatures", data=_param("dn")),
        "si": node(
            "deepfeatures_spectral_indices",
            data={"from_node": "pre"},
            indices=["NDVI", "EVI", "kNDVI"],
        ),
        "pick": node("filter_bands", result=True, data={"from_node": "si"}, bands=["kNDVI"]),
    }
    got = run(graph, registry, dn=demo_dn)
    expected = odf.compute_indices(odf.preprocess_s2(demo_dn), ["kNDVI"])
    assert_same_cube(got, expected)


def _param(name: str) -> dict:
    return {"from_parameter": name}


# --------------------------------------------------------------------------- register


def test_register_adds_specs_and_implementations_in_both_namespaces():
    registry = dask_registry()
    before = len(registry)
    keys = register(registry)
    assert sorted(keys) == sorted(
        (ns, pid) for pid in ours.PROCESS_IDS for ns in ("predefined", "deepfeatures")
    )
    assert len(registry) == before + 2 * len(ours.PROCESS_IDS)
    for ns, pid in keys:
        entry = registry[ns, pid]
        assert entry.spec == ours.get_spec(pid)
        assert entry.namespace == ns
        # wrapped by the registry's wrap_funcs (openeo-processes-dask's ``process``)
        assert inspect.unwrap(entry.implementation) is ours.get_implementation(pid)
    assert (
        registry["deepfeatures_embed"].spec
        is not registry["deepfeatures", "deepfeatures_embed"].spec
    )


def test_register_is_idempotent():
    registry = dask_registry()
    register(registry)
    entries = {key: registry[key] for key in registry}
    wrapped = {key: e.implementation for key, e in entries.items()}
    assert register(registry) == register(registry)
    assert {key: registry[key] for key in registry} == entries
    for key, entry in entries.items():
        assert registry[key] is entry  # not replaced ...
        assert registry[key].implementation is wrapped[key]  # ... nor wrapped twice


@pytest.mark.parametrize(
    ("options", "namespaces"),
    [
        ({"predefined": False}, {"deepfeatures"}),
        ({"namespace": None}, {"predefined"}),
        ({"namespace": "eo_features"}, {"predefined", "eo_features"}),
        ({"namespace": "predefined"}, {"predefined"}),
    ],
)
def test_register_namespaces(options, namespaces):
    registry = ProcessRegistry()
    keys = register(registry, **options)
    assert {ns for ns, _ in keys} == namespaces
    assert set(registry.store) == namespaces
    assert len(keys) == len(set(keys)) == len(namespaces) * len(ours.PROCESS_IDS)


@pytest.mark.parametrize("namespace", ["", "_deep", "deep_", "deep features", "a/b", 3])
def test_register_refuses_bad_namespaces(namespace):
    with pytest.raises(ProcessParameterInvalid, match="namespace"):
        register(ProcessRegistry(), namespace=namespace)


def test_register_refuses_registering_nothing():
    with pytest.raises(ProcessParameterInvalid, match="nothing gets registered"):
        register(ProcessRegistry(), namespace=None, predefined=False)


@pytest.mark.parametrize("namespace", ["predefined", "deepfeatures"])
def test_register_refuses_a_different_process_of_the_same_id(namespace):
    registry = dask_registry()
    foreign = Process(spec={**ours.get_spec("deepfeatures_embed"), "summary": "other"})
    registry[namespace, "deepfeatures_embed"] = foreign
    before = {key: registry[key] for key in registry}
    with pytest.raises(ProcessParameterInvalid, match=r"different process 'deepfeatures_embed'"):
        register(registry)
    # nothing changed: not even the processes before the conflicting one
    assert {key: registry[key] for key in registry} == before
    assert registry[namespace, "deepfeatures_embed"] is foreign

    register(registry, overwrite=True)
    replaced = registry[namespace, "deepfeatures_embed"]
    assert replaced.spec == ours.get_spec("deepfeatures_embed")
    assert inspect.unwrap(replaced.implementation) is ours.get_implementation("deepfeatures_embed")
    register(registry)  # ours now: idempotent again


def test_register_refuses_same_spec_with_another_implementation():
    registry = ProcessRegistry()
    spec = ours.get_spec("deepfeatures_spectral_indices")
    registry["deepfeatures_spectral_indices"] = Process(spec, implementation=lambda data: data)
    with pytest.raises(ProcessParameterInvalid, match="deepfeatures_spectral_indices"):
        register(registry)


def test_register_refuses_an_alias_of_our_id_unless_overwrite():
    registry = dask_registry()
    registry.add_alias("ndvi", "deepfeatures_spectral_indices")
    with pytest.raises(ProcessParameterInvalid, match="different process 'deepfeatures_spectral"):
        register(registry)
    register(registry, overwrite=True)
    got = registry["deepfeatures_spectral_indices"]
    assert inspect.unwrap(got.implementation) is ours.get_implementation(
        "deepfeatures_spectral_indices"
    )


def test_overwrite_leaves_our_own_entries_alone():
    registry = dask_registry()
    register(registry)
    entries = {key: registry[key] for key in registry}
    register(registry, overwrite=True)
    assert all(registry[key] is entry for key, entry in entries.items())


@pytest.mark.parametrize("registry", [{}, None, "registry", object()])
def test_register_refuses_wrong_registry_types(registry):
    with pytest.raises(ProcessParameterInvalid, match=r"openeo_pg_parser_networkx.ProcessRegistry"):
        register(registry)


def test_register_refuses_our_executor_registry():
    from openeo_deepfeatures.local import Registry

    with pytest.raises(ProcessParameterInvalid, match="registry"):
        register(Registry())


# --------------------------------------------------------------------------- spec validation


def _broken(**change) -> dict:
    spec = ours.get_spec("deepfeatures_spectral_indices")
    for path, value in change.items():
        *parents, last = path.split("__")
        target = spec
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is ...:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return spec


BROKEN_SPECS = {
    "no returns": (_broken(returns=...), "'returns' is a required property"),
    "no description": (_broken(description=...), "'description' is a required property"),
    "bad id": (_broken(id="deepfeatures spectral"), "at id"),
    "bad parameter name": (_broken(parameters__1__name="in-dices"), "at parameters/1/name"),
    "parameter without schema": (_broken(parameters__1__schema=...), "'schema' is a required"),
    "schema not a schema": (_broken(parameters__0__schema="datacube"), "parameters/0/schema"),
    "unknown data type": (
        _broken(parameters__2__schema={"type": "no-such-type"}),
        "at parameters/2/schema/type",
    ),
    "invalid JSON schema": (
        _broken(parameters__2__schema={"type": "string", "minLength": "one"}),
        "invalid schema for its parameter 'constants'",
    ),
    "default against schema": (
        _broken(parameters__1__default="NDVI"),
        "gives parameter 'indices' the default 'NDVI'",
    ),
    "link without href": (_broken(links=[{"rel": "about"}]), "'href' is a required property"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SPECS))
def test_validate_spec_refuses_broken_descriptions(case):
    spec, message = BROKEN_SPECS[case]
    with pytest.raises(ProcessParameterInvalid, match=r"process '.*'") as info:
        validate_spec(spec)
    assert message in str(info.value)


def test_validate_spec_names_the_process():
    with pytest.raises(ProcessParameterInvalid, match="'deepfeatures_spectral_indices'"):
        validate_spec(_broken(returns=...))
    with pytest.raises(ProcessParameterInvalid, match="'<not a dict>'"):
        validate_spec(["not", "a", "spec"])


def test_validate_spec_checks_duplicate_parameters_and_the_implementation():
    spec = ours.get_spec("deepfeatures_embed")
    spec["parameters"].append(dict(spec["parameters"][0]))
    with pytest.raises(ProcessParameterInvalid, match=r"parameters \['data'\] more than once"):
        validate_spec(spec)

    def other(data, model=None, extra=None):
        return data

    with pytest.raises(ProcessParameterInvalid, match="its implementation"):
        validate_spec(ours.get_spec("deepfeatures_embed"), other)
    validate_spec(
        ours.get_spec("deepfeatures_embed"), ours.get_implementation("deepfeatures_embed")
    )


def test_validate_spec_accepts_the_official_process_specs(shared_dir):
    """Not stricter than openEO: every official spec (and proposal) passes."""
    folder = shared_dir / "openeo-processes"
    files = sorted(folder.glob("*.json")) + sorted((folder / "proposals").glob("*.json"))
    assert len(files) > 100
    for path in files:
        validate_spec(json.loads(path.read_text("utf-8")))


def test_register_refuses_an_invalid_spec_before_changing_anything(monkeypatch):
    registry = dask_registry()
    before = {key: registry[key] for key in registry}
    good = ours.get_spec

    def get_spec(process_id):
        spec = good(process_id)
        if process_id == "deepfeatures_spectral_indices":
            spec["parameters"][1]["name"] = "bad name"
        return spec

    monkeypatch.setattr(ours, "get_spec", get_spec)
    with pytest.raises(ProcessParameterInvalid, match="'deepfeatures_spectral_indices'"):
        register(registry)
    assert {key: registry[key] for key in registry} == before


# --------------------------------------------------------------------------- entry points


def _entry_point(name: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_load_plugins_warns_for_broken_plugins_and_loads_the_rest(monkeypatch):
    found = [
        _entry_point("missing", "no_such_module_for_deepfeatures_tests:register"),
        _entry_point("deepfeatures", "openeo_deepfeatures.plugin:register"),
        _entry_point("failing", "json:loads"),  # json.loads(registry) raises TypeError
    ]
    calls = []

    def entry_points(*, group):
        calls.append(group)
        return found

    monkeypatch.setattr(plugin.metadata, "entry_points", entry_points)
    registry = dask_registry()
    with pytest.warns(PluginWarning) as caught:
        loaded = load_plugins(registry)
    assert loaded == ["deepfeatures"]
    assert calls == [ENTRY_POINT_GROUP]
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert "'failing' (json:loads)" in messages[0] and "TypeError" in messages[0]
    assert "'missing'" in messages[1] and "ModuleNotFoundError" in messages[1]
    assert ("deepfeatures", "deepfeatures_spectral_indices") in registry


def test_load_plugins_warns_when_our_register_refuses(monkeypatch):
    monkeypatch.setattr(
        plugin.metadata,
        "entry_points",
        lambda *, group: [_entry_point("deepfeatures", "openeo_deepfeatures.plugin:register")],
    )
    registry = ProcessRegistry()
    registry["deepfeatures_embed"] = Process(spec={"id": "deepfeatures_embed"})
    with pytest.warns(PluginWarning, match=r"'deepfeatures'.*ProcessParameterInvalid"):
        assert load_plugins(registry) == []
    assert len(registry) == 1


def test_load_plugins_refuses_wrong_registry_types():
    with pytest.raises(ProcessParameterInvalid, match="registry"):
        load_plugins({})


def test_the_entry_point_is_installed():
    """pyproject.toml advertises register() (needs a fresh `pip install -e .`)."""
    found = {e.name: e.value for e in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert found.get("deepfeatures") == "openeo_deepfeatures.plugin:register"
    registry = dask_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        assert "deepfeatures" in load_plugins(registry)
    assert ("predefined", "deepfeatures_feature_cube") in registry


# --------------------------------------------------------------------------- listings


def _write_udps(folder: Path, ids) -> None:
    folder.mkdir(exist_ok=True)
    for pid in ids:
        (folder / f"{pid}.json").write_text(json.dumps({"id": pid, "process_graph": {}}))


def test_processes_listing_links_the_udps(tmp_path, monkeypatch):
    with_udp = ["deepfeatures_embed", "deepfeatures_spectral_indices"]
    _write_udps(tmp_path, with_udp)
    monkeypatch.setattr(plugin, "_udp_dir", lambda: tmp_path)
    listing = processes_listing(base_url="https://example.org/udps/")
    assert [p["id"] for p in listing["processes"]] == list(ours.PROCESS_IDS)
    assert listing["links"] and all({"rel", "href"} <= set(link) for link in listing["links"])
    for spec in listing["processes"]:
        validate_spec(spec, ours.get_implementation(spec["id"]))
        alternates = [link for link in spec.get("links", []) if link["rel"] == "alternate"]
        if spec["id"] in with_udp:
            assert alternates == [
                {
                    "rel": "alternate",
                    "href": f"https://example.org/udps/{spec['id']}.json",
                    "type": "application/json",
                    "title": alternates[0]["title"],
                }
            ]
        else:
            assert alternates == []
        # everything else is the spec as the registry gets it
        rest = {k: v for k, v in spec.items() if k != "links"}
        assert rest == {k: v for k, v in ours.get_spec(spec["id"]).items() if k != "links"}


def test_processes_listing_links_every_packaged_udp():
    """Each of our processes has its portable UDP in process_graphs/, linked by default."""
    from openeo_deepfeatures.udps import NAMESPACE_URL

    folder = REPO / "process_graphs"
    for spec in processes_listing()["processes"]:
        hrefs = [link["href"] for link in spec["links"] if link["rel"] == "alternate"]
        assert hrefs == [f"{NAMESPACE_URL}/{spec['id']}.json"], spec["id"]
        assert (folder / f"{spec['id']}.json").is_file()


UDF_A = '# /// script\n# dependencies = ["numpy>=1.26", "xarray>=2024.1"]\n# ///\n"""A."""\n'
UDF_B = (
    "# /// script\n"
    '# requires-python = ">=3.9"\n'
    "# dependencies = [\n"
    '#   "NumPy<3",\n'
    '#   "onnxruntime>=1.17",\n'
    "# ]\n"
    "# ///\n"
    "import numpy\n"
)


def test_udf_runtimes_merges_the_script_headers():
    runtimes = udf_runtimes({"a.py": UDF_A, "b.py": UDF_B})
    python = runtimes["Python"]
    assert python["type"] == "language" and python["default"] in python["versions"]
    libraries = python["versions"][python["default"]]["libraries"]
    assert sorted(libraries) == ["numpy", "onnxruntime", "xarray"]
    assert SpecifierSet(libraries["numpy"]["version"]) == SpecifierSet(">=1.26,<3")
    assert libraries["onnxruntime"]["version"] == ">=1.17"
    assert libraries["numpy"]["description"] == "needed by a.py, b.py"
    assert "Python >=3.9" in python["description"]


@pytest.mark.parametrize(
    "source",
    ['"""No header."""\n', UDF_A + UDF_A],
)
def test_udf_runtimes_refuses_files_without_one_header(source):
    with pytest.raises(ProcessParameterInvalid, match=r"'broken\.py'.*PEP 723"):
        udf_runtimes({"broken.py": source})


def test_udf_runtimes_of_the_packaged_udfs():
    """What our udf/*.py files say they need, read independently from their headers."""
    import re

    libraries = udf_runtimes()["Python"]["versions"]["3"]["libraries"]
    expected: dict[str, SpecifierSet] = {}
    for path in sorted((REPO / "udf").glob("[!_]*.py")):
        header = re.search(r"^# dependencies = \[(.*?)\]$", path.read_text(), re.M)
        assert header, path
        for item in json.loads(f"[{header.group(1)}]"):
            name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)(.*)", item).groups()
            expected[name.lower()] = expected.get(name.lower(), SpecifierSet()) & SpecifierSet(spec)
    assert {"numpy", "xarray"} <= set(expected)
    assert {k: SpecifierSet(v["version"]) for k, v in libraries.items()} == expected


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deepfeatures")
    add_processes_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["processes", *argv])


def test_cli_json(capsys, tmp_path, monkeypatch):
    _write_udps(tmp_path, ours.PROCESS_IDS)
    monkeypatch.setattr(plugin, "_udp_dir", lambda: tmp_path)
    args = _cli("--json", "--base-url", "https://example.org/pg")
    assert args.func(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"processes", "udf_runtimes"}
    assert document["processes"] == processes_listing(base_url="https://example.org/pg")
    assert document["udf_runtimes"] == udf_runtimes()


def test_cli_text(capsys, tmp_path, monkeypatch):
    _write_udps(tmp_path, ["deepfeatures_embed"])
    monkeypatch.setattr(plugin, "_udp_dir", lambda: tmp_path)
    args = _cli("--base-url", "https://example.org/pg")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for pid in ours.PROCESS_IDS:
        assert f"{pid}(data" in out
    assert "deepfeatures_spectral_indices(data, indices?, constants?, formulas?)" in out
    assert out.count("UDP: ") == 1
    assert "UDP: https://example.org/pg/deepfeatures_embed.json" in out
    assert "UDF runtime: Python 3 with numpy>=1.26" in out
