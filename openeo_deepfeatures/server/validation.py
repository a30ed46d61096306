"""``POST /validation``: what can be checked without running a graph.

Structure (one result node, known node references, no cycles, through the executor's own
:func:`~openeo_deepfeatures.local.graph.load_graph`), then every node, callbacks included: the
process exists (predefined, stored UDP, this package's UDPs), its required arguments are there,
and a literal ``load_collection`` id is a served collection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import (
    CollectionNotFound,
    OpenEOError,
    ProcessParameterMissing,
    ProcessUnsupported,
)
from ..local.graph import check_nodes, load_graph
from ..local.registry import Registry

__all__ = ["validate_graph"]


def validate_graph(
    body: Any,
    *,
    registry: Registry,
    udp_specs: Mapping[str, Mapping[str, Any]],
    builtin_udp: Callable[[str], bool],
    collections: set[str],
) -> list[dict[str, str]]:
    """openEO error objects (``code``, ``message``) for everything wrong with ``body``."""
    try:
        graph = load_graph(body)
    except OpenEOError as exc:
        return [exc.to_dict()]
    errors: list[dict[str, str]] = []

    def spec_of(process_id: str, namespace: str | None) -> Mapping[str, Any] | None:
        if registry.has(process_id, namespace):
            return registry.get(process_id, namespace).spec or {}
        if namespace is None and process_id in udp_specs:
            return udp_specs[process_id]
        if namespace in (None, "deepfeatures") and builtin_udp(process_id):
            return {}
        if isinstance(namespace, str) and namespace.startswith(("http://", "https://", "/")):
            return {}  # resolved when the graph runs
        return None

    def walk(nodes: Mapping[str, Mapping[str, Any]]) -> None:
        for node_id, node in nodes.items():
            pid, ns = node["process_id"], node.get("namespace")
            args = node.get("arguments", {})
            spec = spec_of(pid, ns)
            if spec is None:
                err: OpenEOError = ProcessUnsupported(process=pid, namespace=ns or "predefined")
                err.node_id = node_id
                errors.append(_with_node(err))
            else:
                for param in spec.get("parameters", []):
                    name = param.get("name")
                    if name not in args and not param.get("optional") and "default" not in param:
                        err = ProcessParameterMissing(process=pid, parameter=name)
                        err.node_id = node_id
                        errors.append(_with_node(err))
            cid = args.get("id") if pid == "load_collection" else None
            if isinstance(cid, str) and cid not in collections:
                err = CollectionNotFound(collection=cid)
                err.node_id = node_id
                errors.append(_with_node(err))
            for value in args.values():
                for callback in _callbacks(value):
                    try:
                        walk(check_nodes(callback).nodes)
                    except OpenEOError as exc:
                        exc.node_id = node_id
                        errors.append(_with_node(exc))

    walk(graph.nodes)
    return errors


def _with_node(exc: OpenEOError) -> dict[str, str]:
    out = exc.to_dict()
    if exc.node_id:
        out["message"] += f" (process graph node '{exc.node_id}')"
    return out


def _callbacks(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        if "process_graph" in value:
            return [value["process_graph"]]
        return [c for v in value.values() for c in _callbacks(v)]
    if isinstance(value, list):
        return [c for v in value for c in _callbacks(v)]
    return []
