"""Our UDPs and example graphs pass what the openEO Web Editor checks (webeditor/validate.mjs).

The node script validates with @openeo/js-processgraphs (the Web Editor's parser and
validator) and against the openEO API schema for process descriptions. These tests run it on
the repository's files, on the official openEO process specs (an independent positive
control), and on hand-made broken UDPs and graphs that it must reject, each by name.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from openeo_deepfeatures.plugin import process_schema

ROOT = Path(__file__).resolve().parents[1]
WEBEDITOR = ROOT / "webeditor"
SCRIPT = WEBEDITOR / "validate.mjs"
INSTALL_HINT = (
    "run `bash scripts/setup_test_tools.sh` (npm ci --prefix webeditor; needs Node.js >= 18)"
)
UDP_FILES = sorted((ROOT / "process_graphs").glob("*.json"))
EXAMPLE_FILES = sorted((ROOT / "process_graphs" / "examples").glob("*.json"))
SPEC_FILES = sorted((ROOT / "openeo_deepfeatures" / "processes" / "specs").glob("*.json"))


@dataclass(frozen=True)
class Report:
    returncode: int
    lines: dict[Path, dict[str, Any]]
    stderr: str

    def __getitem__(self, path: Path) -> dict[str, Any]:
        return self.lines[path.resolve()]

    def codes(self, path: Path) -> list[str]:
        return [e["code"] for e in self[path]["errors"]]


@pytest.fixture(scope="session")
def validate(shared_dir) -> Callable[..., Report]:
    """Run validate.mjs with the shared openEO specs and the given options."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"`node` is not on PATH: install Node.js, then {INSTALL_HINT}")
    if not (WEBEDITOR / "node_modules" / "@openeo" / "js-processgraphs" / "package.json").is_file():
        pytest.fail(f"webeditor/node_modules is missing: {INSTALL_HINT}")
    processes = shared_dir / "openeo-processes"

    def run(*options: str | Path, expect_lines: bool = True) -> Report:
        args = [node, str(SCRIPT), "--processes", str(processes), *map(str, options)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
        lines = {}
        for text in done.stdout.splitlines():
            line = json.loads(text)
            lines[(ROOT / line["file"]).resolve()] = line
        if expect_lines:
            assert done.returncode in (0, 1), done.stderr
            assert done.returncode == (0 if all(v["ok"] for v in lines.values()) else 1)
        return Report(done.returncode, lines, done.stderr)

    return run


# ------------------------------------------------------------------ the repository's files


@pytest.fixture(scope="session")
def repository_report(validate) -> Report:
    # --portable: the UDPs must run on any openEO backend, so they may use the openEO
    # processes and each other, but not the processes only our local executor implements.
    return validate("--portable")


def test_udps_exist():
    assert UDP_FILES, (
        "process_graphs/ holds no UDP JSON (openeo_deepfeatures.udps.write_udps writes them)"
    )


def test_every_repository_file_is_checked(repository_report):
    reported = set(repository_report.lines)
    expected = {p.resolve() for p in (*UDP_FILES, *EXAMPLE_FILES, *SPEC_FILES)}
    assert reported == expected
    kinds = {p.resolve(): "udp" for p in UDP_FILES}
    kinds |= {p.resolve(): "example" for p in EXAMPLE_FILES}
    kinds |= {p.resolve(): "spec" for p in SPEC_FILES}
    assert {p: line["kind"] for p, line in repository_report.lines.items()} == kinds


@pytest.mark.parametrize(
    "path",
    [*UDP_FILES, *EXAMPLE_FILES, *SPEC_FILES],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_repository_file_passes(repository_report, path):
    line = repository_report[path]
    assert line["errors"] == [], json.dumps(line["errors"], indent=2)
    assert line["ok"] is True
    if line["kind"] in ("udp", "spec"):
        assert line["id"] == path.stem


def test_udps_use_only_portable_processes(repository_report):
    for path in (*UDP_FILES, *EXAMPLE_FILES):
        line = repository_report[path]
        assert line["uses"], f"{path.name}: no processes found in its graph"
        unresolved = [u for u in line["uses"] if u.endswith("@?")]
        assert unresolved == [], f"{path.name}: {unresolved}"


# ------------------------------------------------------------------ positive control


def test_official_openeo_processes_pass(validate, tmp_path):
    """Every process of openEO 2.0.0-rc.2 passes the schema and (where it has one) graph checks.

    Except ``variance``: its graph in the spec writes ``"process-graph"`` for the ``apply``
    callback, so the callback is an argument object and ``from_node: subtract`` dangles.
    """
    report = validate("--check-processes", "--udps", tmp_path, "--specs", tmp_path)
    processes = {line["id"]: line for line in report.lines.values() if line["kind"] == "process"}
    assert len(processes) > 150
    failing = {pid: line["errors"] for pid, line in processes.items() if not line["ok"]}
    assert set(failing) == {"variance"}, failing
    assert [e["code"] for e in failing["variance"]] == ["ReferencedNodeMissing"]
    assert "'subtract'" in failing["variance"][0]["message"]
    with_graph = [line for line in processes.values() if line["uses"]]
    assert len(with_graph) >= 20  # their graphs went through js-processgraphs


# ------------------------------------------------------------------ negative tests

DATACUBE = {"type": "object", "subtype": "datacube"}


def good_udp() -> dict[str, Any]:
    """A correct UDP: NDVI by band label; uses UDP parameters inside its reducer callback."""
    band = {"type": "string", "subtype": "band-name"}
    return {
        "id": "good_ndvi",
        "summary": "NDVI of a data cube",
        "description": "Normalized difference of the near-infrared and red bands, by label.",
        "categories": ["math > indices"],
        "parameters": [
            {"name": "data", "description": "A raster data cube with bands.", "schema": DATACUBE},
            {
                "name": "red",
                "description": "Label of the red band.",
                "schema": band,
                "default": "B04",
                "optional": True,
            },
            {
                "name": "nir",
                "description": "Label of the near-infrared band.",
                "schema": band,
                "default": "B08",
                "optional": True,
            },
        ],
        "returns": {"description": "The NDVI per pixel and date.", "schema": DATACUBE},
        "process_graph": {
            "reduce": {
                "process_id": "reduce_dimension",
                "arguments": {
                    "data": {"from_parameter": "data"},
                    "dimension": "bands",
                    "reducer": {
                        "process_graph": {
                            "red": {
                                "process_id": "array_element",
                                "arguments": {
                                    "data": {"from_parameter": "data"},
                                    "label": {"from_parameter": "red"},
                                },
                            },
                            "nir": {
                                "process_id": "array_element",
                                "arguments": {
                                    "data": {"from_parameter": "data"},
                                    "label": {"from_parameter": "nir"},
                                },
                            },
                            "ndvi": {
                                "process_id": "normalized_difference",
                                "arguments": {"x": {"from_node": "nir"}, "y": {"from_node": "red"}},
                                "result": True,
                            },
                        }
                    },
                },
                "result": True,
            }
        },
    }


def good_example(namespace: str | None = "deepfeatures", process_id: str = "good_ndvi") -> dict:
    """An example graph: load a collection, call a UDP by id and namespace, save."""
    return {
        "process_graph": {
            "load": {
                "process_id": "load_collection",
                "arguments": {
                    "id": "SENTINEL2_L2A",
                    "spatial_extent": {"west": 24.0, "south": 45.0, "east": 24.1, "north": 45.1},
                    "temporal_extent": ["2020-01-01", "2021-01-01"],
                    "bands": ["B04", "B08"],
                },
            },
            "udp": {
                "process_id": process_id,
                "namespace": namespace,
                "arguments": {"data": {"from_node": "load"}},
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "udp"}, "format": "netCDF"},
                "result": True,
            },
        }
    }


