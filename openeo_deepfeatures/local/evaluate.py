"""Evaluating process graphs: scopes, fresh callbacks, nested references, UDPs.

What this layer fixes against walking graphs with openeo-pg-parser-networkx:
- a callback is evaluated afresh on every call (no result cached per node across windows);
- ``{"from_parameter": ...}`` resolves at any depth of dict/list arguments and through the
  parent scopes (a callback sees the parameters of the process graph around it);
- user-defined processes are evaluated with their own parameters and defaults, wherever
  they appear: as the result node, inside reducers and other callbacks, nested in UDPs.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from ..errors import (
    OpenEOError,
    PermissionDenied,
    ProcessParameterInvalid,
    ProcessParameterMissing,
    ProcessUnsupported,
)
from ..policy import ExecutionPolicy, current_policy, use_policy
from .graph import Graph, check_nodes, count_nodes, load_graph, topological_order
from .registry import Process, Registry, call_kwargs

BUILTIN_NAMESPACE = "deepfeatures"  # this package's processes and UDPs
#: Upstream processes that read or write files/URLs of their own (loaded with optional extras)
UNCHECKED_IO = frozenset(
    {
        "export_workspace",
        "load_ml_model",
        "load_result",
        "load_uploaded_files",
        "load_url",
        "run_udf_externally",
        "save_ml_model",
    }
)

__all__ = ["Context", "Scope", "evaluate"]

_MISSING = object()


@dataclass(frozen=True)
class Scope:
    """Parameters visible to a process graph, with the scope around it."""

    values: Mapping[str, Any]
    parent: Scope | None = None

    def lookup(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.values:
                return scope.values[name]
            scope = scope.parent
        return _MISSING


@dataclass
class Context:
    """What every node of one run shares."""

    registry: Registry
    udps: dict[str, Graph] = field(default_factory=dict)
    builtin_udp_dirs: tuple[Path, ...] = ()
    allow_udf: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    policy: ExecutionPolicy | None = None  # None: the current policy (policy.current_policy)
    _remote: dict[str, Graph] = field(default_factory=dict)
    _counted: dict[str, int] = field(default_factory=dict)

    @property
    def effective_policy(self) -> ExecutionPolicy:
        return self.policy if self.policy is not None else current_policy()

    def admit(self, graph: Graph, key: str, what: str) -> Graph:
        """Count ``graph``'s nodes (once per ``key``) against the policy's ``max_nodes``."""
        if key not in self._counted:
            self._counted[key] = count_nodes(graph.nodes)
            total = sum(self._counted.values())
            self.effective_policy.check_limit(
                "max_nodes",
                total,
                f"{what} brings the process graphs of this run to {total:,} nodes",
            )
        return graph

    def find_udp(self, process_id: str, namespace: str | None) -> Graph | None:
        if namespace is None or namespace == BUILTIN_NAMESPACE:
            if namespace is None and process_id in self.udps:
                return self.udps[process_id]
            for folder in self.builtin_udp_dirs:
                path = folder / f"{process_id}.json"
                if path.is_file():
                    graph = _udp_from(load_graph(path), process_id, str(path))
                    return self.admit(graph, str(path), f"the UDP '{process_id}'")
            return None
        what = f"the namespace of process '{process_id}'"
        if "://" in namespace and not namespace.lower().startswith("file:"):
            url = (
                namespace
                if namespace.endswith(".json")
                else f"{namespace.rstrip('/')}/{process_id}.json"
            )
            if url not in self._remote:
                graph = _udp_from(_fetch(url, self.effective_policy, what), process_id, url)
                self._remote[url] = self.admit(graph, url, f"the UDP '{process_id}' at {url}")
            return self._remote[url]
        policy = self.effective_policy
        try:
            path = policy.check_read(namespace, what=what)
        except PermissionDenied:
            if _looks_like_path(namespace):
                raise
            return None  # a plain namespace name ("user", "backend") that is no folder here
        if path.is_dir():
            path = policy.check_read(path / f"{process_id}.json", what=what)
        if path.is_file():
            graph = _udp_from(load_graph(path), process_id, str(path))
            return self.admit(graph, str(path), f"the UDP '{process_id}' in {str(path)!r}")
        return None


def _looks_like_path(namespace: str) -> bool:
    return (
        namespace.lower().startswith("file:")
        or "/" in namespace
        or os.sep in namespace
        or namespace.endswith(".json")
        or namespace.startswith(("~", "."))
    )


def _fetch(url: str, policy: ExecutionPolicy, what: str) -> Graph:
    try:
        body = policy.read_url(url, timeout=30, what=what)
    except OSError as exc:
        raise ProcessUnsupported(
            f"cannot fetch the process namespace {url!r}: {exc}", process="?", namespace=url
        ) from None
    return load_graph(body.decode("utf-8"))


def _udp_from(graph: Graph, process_id: str, where: str) -> Graph:
    if graph.id not in (None, process_id):
        raise ProcessUnsupported(
            f"{where} defines process '{graph.id}', not '{process_id}'.",
            process=process_id,
            namespace=where,
        )
    return graph


class Callback:
    """A child process graph as a Python callable, evaluated afresh on every call."""

    def __init__(self, graph: Graph, scope: Scope, ctx: Context) -> None:
        self.graph = graph
        self.scope = scope
        self.ctx = ctx

    def __call__(
        self,
        *args: Any,
        positional_parameters: Mapping[str, int] | None = None,
        named_parameters: Mapping[str, Any] | None = None,
        **inherited: Any,
    ) -> Any:
        params = dict(named_parameters or {})
        for name, index in (positional_parameters or {}).items():
            params[name] = args[index]
        if args and not positional_parameters:
            params.setdefault("x" if "x" in _parameters_used(self.graph) else "data", args[0])
        if "context" not in params:  # every openEO callback's context defaults to null
            params["context"] = inherited.get("context")
        # callbacks also run in dask's worker threads: the run's policy goes with them
        with use_policy(self.ctx.policy):
            return evaluate(self.graph, Scope(params, self.scope), self.ctx, inherited)


def _parameters_used(graph: Graph) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            if "from_parameter" in value:
                found.add(value["from_parameter"])
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(dict(graph.nodes))
    return found


def _resolve(
    value: Any, values: Mapping[str, Any], scope: Scope, ctx: Context, where: tuple[str, str]
) -> Any:
    if isinstance(value, Mapping):
        if "from_node" in value:
            return values[value["from_node"]]
        if "from_parameter" in value:
            found = scope.lookup(value["from_parameter"])
            if found is _MISSING:
                raise ProcessParameterMissing(process=where[1], parameter=value["from_parameter"])
            return found
        if "process_graph" in value:
            return Callback(check_nodes(value["process_graph"]), scope, ctx)
        return {k: _resolve(v, values, scope, ctx, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, values, scope, ctx, where) for v in value]
    return value


def _is_literal(value: Any) -> bool:
    if isinstance(value, Mapping):
        if {"from_node", "from_parameter", "process_graph"} & set(value):
            return False
        return all(_is_literal(v) for v in value.values())
    if isinstance(value, list):
        return all(_is_literal(v) for v in value)
    return True


def _check_arguments(spec: Mapping[str, Any], process_id: str, args: Mapping[str, Any]) -> None:
    params = {p["name"]: p for p in spec.get("parameters", [])}
    for name in args:
        if name not in params:
            raise ProcessParameterInvalid(
                process=process_id,
                parameter=name,
                reason=f"not a parameter of '{process_id}' (it has {sorted(params)}).",
            )
    for name, param in params.items():
        if name not in args and not param.get("optional"):
            raise ProcessParameterMissing(process=process_id, parameter=name)
        if name in args and _is_literal(args[name]):
            schemas = param["schema"] if isinstance(param["schema"], list) else [param["schema"]]
            value = args[name]
            # NaN is how no-data travels in arrays and between processes: valid where null is
            if not any(_valid(value, s) or _valid(_nan_to_none(value), s) for s in schemas):
                raise ProcessParameterInvalid(
                    process=process_id,
                    parameter=name,
                    reason=f"{json.dumps(args[name])[:80]} does not match the schema {json.dumps(param['schema'])[:200]}.",
                )


def _nan_to_none(value: Any) -> Any:
    """``value`` with every float NaN replaced by None (null)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


