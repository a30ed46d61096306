"""Reading and checking process graphs: dict, JSON text, file, or openEO client objects."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ProcessGraphInvalid

__all__ = ["Graph", "check_nodes", "count_nodes", "load_graph", "topological_order"]


@dataclass(frozen=True)
class Graph:
    """A flat process graph with its result node, and the UDP metadata when it has any."""

    nodes: Mapping[str, Mapping[str, Any]]
    result: str
    parameters: tuple[Mapping[str, Any], ...] = ()  # UDP parameter definitions
    id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _as_dict(graph: Any) -> dict[str, Any]:
    if hasattr(graph, "flat_graph") and callable(graph.flat_graph):  # openeo DataCube & co
        return graph.flat_graph()
    if hasattr(graph, "to_dict") and callable(graph.to_dict) and not isinstance(graph, Mapping):
        return graph.to_dict()
    if isinstance(graph, Mapping):
        return dict(graph)
    if isinstance(graph, (str, os.PathLike)):
        text = str(graph)
        if isinstance(graph, os.PathLike) or not text.lstrip().startswith(("{", "[")):
            path = Path(text)
            if not path.exists():
                raise ProcessGraphInvalid(reason=f"{text!r} is neither JSON nor an existing file.")
            text = path.read_text("utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProcessGraphInvalid(reason=f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProcessGraphInvalid(reason="the JSON document must be an object.")
        return data
    raise ProcessGraphInvalid(reason=f"cannot read a process graph from {type(graph).__name__}.")


def load_graph(graph: Any) -> Graph:
    """Accept ``{"process_graph": {...}}`` (UDP or job), a bare flat graph, JSON or a path."""
    data = _as_dict(graph)
    if "process" in data and isinstance(data["process"], Mapping):  # POST /result body
        data = dict(data["process"])
    nodes = data.get("process_graph", data)
    meta = (
        {k: v for k, v in data.items() if k != "process_graph"} if "process_graph" in data else {}
    )
    return check_nodes(nodes, meta)


def check_nodes(nodes: Any, meta: Mapping[str, Any] | None = None) -> Graph:
    meta = dict(meta or {})
    if not isinstance(nodes, Mapping) or not nodes:
        raise ProcessGraphInvalid(reason="a process graph must be a non-empty object of nodes.")
    for node_id, node in nodes.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("process_id"), str):
            raise ProcessGraphInvalid(reason=f"node '{node_id}' has no 'process_id'.")
        if not isinstance(node.get("arguments", {}), Mapping):
            raise ProcessGraphInvalid(reason=f"node '{node_id}': 'arguments' must be an object.")
    results = [n for n, node in nodes.items() if node.get("result") is True]
    if len(results) != 1:
        raise ProcessGraphInvalid(
            reason=f"exactly one node must have 'result': true, found {len(results) or 'none'}"
            + (f" ({results})" if results else "")
            + "."
        )
    _check_references(nodes)
    params = meta.get("parameters") or ()
    if not isinstance(params, (list, tuple)) or not all(
        isinstance(p, Mapping) and isinstance(p.get("name"), str) for p in params
    ):
        raise ProcessGraphInvalid(reason="'parameters' must be a list of objects with a 'name'.")
    return Graph(
        nodes=nodes, result=results[0], parameters=tuple(params), id=meta.get("id"), metadata=meta
    )


def count_nodes(nodes: Mapping[str, Any]) -> int:
    """Nodes of a flat graph, those of its callbacks (``process_graph`` arguments) included."""
    total = 0
    stack: list[Any] = [nodes]
    while stack:
        graph = stack.pop()
        if not isinstance(graph, Mapping):
            continue
        total += len(graph)
        todo = [node.get("arguments", {}) for node in graph.values() if isinstance(node, Mapping)]
        while todo:
            value = todo.pop()
            if isinstance(value, Mapping):
                if "process_graph" in value:
                    stack.append(value["process_graph"])
                else:
                    todo.extend(value.values())
            elif isinstance(value, list):
                todo.extend(value)
    return total


def _node_refs(value: Any) -> list[str]:
    """from_node references in an argument value, not descending into callbacks."""
    if isinstance(value, Mapping):
        if "from_node" in value:
            return [value["from_node"]]
        if "process_graph" in value:
            return []
        return [r for v in value.values() for r in _node_refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _node_refs(v)]
    return []


def _check_references(nodes: Mapping[str, Mapping[str, Any]]) -> None:
    deps = {n: _node_refs(node.get("arguments", {})) for n, node in nodes.items()}
    for node_id, refs in deps.items():
        for ref in refs:
            if ref not in nodes:
                raise ProcessGraphInvalid(
                    reason=f"node '{node_id}' refers to unknown node '{ref}'."
                )
    topological_order(nodes, deps)


def topological_order(
    nodes: Mapping[str, Any],
    deps: Mapping[str, list[str]] | None = None,
    roots: list[str] | None = None,
) -> list[str]:
    """Nodes in dependency order (iterative; graphs with thousands of nodes are fine)."""
    if deps is None:
        deps = {n: _node_refs(node.get("arguments", {})) for n, node in nodes.items()}
    order: list[str] = []
    state: dict[str, int] = {}
    for root in roots if roots is not None else list(nodes):
        if state.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node_id, i = stack[-1]
            refs = deps[node_id]
            if i < len(refs):
                stack[-1] = (node_id, i + 1)
                ref = refs[i]
                if state.get(ref) == 1:
                    cycle = [n for n, _ in stack[[n for n, _ in stack].index(ref) :]] + [ref]
                    raise ProcessGraphInvalid(
                        reason="cycle between nodes " + " -> ".join(cycle) + "."
                    )
                if not state.get(ref):
                    state[ref] = 1
                    stack.append((ref, 0))
            else:
                state[node_id] = 2
                order.append(node_id)
                stack.pop()
    return order