def _reducer(udp: dict) -> dict:
    return udp["process_graph"]["reduce"]["arguments"]["reducer"]["process_graph"]


def _unknown_process(udp):
    udp["process_graph"]["reduce"]["process_id"] = "reduce_dimensions"


def _unknown_process_in_callback(udp):
    _reducer(udp)["ndvi"]["process_id"] = "normalised_difference"


def _missing_argument(udp):
    del udp["process_graph"]["reduce"]["arguments"]["dimension"]


def _missing_argument_in_callback(udp):
    del _reducer(udp)["red"]["arguments"]["data"]


def _unknown_argument(udp):
    udp["process_graph"]["reduce"]["arguments"]["dimensions"] = "bands"


def _invalid_argument(udp):
    udp["process_graph"]["reduce"]["arguments"]["dimension"] = 3


def _wrong_parameter(udp):
    udp["process_graph"]["reduce"]["arguments"]["data"] = {"from_parameter": "cube"}


def _wrong_parameter_in_callback(udp):
    _reducer(udp)["nir"]["arguments"]["label"] = {"from_parameter": "nir_band"}


def _missing_node(udp):
    _reducer(udp)["ndvi"]["arguments"]["y"] = {"from_node": "b04"}


def _cycle(udp):
    _reducer(udp)["red"]["arguments"]["data"] = {"from_node": "ndvi"}