def _valid(value: Any, schema: Mapping[str, Any]) -> bool:
    if schema.get("subtype") in (
        "datacube",
        "raster-cube",
        "vector-cube",
        "process-graph",
        "labeled-array",
    ):
        return (
            not isinstance(value, (str, int, float, bool))
            or schema.get("subtype") == "labeled-array"
        )
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    except jsonschema.SchemaError:
        return True  # openEO-specific schema keywords jsonschema cannot judge
    return True


def _json_like(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_like(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


_TYPED_SUBTYPES = frozenset({"bounding-box", "temporal-interval", "temporal-intervals"})


def _subtypes(schema: Any) -> set[str]:
    if isinstance(schema, list):
        return {t for s in schema for t in _subtypes(s)}
    return {schema["subtype"]} if isinstance(schema, Mapping) and "subtype" in schema else set()


def _coerce_for_upstream(
    process_id: str, spec: Mapping[str, Any] | None, args: dict[str, Any]
) -> dict[str, Any]:
    """Turn JSON values into the typed objects openeo-processes-dask expects.

    Its implementations take bounding boxes and temporal intervals as the pydantic models of
    openeo-pg-parser-networkx; coerce exactly as that parser does, but only the parameters
    whose schema is one of those (the parser would also turn a plain array such as ``[]`` or
    two dates given to ``sort`` into a ``TemporalInterval``).
    """
    from openeo_pg_parser_networkx.pg_schema import ProcessNode

    typed = {
        p["name"]
        for p in (spec or {}).get("parameters", [])
        if _subtypes(p.get("schema")) & _TYPED_SUBTYPES
    }
    # objects and lists only: bare strings such as "t" would be read as booleans by the union
    plain = {
        k: v
        for k, v in args.items()
        if k in typed and _json_like(v) and isinstance(v, (Mapping, list))
    }
    if not plain:
        return args
    with warnings.catch_warnings():  # the parser's note on dropping "Z" from ISO dates
        warnings.filterwarnings("ignore", "no explicit representation of timezones")
        node = ProcessNode.model_validate({"process_id": process_id, "arguments": plain})
    return {**args, **node.arguments}


_udp_depth: ContextVar[int] = ContextVar("deepfeatures_udp_depth", default=0)


def _run_udp(
    udp: Graph, process_id: str, args: Mapping[str, Any], ctx: Context, inherited: Mapping[str, Any]
) -> Any:
    depth = _udp_depth.get() + 1
    ctx.effective_policy.check_limit(
        "max_udp_depth", depth, f"the user-defined process '{process_id}' nested {depth} deep"
    )
    token = _udp_depth.set(depth)
    try:
        return _run_udp_body(udp, process_id, args, ctx, inherited)
    finally:
        _udp_depth.reset(token)


def _run_udp_body(
    udp: Graph, process_id: str, args: Mapping[str, Any], ctx: Context, inherited: Mapping[str, Any]
) -> Any:
    declared = {p["name"]: p for p in udp.parameters}
    unknown = sorted(set(args) - set(declared)) if declared else []
    if unknown:
        raise ProcessParameterInvalid(
            process=process_id,
            parameter=unknown[0],
            reason=f"not a parameter of '{process_id}' (it has {sorted(declared)}).",
        )
    values = dict(args)
    for name, param in declared.items():
        if name not in values:
            if "default" in param:
                values[name] = param["default"]
            elif not param.get("optional"):
                raise ProcessParameterMissing(process=process_id, parameter=name)
    return evaluate(udp, Scope(values), ctx, inherited)


def _call(
    node: Mapping[str, Any],
    raw_args: Mapping[str, Any],
    args: dict[str, Any],
    ctx: Context,
    inherited: Mapping[str, Any],
) -> Any:
    process_id = node["process_id"]
    namespace = node.get("namespace")
    if not ctx.registry.has(process_id, namespace):
        udp = ctx.find_udp(process_id, namespace)
        if udp is None:
            raise ProcessUnsupported(process=process_id, namespace=namespace or "predefined")
        return _run_udp(udp, process_id, args, ctx, inherited)
    process: Process = ctx.registry.get(process_id, namespace)
    if process.upstream and process_id in UNCHECKED_IO:
        raise PermissionDenied(
            reason=f"'{process_id}' reads or writes files and URLs the execution policy cannot "
            "check (openeo-processes-dask's implementation); it does not run in this executor."
        )
    if process_id == "run_udf" and not (ctx.allow_udf and ctx.effective_policy.allow_udf):
        raise ProcessUnsupported(
            "run_udf is disabled for this run (allow_udf=False; deepfeatures run: --no-udf).",
            process="run_udf",
            namespace="predefined",
        )
    if process.spec is not None:
        _check_arguments(process.spec, process_id, {k: raw_args[k] for k in args})
    if process.upstream:
        args = _coerce_for_upstream(process_id, process.spec, args)
        args = {k: _upstream_value(process.spec, k, v) for k, v in args.items()}
    kwargs = call_kwargs(process, inherited, args)
    result = process.implementation(**kwargs)
    return _boolean_scalar(process.spec, result) if process.upstream else result


def _is_math(spec: Mapping[str, Any] | None) -> bool:
    return any(str(c).startswith("math") for c in (spec or {}).get("categories", []))


def _numeric_array_param(spec: Mapping[str, Any] | None, name: str) -> bool:
    """Whether parameter ``name`` is an array of numbers (or nulls) and nothing else."""
    for param in (spec or {}).get("parameters", []):
        if param["name"] != name:
            continue
        schemas = param["schema"] if isinstance(param["schema"], list) else [param["schema"]]
        for schema in schemas:
            if schema.get("type") != "array":
                return False
            items = schema.get("items", {})
            kinds = items.get("type", [])
            kinds = set(kinds if isinstance(kinds, list) else [kinds])
            if "number" not in kinds or not kinds <= {"number", "null"}:
                return False
        return True
    return False


def _upstream_value(spec: Mapping[str, Any] | None, name: str, value: Any) -> Any:
    """An argument as openeo-processes-dask computes with it.

    - integer arrays as floats: openEO math is on numbers, not on wrapping machine integers
      (upstream computes ``B08 - B04`` or ``ndvi`` of uint16 digital numbers in uint16, so
      every negative difference silently wraps around to ~65535);
    - a JSON list of numbers/nulls for an array-of-numbers parameter as a float array with NaN
      for null, as the same data arrives inside a reducer.
    """
    dtype = getattr(value, "dtype", None)
    if dtype is not None and dtype.kind in "iu" and _is_math(spec):
        return value.astype(np.float32 if dtype.itemsize <= 2 else np.float64)
    if (
        isinstance(value, list)
        and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value
        )
        and _numeric_array_param(spec, name)
    ):
        return np.array([np.nan if v is None else v for v in value], dtype=float)
    return value


def _boolean_scalar(spec: Mapping[str, Any] | None, value: Any) -> Any:
    """A 0-d numpy result of a process whose spec returns ``boolean|null`` as a Python bool.

    openeo-processes-dask computes comparisons and logic with ``np.where(valid, result, nan)``:
    on scalars that gives ``array(1.)`` for ``true``; ``array(nan)``, no-data, stays NaN.
    """
    if not isinstance(value, (np.ndarray, np.generic)) or np.ndim(value) != 0:
        return value
    schema = (spec or {}).get("returns", {}).get("schema", {})
    types: set[str] = set()
    for s in schema if isinstance(schema, list) else [schema]:
        kind = s.get("type")
        types.update(kind if isinstance(kind, list) else [kind])
    if not types or not types <= {"boolean", "null"}:
        return value
    item = value.item()
    return item if isinstance(item, float) and math.isnan(item) else bool(item)


def evaluate(
    graph: Graph, scope: Scope, ctx: Context, inherited: Mapping[str, Any] | None = None
) -> Any:
    """Evaluate ``graph`` in ``scope``; every node once per call, in dependency order."""
    inherited = dict(inherited or {})
    values: dict[str, Any] = {}
    for node_id in topological_order(graph.nodes, roots=[graph.result]):
        node = graph.nodes[node_id]
        raw = node.get("arguments", {})
        try:
            args = {
                k: _resolve(v, values, scope, ctx, (node_id, node["process_id"]))
                for k, v in raw.items()
            }
            values[node_id] = _call(node, raw, args, ctx, inherited)
            _check_size(values[node_id], ctx.effective_policy, node["process_id"])
        except OpenEOError as exc:
            if exc.node_id is None:
                exc.node_id = node_id
            raise
        except Exception as exc:  # an upstream implementation failed: say where, keep the cause
            raise _upstream_error(exc, node_id, node["process_id"]) from exc
    return values[graph.result]


def array_bytes(value: Any) -> int:
    """Bytes held at once by ``value``: the whole of an in-memory array, the largest chunk of
    a dask array, the largest variable of a Dataset; 0 for anything else."""
    import dask.array as da
    import xarray as xr

    if isinstance(value, xr.Dataset):
        return max((array_bytes(v) for v in value.data_vars.values()), default=0)
    data = value.data if isinstance(value, xr.DataArray) else value
    dtype, shape = getattr(data, "dtype", None), getattr(data, "shape", None)
    if dtype is None or shape is None or not isinstance(data, (np.ndarray, np.generic, da.Array)):
        return 0
    if isinstance(data, da.Array):
        shape = tuple(max(c) if c else 0 for c in data.chunks)
    return math.prod(int(n) for n in shape if not math.isnan(n)) * dtype.itemsize


def _check_size(value: Any, policy: ExecutionPolicy, process_id: str) -> None:
    n = array_bytes(value)
    if n > policy.max_array_bytes:
        lazy = getattr(getattr(value, "data", value), "chunks", None) is not None
        what = "a chunk of its result" if lazy else "its result"
        policy.check_limit(
            "max_array_bytes", n, f"process '{process_id}': {what} holds {n:,} bytes"
        )


def _upstream_error(exc: Exception, node_id: str, process_id: str) -> OpenEOError:
    code = type(exc).__name__
    upstream_openeo = type(exc).__module__.startswith("openeo_processes_dask")
    error = OpenEOError(f"process '{process_id}' failed: {exc}")
    if upstream_openeo:
        error.code = code  # the upstream exception classes are named after openEO error codes
        error.status_code = 400
    error.node_id = node_id
    return error
