"""Derive the JSON Schema for openEO process descriptions from the openEO API's ``openapi.yaml``.

The openEO project publishes the schema of a process description (predefined processes of
``GET /processes``, user-defined processes of ``PUT /process_graphs/{id}``) only inside its
OpenAPI document (https://github.com/Open-EO/openeo-api, Apache-2.0); the process linter
``@openeo/processes-lint`` is not on the npm registry. This script turns the needed part of
that document into a plain JSON Schema (draft-07) so that ``validate.mjs`` can check our
process JSON offline:

* ``#/components/schemas/X`` becomes ``#/definitions/X`` (only what the process schemas use);
* the OpenAPI keyword ``nullable: true`` becomes ``"null"`` in ``type``;
* OpenAPI annotations (``example``, ``x-*``) are dropped;
* ``process_json_schema`` selects the datacube/process-graph rules by ``subtype`` with
  ``if``/``then``. The OpenAPI text has ``oneOf: [Generic, Process Graph, Datacube]``, whose
  branches all accept a plain schema such as ``{"type": "number"}``, so taken literally no data
  type would validate; the discriminator is evidently ``subtype``.

Run it again when the API version changes and check the result in::

    curl -LO https://raw.githubusercontent.com/Open-EO/openeo-api/1.2.0/openapi.yaml
    python webeditor/make_process_schema.py openapi.yaml > webeditor/schema/openeo-process.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["convert", "main"]

ROOTS = ("process", "process_graph_with_metadata", "user_defined_process_meta")
PREFIX = "#/components/schemas/"
# keywords whose value is a schema, a list of schemas, or a map of name -> schema
SUBSCHEMA = {"items", "additionalProperties", "not", "if", "then", "else", "contains"}
SCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}
SCHEMA_MAPS = {"properties", "patternProperties", "definitions"}
DROP = {"example", "nullable", "discriminator"}


def _schema(node: Any) -> Any:
    """One OpenAPI schema object as plain JSON Schema (recursively)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROP or key.startswith("x-"):
            continue
        if key == "$ref":
            if not value.startswith(PREFIX):
                raise ValueError(f"unsupported $ref {value!r}")
            out[key] = "#/definitions/" + value[len(PREFIX) :]
        elif key in SUBSCHEMA:
            out[key] = _schema(value)
        elif key in SCHEMA_LISTS:
            out[key] = [_schema(v) for v in value]
        elif key in SCHEMA_MAPS:
            out[key] = {name: _schema(v) for name, v in value.items()}
        else:
            out[key] = value
    if node.get("nullable") is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = set()
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(PREFIX):
                found.add(value[len(PREFIX) :])
            else:
                found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def _discriminate_by_subtype(schema: dict[str, Any]) -> dict[str, Any]:
    branches = schema.pop("oneOf")
    rules = []
    for branch in branches:
        target = branch.get("$ref")
        if target is None:  # the "Generic" branch: no extra rules
            continue
        name = target.rsplit("/", 1)[-1]
        subtype = {
            "process_graph_json_schema": "process-graph",
            "datacube_json_schema": "datacube",
        }[name]
        rules.append(
            {
                "if": {"required": ["subtype"], "properties": {"subtype": {"const": subtype}}},
                "then": {"$ref": target},
            }
        )
    schema["allOf"] = [*schema.get("allOf", []), *rules]
    return schema


def convert(openapi: dict[str, Any], *, source: str) -> dict[str, Any]:
    """The JSON Schema document with ``definitions`` for the process schemas of ``openapi``."""
    components = openapi["components"]["schemas"]
    needed: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(_refs(components[name]) - needed)
    definitions = {name: _schema(components[name]) for name in sorted(needed)}
    definitions["process_json_schema"] = _discriminate_by_subtype(
        definitions["process_json_schema"]
    )
    # the entry points validate.mjs uses, as the API paths define them
    definitions["predefined_process"] = {
        "title": "Predefined Process (GET /processes)",
        "type": "object",
        "required": ["id", "description", "parameters", "returns"],
        "allOf": [{"$ref": "#/definitions/process"}],
    }
    definitions["user_defined_process"] = {
        "title": "User-Defined Process (GET /process_graphs/{process_graph_id})",
        "type": "object",
        "required": ["id", "process_graph"],
        "allOf": [{"$ref": "#/definitions/user_defined_process_meta"}],
    }
    version = openapi["info"]["version"]
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": f"https://api.openeo.org/{version}/process-description.json",
        "$comment": (
            f"Derived from the openEO API {version} ({source}, Apache-2.0, openEO Consortium) "
            "by webeditor/make_process_schema.py; do not edit by hand."
        ),
        "title": f"openEO API {version}: process descriptions",
        "definitions": definitions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("openapi", type=Path, help="openapi.yaml of the openEO API")
    parser.add_argument(
        "--source",
        default="https://github.com/Open-EO/openeo-api/blob/1.2.0/openapi.yaml",
        help="where openapi.yaml came from (recorded in $comment)",
    )
    args = parser.parse_args(argv)
    import yaml  # only needed to regenerate the schema

    openapi = yaml.safe_load(args.openapi.read_text("utf-8"))
    json.dump(convert(openapi, source=args.source), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