def _no_result(udp):
    del udp["process_graph"]["reduce"]["result"]


def _no_result_in_callback(udp):
    del _reducer(udp)["ndvi"]["result"]


def _schema_bad_type(udp):
    udp["parameters"][0]["schema"] = {"type": "datacube"}


def _schema_missing_description(udp):
    del udp["parameters"][1]["description"]


def _schema_returns_without_schema(udp):
    del udp["returns"]["schema"]


def _schema_unknown_subtype(udp):
    udp["returns"]["schema"] = {"type": "object", "subtype": "raster-cubes"}


def _schema_subtype_of_other_type(udp):
    udp["parameters"][2]["schema"] = {"type": "string", "subtype": "datacube"}


def _schema_invalid_json_schema(udp):
    udp["parameters"][1]["schema"] = {"type": "string", "minLength": "one"}


def _id_mismatch(udp):
    udp["id"] = "good_ndvi_v2"


def _parameter_type_mismatch(udp):
    udp["parameters"][0]["schema"] = {"type": "number"}


# name -> (change to good_udp(), error code, text that the message must hold, node or path)
UDP_CASES: dict[str, tuple[Callable[[dict], None], str, str, str | None]] = {
    "unknown_process": (_unknown_process, "ProcessUnsupported", "'reduce_dimensions'", "reduce"),
    "unknown_process_in_callback": (
        _unknown_process_in_callback,
        "ProcessUnsupported",
        "'normalised_difference'",
        "reduce/ndvi",
    ),
    "missing_argument": (_missing_argument, "ProcessArgumentRequired", "'dimension'", "reduce"),
    "missing_argument_in_callback": (
        _missing_argument_in_callback,
        "ProcessArgumentRequired",
        "'data'",
        "reduce/red",
    ),
    "unknown_argument": (_unknown_argument, "ProcessArgumentUnsupported", "dimensions", "reduce"),
    "invalid_argument": (_invalid_argument, "ProcessArgumentInvalid", "'dimension'", "reduce"),
    "wrong_parameter": (_wrong_parameter, "ProcessGraphParameterMissing", "'cube'", "reduce"),
    "wrong_parameter_in_callback": (
        _wrong_parameter_in_callback,
        "ProcessGraphParameterMissing",
        "'nir_band'",
        "reduce/nir",
    ),
    "missing_node": (_missing_node, "ReferencedNodeMissing", "'b04'", None),
    "cycle": (_cycle, "ProcessGraphCycle", "'ndvi', 'red'", None),
    "no_result": (_no_result, "ResultNodeMissing", "result node", None),
    "no_result_in_callback": (
        _no_result_in_callback,
        "ResultNodeMissingCallback",
        "reduce_dimension",
        None,
    ),
    "schema_bad_type": (
        _schema_bad_type,
        "ProcessSchemaInvalid",
        "allowed values",
        "/parameters/0",
    ),
    "schema_missing_description": (
        _schema_missing_description,
        "ProcessSchemaInvalid",
        "'description'",
        "/parameters/1",
    ),
    "schema_returns_without_schema": (
        _schema_returns_without_schema,
        "ProcessSchemaInvalid",
        "'schema'",
        "/returns",
    ),
    "schema_unknown_subtype": (
        _schema_unknown_subtype,
        "DataTypeInvalid",
        "unknown subtype 'raster-cubes'",
        "/returns/schema",
    ),
    "schema_subtype_of_other_type": (
        _schema_subtype_of_other_type,
        "DataTypeInvalid",
        "subtype 'datacube' needs type 'object'",
        "/parameters/2/schema",
    ),
    "schema_invalid_json_schema": (
        _schema_invalid_json_schema,
        "DataTypeInvalid",
        "not a valid JSON Schema",
        "/parameters/1/schema/minLength",
    ),
    "id_mismatch": (_id_mismatch, "ProcessIdMismatch", "'good_ndvi_v2'", None),
    "parameter_type_mismatch": (
        _parameter_type_mismatch,
        "ProcessArgumentInvalid",
        "Schema for parameter 'data' not compatible",
        "reduce",
    ),
}

