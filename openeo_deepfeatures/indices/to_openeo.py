"""Emit the index DAG as openEO process-graph nodes (pure openEO math, bands by label).

The callback is meant for ``apply_dimension(dimension="bands")``: its parameter ``data`` is
the array of band values of one pixel; bands are picked with ``array_element(label=...)``,
never by position; shared sub-expressions become one node each; the result is
``array_create`` of the index values in the requested order. Follow with
``rename_labels(dimension="bands", target=<index names>)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .dag import Dag
from .resolve import build_dag, resolve_indices

__all__ = ["OPENEO_PROCESS", "indices_callback", "spectral_indices_graph"]

#: DAG op -> (openEO process id, argument names).
OPENEO_PROCESS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "add": ("add", ("x", "y")),
    "sub": ("subtract", ("x", "y")),
    "mul": ("multiply", ("x", "y")),
    "div": ("divide", ("x", "y")),
    "pow": ("power", ("base", "p")),
    "exp": ("exp", ("p",)),
    "sqrt": ("sqrt", ("x",)),
    "abs": ("absolute", ("x",)),
    "ln": ("ln", ("x",)),
}


def _emit(dag: Dag, roots: Sequence[tuple[str, int]], parameter: str) -> dict[str, dict]:
    nodes: dict[str, dict] = {}
    ids: dict[int, Any] = {}

    def ref(n: int) -> Any:
        if n in ids:
            return ids[n]
        node = dag.nodes[n]
        kind = node[0]
        if kind == "const":
            ids[n] = node[1]
            return ids[n]
        if kind == "band":
            node_id = f"band_{node[1]}"
            nodes[node_id] = {
                "process_id": "array_element",
                "arguments": {"data": {"from_parameter": parameter}, "label": node[1]},
            }
        else:
            args = [ref(c) for c in node[1:]]
            node_id = f"n{n}"
            if kind == "square":
                process, arguments = "power", {"base": args[0], "p": 2}
            elif kind == "neg":
                process, arguments = "multiply", {"x": -1, "y": args[0]}
            elif kind == "log10":
                process, arguments = "log", {"x": args[0], "base": 10}
            else:
                process, names = OPENEO_PROCESS[kind]
                arguments = dict(zip(names, args, strict=True))
            nodes[node_id] = {"process_id": process, "arguments": arguments}
        ids[n] = {"from_node": node_id}
        return ids[n]

    values = [ref(root) for _, root in roots]
    nodes["result"] = {
        "process_id": "array_create",
        "arguments": {"data": values},
        "result": True,
    }
    return nodes


def indices_callback(
    indices: Sequence[str],
    bands: Sequence[str],
    *,
    constants: Mapping[str, Any] | None = None,
    formulas: Mapping[str, str] | None = None,
    parameter: str = "data",
) -> dict[str, dict]:
    """Process-graph nodes computing ``indices`` from the band array parameter ``parameter``."""
    resolved = resolve_indices(indices, bands, constants, formulas)
    dag, roots = build_dag(resolved)
    return _emit(dag, roots, parameter)


def spectral_indices_graph(
    indices: Sequence[str],
    bands: Sequence[str],
    *,
    data: Any = None,
    constants: Mapping[str, Any] | None = None,
    formulas: Mapping[str, str] | None = None,
) -> dict[str, dict]:
    """``apply_dimension`` + ``rename_labels`` nodes for a cube node ``data``.

    ``data`` defaults to ``{"from_parameter": "data"}`` (the UDP's input cube).
    """
    resolved = resolve_indices(indices, bands, constants, formulas)
    dag, roots = build_dag(resolved)
    callback = _emit(dag, roots, "data")
    return {
        "indices": {
            "process_id": "apply_dimension",
            "arguments": {
                "data": data if data is not None else {"from_parameter": "data"},
                "process": {"process_graph": callback},
                "dimension": "bands",
            },
        },
        "rename": {
            "process_id": "rename_labels",
            "arguments": {
                "data": {"from_node": "indices"},
                "dimension": "bands",
                "target": [r.name for r in resolved],
            },
            "result": True,
        },
    }
