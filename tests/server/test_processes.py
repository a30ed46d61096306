"""``GET /processes`` lists every process the executor runs, each a valid openEO description."""

from __future__ import annotations

import jsonschema
import pytest
import requests

from openeo_deepfeatures import processes as ours
from openeo_deepfeatures.local.registry import default_registry
from openeo_deepfeatures.plugin import process_schema


@pytest.fixture(scope="module")
def listed(server) -> dict[str, dict]:
    return {p["id"]: p for p in requests.get(f"{server.url}/processes").json()["processes"]}


def test_every_executor_process_is_listed(listed):
    assert sorted(listed) == default_registry().ids()
    for pid in ours.PROCESS_IDS:
        assert listed[pid] == ours.get_spec(pid)


def test_listed_processes_follow_the_openeo_process_schema(listed):
    """What test_GET_processes of openeo-test-suite would check, with a schema that works
    (the OpenAPI document's oneOf for process schemas admits none, see test_compliance)."""
    validator = jsonschema.Draft7Validator(process_schema("predefined_process"))
    problems = {
        pid: [e.message for e in validator.iter_errors(spec)][:3] for pid, spec in listed.items()
    }
    assert {pid: p for pid, p in problems.items() if p} == {}
