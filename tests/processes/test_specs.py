"""Our openEO process specs: well-formed, bound to their implementations, known subtypes."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.errors import ProcessUnsupported
from openeo_deepfeatures.plugin import PROCESS_SCHEMA
from openeo_deepfeatures.processes import PROCESS_IDS, get_implementation, get_spec, list_specs

from ..conftest import make_cube

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "openeo-processes"


def schemas_of(value):
    """Every (sub-)schema in a parameter or return schema."""
    if isinstance(value, list):
        for item in value:
            yield from schemas_of(item)
    elif isinstance(value, dict):
        yield value
        for key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties"):
            if key in value:
                yield from schemas_of(value[key])


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_spec_is_a_valid_process_description(process_id):
    spec = get_spec(process_id)
    jsonschema.validate(spec, PROCESS_SCHEMA)  # the project's one schema
    assert spec["id"] == process_id
    for schema in schemas_of(
        [p["schema"] for p in spec["parameters"]] + [spec["returns"]["schema"]]
    ):
        jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_subtypes_are_openeo_subtypes(process_id):
    subtypes = json.loads((SHARED / "meta" / "subtype-schemas.json").read_text())["definitions"]
    spec = get_spec(process_id)
    used = {
        s["subtype"]
        for s in schemas_of([p["schema"] for p in spec["parameters"]] + [spec["returns"]["schema"]])
        if "subtype" in s
    }
    assert used, "every process here takes and returns data cubes"
    assert used <= set(subtypes)


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_spec_bound_to_implementation(process_id):
    spec = get_spec(process_id)
    signature = inspect.signature(get_implementation(process_id))
    assert [p["name"] for p in spec["parameters"]] == list(signature.parameters)
    for param in spec["parameters"]:
        default = signature.parameters[param["name"]].default
        if param.get("optional"):
            expected = list(default) if isinstance(default, tuple) else default
            assert param["default"] == expected, param["name"]
        else:
            assert default is inspect.Parameter.empty, param["name"]


@pytest.mark.parametrize("process_id", PROCESS_IDS)
def test_example_arguments_are_parameters(process_id):
    spec = get_spec(process_id)
    names = {p["name"] for p in spec["parameters"]}
    required = {p["name"] for p in spec["parameters"] if not p.get("optional")}
    for example in spec["examples"]:
        assert required <= set(example["arguments"]) <= names


def test_list_and_unknown():
    assert [s["id"] for s in list_specs()] == list(PROCESS_IDS)
    with pytest.raises(ProcessUnsupported, match="nope"):
        get_spec("nope")


def test_spectral_indices_process_calls_native_api():
    cube = make_cube(shape=(2, 3, 3))
    impl = get_implementation("deepfeatures_spectral_indices")
    out = impl(cube, ["NDVI", "SAVI"], {"SAVI": {"L": 0.25}})
    xr.testing.assert_identical(
        out, odf.compute_indices(cube, ["NDVI", "SAVI"], constants={"SAVI": {"L": 0.25}})
    )


def test_preprocess_process_calls_native_api(demo_dn):
    impl = get_implementation("deepfeatures_preprocess_s2")
    cube = demo_dn.isel(t=slice(0, 3))
    np.testing.assert_array_equal(
        impl(cube, dilation=1).values, odf.preprocess_s2(cube, dilation=1).values
    )
