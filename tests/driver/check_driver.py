"""openeo-python-driver check: our UDPs served as predefined processes of a driver backend.

Runs in its own virtual environment with ``openeo-driver`` installed (it pins an older pystac
than openeo-deepfeatures needs, so the two do not share an environment) and imports nothing of
openeo-deepfeatures: a driver-based backend (e.g. the geopyspark driver behind CDSE) gets our
processes from the UDP JSON files alone.

What it does, the way a driver-based backend would:

1. loads every ``*.json`` in UDP_DIR (openEO process JSON with a ``process_graph``) and
   registers it with ``custom_process_from_process_graph`` in the driver's process registries
   (openEO processes 1.x and 2.x), in the namespace ``backend`` (what ``GET /processes``
   lists and plain process ids resolve to) and in the namespace NAMESPACE;
2. builds the driver's Flask app on its dummy backend (``DummyBackendImplementation`` +
   ``build_app``) with a ``SENTINEL2_L2A`` collection (CDSE band labels) and, with Flask's
   ``test_client()``, reads ``GET /processes``, ``GET /processes/NAMESPACE`` and
   ``GET /processes/NAMESPACE/<id>``;
3. sends ``POST /validation`` for a graph ``load_collection -> <udp> -> save_result`` per UDP,
   by plain id and by namespace, for the chain preprocess -> indices -> embed when those UDPs
   are there, and for two graphs that must fail (an unknown process, a missing required
   parameter).

Prints one JSON document on stdout; exit status 0 when every check passed, 1 otherwise.

Usage: ``python check_driver.py UDP_DIR [--namespace deepfeatures] [--verbose]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

COLLECTION = "SENTINEL2_L2A"
S2_BANDS = [
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B11",
    "B12",
    "SCL",
]
CHAIN = ["deepfeatures_preprocess_s2", "deepfeatures_spectral_indices", "deepfeatures_embed"]
API = "/openeo/1.2"


def _collection_metadata() -> dict[str, Any]:
    return {
        "id": COLLECTION,
        "title": "Sentinel-2 L2A (band labels as in the CDSE collection)",
        "description": "Test collection of the openeo-deepfeatures driver check.",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-180, -56, 180, 83]]},
            "temporal": {"interval": [["2015-07-04T00:00:00Z", None]]},
        },
        "cube:dimensions": {
            "x": {"type": "spatial", "axis": "x", "reference_system": 4326, "step": 10},
            "y": {"type": "spatial", "axis": "y", "reference_system": 4326, "step": 10},
            "t": {"type": "temporal", "extent": ["2015-07-04T00:00:00Z", None]},
            "bands": {"type": "bands", "values": S2_BANDS},
        },
        "summaries": {"eo:bands": [{"name": b} for b in S2_BANDS]},
        "links": [],
    }


def _load_node() -> dict[str, Any]:
    return {
        "process_id": "load_collection",
        "arguments": {
            "id": COLLECTION,
            "spatial_extent": {"west": 5.0, "south": 51.0, "east": 5.05, "north": 51.05},
            "temporal_extent": ["2021-03-01", "2021-10-01"],
            "bands": S2_BANDS,
        },
    }


def _save_node(source: str) -> dict[str, Any]:
    return {
        "process_id": "save_result",
        "arguments": {"data": {"from_node": source}, "format": "GTiff"},
        "result": True,
    }


def _graph(steps: list[tuple[str, str | None, dict[str, Any]]]) -> dict[str, Any]:
    """``load_collection -> steps... -> save_result``; each step is (id, namespace, extra args)."""
    graph: dict[str, Any] = {"load": _load_node()}
    previous = "load"
    for i, (process_id, namespace, extra) in enumerate(steps):
        node: dict[str, Any] = {
            "process_id": process_id,
            "arguments": {"data": {"from_node": previous}, **extra},
        }
        if namespace is not None:
            node["namespace"] = namespace
        graph[f"step{i}"] = node
        previous = f"step{i}"
    graph["save"] = _save_node(previous)
    return graph


def _compare(listed: dict[str, Any] | None, expected: dict[str, Any]) -> dict[str, Any]:
    if listed is None:
        return {"listed": False, "equal": False, "missing_keys": sorted(expected)}
    return {
        "listed": True,
        "equal": listed == expected,
        "missing_keys": sorted(k for k in expected if k not in listed),
        "differing_keys": sorted(k for k in expected if k in listed and listed[k] != expected[k]),
    }


def load_udps(folder: Path) -> list[dict[str, Any]]:
    udps = []
    for path in sorted(folder.glob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        if not isinstance(document, dict) or "process_graph" not in document:
            raise SystemExit(f"{path}: not an openEO process with a process_graph")
        if document.get("id") != path.stem:
            raise SystemExit(f"{path}: id {document.get('id')!r} differs from the file name")
        udps.append(document)
    if not udps:
        raise SystemExit(f"{folder}: no UDP JSON files")
    return udps


def run(folder: Path, namespace: str) -> dict[str, Any]:
    from openeo_driver import ProcessGraphDeserializer as pgd
    from openeo_driver._version import __version__ as driver_version
    from openeo_driver.dummy.dummy_backend import DummyBackendImplementation
    from openeo_driver.views import build_app

    udps = load_udps(folder)
    registries = [pgd.process_registry_100, pgd.process_registry_2xx]
    for udp in udps:
        for ns in ("backend", namespace):
            pgd.custom_process_from_process_graph(udp, process_registries=registries, namespace=ns)

    backend = DummyBackendImplementation()
    app = build_app(backend_implementation=backend)
    app.config["TESTING"] = True
    client = app.test_client()

    def get(path: str) -> tuple[int, Any]:
        response = client.get(API + path)
        return response.status_code, response.get_json()

    def validate(graph: dict[str, Any]) -> list[dict[str, Any]]:
        response = client.post(API + "/validation", json={"process_graph": graph})
        if response.status_code != 200:
            return [{"code": f"HTTP{response.status_code}", "message": response.get_data(True)}]
        return response.get_json()["errors"]

    report: dict[str, Any] = {
        "openeo_driver": driver_version,
        "api": API,
        "namespace": namespace,
        "udps": [u["id"] for u in udps],
    }
    with backend.catalog.patch_collections({COLLECTION: _collection_metadata()}):
        status, body = get("/processes")
        by_id = {p["id"]: p for p in body.get("processes", [])} if status == 200 else {}
        report["processes"] = {
            "status": status,
            "count": len(by_id),
            "checks": {u["id"]: _compare(by_id.get(u["id"]), u) for u in udps},
        }
        status, body = get(f"/processes/{namespace}")
        in_ns = {p["id"]: p for p in body.get("processes", [])} if status == 200 else {}
        expected_ns = {u["id"]: {k: v for k, v in u.items() if k != "process_graph"} for u in udps}
        report["namespace_listing"] = {
            "status": status,
            "ids": sorted(in_ns),
            "checks": {i: _compare(in_ns.get(i), e) for i, e in expected_ns.items()},
        }
        details = {}
        for udp in udps:
            status, body = get(f"/processes/{namespace}/{udp['id']}")
            details[udp["id"]] = {
                "status": status,
                **_compare(body if status == 200 else None, udp),
            }
        report["process_details"] = details

        report["validation"] = {
            udp["id"]: {
                "plain": validate(_graph([(udp["id"], None, {})])),
                namespace: validate(_graph([(udp["id"], namespace, {})])),
            }
            for udp in udps
        }
        ids = {u["id"] for u in udps}
        if set(CHAIN) <= ids:
            report["chain"] = {
                "steps": CHAIN,
                "errors": validate(_graph([(pid, namespace, {}) for pid in CHAIN])),
            }
        first = udps[0]["id"]
        missing = _graph([(first, None, {})])
        missing["step0"]["arguments"].pop("data")
        report["negative"] = {
            "unknown_process": validate(_graph([("deepfeatures_no_such_process", None, {})])),
            "missing_parameter": {"process": first, "errors": validate(missing)},
        }

    report["ok"] = _passed(report)
    return report


def _passed(report: dict[str, Any]) -> bool:
    listed = all(c["equal"] for c in report["processes"]["checks"].values())
    in_ns = all(c["equal"] for c in report["namespace_listing"]["checks"].values())
    details = all(c["equal"] for c in report["process_details"].values())
    valid = all(not e for v in report["validation"].values() for e in v.values())
    chain = not report.get("chain", {}).get("errors")
    negative = report["negative"]
    refused = bool(negative["unknown_process"]) and bool(negative["missing_parameter"]["errors"])
    return listed and in_ns and details and valid and chain and refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("udp_dir", type=Path, help="folder of UDP JSON files (process_graphs/)")
    parser.add_argument("--namespace", default="deepfeatures")
    parser.add_argument("--verbose", action="store_true", help="show the driver's log")
    args = parser.parse_args(argv)
    # The driver logs the traceback of every failed dry run at ERROR; the report holds the
    # errors themselves.
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.CRITICAL)
    report = run(args.udp_dir, args.namespace)
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
