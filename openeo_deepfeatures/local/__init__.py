"""The local openEO executor: run process graphs on dask, the same graphs a backend runs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..policy import ExecutionPolicy, use_policy
from .evaluate import Context, Scope, evaluate
from .graph import Graph, load_graph
from .processes import RunSettings, settings
from .registry import Registry, default_registry

__all__ = [
    "ExecutionPolicy",
    "Graph",
    "Registry",
    "default_registry",
    "effective_policy",
    "load_graph",
    "run_process_graph",
]


def run_process_graph(
    graph: Any,
    *,
    parameters: Mapping[str, Any] | None = None,
    collections: Mapping[str, Any] | None = None,
    udps: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    allow_udf: bool = True,
    registry: Registry | None = None,
    policy: ExecutionPolicy | None = None,
) -> Any:
    """Run an openEO process graph locally.

    ``graph``: a dict (``{"process_graph": ...}`` or flat), JSON text, a path, or an openEO
    client object with ``flat_graph()``. ``parameters``: values for the graph's parameters
    (UDP parameters get their defaults). ``collections``: extra ``load_collection`` ids mapped
    to files or cubes (``DEMO_S2`` is always there). ``udps``: user-defined processes by id.
    ``output``: folder for ``save_result``, the only one the graph may write into.

    ``policy``: what the graph may read, write and fetch (:class:`ExecutionPolicy`). Without
    it, :meth:`ExecutionPolicy.local`: files in the working directory, public https URLs,
    ``save_result`` into ``output`` (default: the working directory). ``output`` replaces the
    policy's ``write_root``, ``allow_udf=False`` turns UDFs off whatever the policy says, and
    the files registered in ``collections`` are readable. A refusal raises
    :class:`~openeo_deepfeatures.errors.PermissionDenied` before anything is read or fetched.

    Returns the result node's value: a DataArray, or the STAC Item of what ``save_result`` wrote.
    """
    run_policy = effective_policy(
        policy, output=output, allow_udf=allow_udf, collections=collections
    )
    g = load_graph(graph)
    values = dict(parameters or {})
    for param in g.parameters:
        if param["name"] not in values and "default" in param:
            values[param["name"]] = param["default"]
    ctx = Context(
        registry=registry or default_registry(),
        udps={k: load_graph(v) for k, v in (udps or {}).items()},
        builtin_udp_dirs=_builtin_udp_dirs(),
        allow_udf=run_policy.allow_udf,
        policy=run_policy,
    )
    ctx.admit(g, "", "the process graph")
    for name, udp in ctx.udps.items():
        ctx.admit(udp, f"udps:{name}", f"the UDP '{name}'")
    token = settings.set(RunSettings(collections, run_policy.write_root))
    try:
        with use_policy(run_policy):
            return evaluate(g, Scope(values), ctx)
    finally:
        settings.reset(token)


def effective_policy(
    policy: ExecutionPolicy | None = None,
    *,
    output: str | os.PathLike | None = None,
    allow_udf: bool = True,
    collections: Mapping[str, Any] | None = None,
) -> ExecutionPolicy:
    """The policy ``run_process_graph`` runs a graph under (see its docstring)."""
    if policy is None:
        base = ExecutionPolicy.local(write_root=output)
    else:
        base = policy if output is None else policy.replace(write_root=output)
    if not allow_udf and base.allow_udf:
        base = base.replace(allow_udf=False)
    files = [v for v in (collections or {}).values() if isinstance(v, (str, os.PathLike))]
    return base.with_read_roots(*files)


def _builtin_udp_dirs() -> tuple[Path, ...]:
    """The packaged ``process_graphs/`` folder (this package's UDPs)."""
    from importlib import resources

    folder = Path(str(resources.files("openeo_deepfeatures.process_graphs")))
    return (folder,) if folder.is_dir() else ()