# name -> (example graph, error code, text the message must hold)
EXAMPLE_CASES: dict[str, tuple[dict, str, str]] = {
    "unknown_namespace": (good_example("elsewhere"), "ProcessUnsupported", "namespace: elsewhere"),
    "unknown_udp": (good_example(None, "bad_ndvi"), "ProcessUnsupported", "'bad_ndvi'"),
    "udp_without_data": (
        {"process_graph": {"udp": {"process_id": "good_ndvi", "arguments": {}, "result": True}}},
        "ProcessArgumentRequired",
        "'data'",
    ),
    "native_only_process": (
        good_example("deepfeatures", "deepfeatures_embed"),
        "ProcessUnsupported",
        "'deepfeatures_embed'",
    ),
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A folder of UDPs (one correct, the rest broken one way each) and example graphs."""
    folder = tmp_path_factory.mktemp("udps")
    (folder / "examples").mkdir()

    def write(path: Path, document: dict) -> None:
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")

    write(folder / "good_ndvi.json", good_udp())
    for name, (change, *_) in UDP_CASES.items():
        udp = copy.deepcopy(good_udp())
        change(udp)
        if udp["id"] == "good_ndvi":  # each UDP file holds its own id
            udp["id"] = name
        write(folder / f"{name}.json", udp)
    (folder / "not_json.json").write_text('{"id": "not_json",', encoding="utf-8")
    write(folder / "examples" / "good_deepfeatures_namespace.json", good_example())
    write(folder / "examples" / "good_null_namespace.json", good_example(None))
    for name, (graph, *_) in EXAMPLE_CASES.items():
        write(folder / "examples" / f"{name}.json", graph)
    return folder


@pytest.fixture(scope="module")
def broken_report(validate, broken) -> Report:
    return validate("--portable", "--udps", broken)


def test_broken_run_fails(broken_report, broken):
    assert broken_report.returncode == 1
    n_udps = len(UDP_CASES) + 2
    assert len(broken_report.lines) == len(SPEC_FILES) + n_udps + len(EXAMPLE_CASES) + 2
    assert "of" in broken_report.stderr and "files pass" in broken_report.stderr


def test_correct_udp_and_examples_pass(broken_report, broken):
    for path in (
        broken / "good_ndvi.json",
        broken / "examples" / "good_deepfeatures_namespace.json",
        broken / "examples" / "good_null_namespace.json",
    ):
        line = broken_report[path]
        assert line["ok"] and line["errors"] == [], line
    uses = broken_report[broken / "examples" / "good_deepfeatures_namespace.json"]["uses"]
    assert "good_ndvi@deepfeatures" in uses
    assert (
        "good_ndvi@user" in broken_report[broken / "examples" / "good_null_namespace.json"]["uses"]
    )


@pytest.mark.parametrize("case", sorted(UDP_CASES))
def test_broken_udp_is_reported(broken_report, broken, case):
    _, code, text, where = UDP_CASES[case]
    line = broken_report[broken / f"{case}.json"]
    assert line["ok"] is False
    matches = [e for e in line["errors"] if e["code"] == code and text in e["message"]]
    assert matches, json.dumps(line["errors"], indent=2)
    if where is not None and where.startswith("/"):  # a JSON pointer into the file
        assert any(e.get("path", "").startswith(where) for e in matches), matches
    elif where is not None:  # a node id, prefixed by the ids of the nodes holding its callback
        assert any(e.get("node") == where for e in matches), matches


def test_invalid_json_is_reported(broken_report, broken):
    line = broken_report[broken / "not_json.json"]
    assert line["ok"] is False
    assert [e["code"] for e in line["errors"]] == ["JsonInvalid"]


@pytest.mark.parametrize("case", sorted(EXAMPLE_CASES))
def test_broken_example_is_reported(broken_report, broken, case):
    _, code, text = EXAMPLE_CASES[case]
    line = broken_report[broken / "examples" / f"{case}.json"]
    assert line["ok"] is False
    assert any(e["code"] == code and text in e["message"] for e in line["errors"]), line["errors"]


def test_native_processes_resolve_without_portable(validate, broken, tmp_path):
    """Without --portable our native specs are in the registry (as on our local executor)."""
    (tmp_path / "examples").mkdir()
    shutil.copy(broken / "good_ndvi.json", tmp_path)
    shutil.copy(broken / "examples" / "native_only_process.json", tmp_path / "examples")
    native = tmp_path / "examples" / "native_only_process.json"

    report = validate("--udps", tmp_path)
    assert report.returncode == 0, report.lines[native.resolve()]
    assert "deepfeatures_embed@deepfeatures" in report[native]["uses"]
    assert validate("--portable", "--udps", tmp_path).codes(native) == ["ProcessUnsupported"]


def test_usage_errors(validate, tmp_path):
    missing = validate("--udps", tmp_path / "nowhere", expect_lines=False)
    assert missing.returncode == 2 and "--udps: no such directory" in missing.stderr
    assert missing.lines == {}
    unknown = validate("--frobnicate", expect_lines=False)
    assert unknown.returncode == 2 and "frobnicate" in unknown.stderr


# ------------------------------------------------------------------ the process schema


def _schema_validator(definition: str) -> jsonschema.Draft7Validator:
    schema = process_schema(definition)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_validator_reads_the_plugins_process_schema():
    """One schema for the plugin, the spec tests and the Web Editor check."""
    source = (WEBEDITOR / "validate.mjs").read_text("utf-8")
    assert "'openeo_deepfeatures', 'processes', 'process.schema.json'" in source
    assert not (WEBEDITOR / "schema").exists()


def test_process_schema_agrees_with_an_independent_validator(shared_dir):
    """Python's jsonschema, on the project's schema, judges as validate.mjs (ajv) does."""
    predefined = _schema_validator("predefined_process")
    official = shared_dir / "openeo-processes"
    specs = sorted([*official.glob("*.json"), *official.glob("proposals/*.json")]) + SPEC_FILES
    assert len(specs) > 150
    for path in specs:
        errors = [e.message for e in predefined.iter_errors(json.loads(path.read_text("utf-8")))]
        assert errors == [], path.name
    udp = _schema_validator("user_defined_process")
    assert list(udp.iter_errors(good_udp())) == []
    for case in ("schema_bad_type", "schema_missing_description", "schema_returns_without_schema"):
        broken_udp = copy.deepcopy(good_udp())
        UDP_CASES[case][0](broken_udp)
        assert list(udp.iter_errors(broken_udp)), case
    assert list(udp.iter_errors({"id": "no_graph", "parameters": []})), "needs process_graph"


def test_process_schema_checks_data_types_and_graphs():
    udp = _schema_validator("user_defined_process")

    def with_schema(schema: Any) -> dict:
        document = good_udp()
        document["parameters"][0]["schema"] = schema
        return document

    assert list(udp.iter_errors(with_schema({"type": "number"}))) == []
    assert list(udp.iter_errors(with_schema([{"type": "number"}, {"type": "null"}]))) == []
    assert list(udp.iter_errors(with_schema([])))  # no alternative at all
    assert list(udp.iter_errors(with_schema({"type": ["number", "number"]})))
    cube = {"type": "object", "subtype": "datacube", "dimensions": [{"type": "spatial"}]}
    assert list(udp.iter_errors(with_schema(cube))) == []
    cube["dimensions"][0]["axis"] = ["w"]
    assert list(udp.iter_errors(with_schema(cube)))
    callback = {"type": "object", "subtype": "process-graph", "parameters": [{"name": "x"}]}
    assert list(udp.iter_errors(with_schema(callback)))  # callback parameters need description
    callback["parameters"][0] |= {"description": "A value.", "schema": {"type": "number"}}
    assert list(udp.iter_errors(with_schema(callback))) == []

    def with_argument(value: Any) -> dict:
        document = good_udp()
        node = next(iter(document["process_graph"].values()))
        node["arguments"]["extra"] = value
        return document

    for good in (None, 1.5, "x", [1, {"from_parameter": "data"}], {"a": {"from_node": "n"}}):
        assert list(udp.iter_errors(with_argument(good))) == [], good
    for bad in (
        {"from_node": 5},
        {"from_parameter": "data", "extra": 1},
        {"process_graph": {}},
        {"process_graph": {"n": {"arguments": {}}}},  # a node without process_id
    ):
        assert list(udp.iter_errors(with_argument(bad))), bad
