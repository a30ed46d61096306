"""The local openEO executor: run process graphs on dask, the same graphs a backend runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .evaluate import Context, Scope, evaluate
from .graph import Graph, load_graph
from .processes import RunSettings, settings
from .registry import Registry, default_registry

__all__ = ["Graph", "Registry", "default_registry", "load_graph", "run_process_graph"]


def run_process_graph(
    graph: Any,
    *,
    parameters: Mapping[str, Any] | None = None,
    collections: Mapping[str, Any] | None = None,
    udps: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    allow_udf: bool = True,
    registry: Registry | None = None,
) -> Any:
    """Run an openEO process graph locally.

    ``graph``: a dict (``{"process_graph": ...}`` or flat), JSON text, a path, or an openEO
    client object with ``flat_graph()``. ``parameters``: values for the graph's parameters
    (UDP parameters get their defaults). ``collections``: extra ``load_collection`` ids mapped
    to files or cubes (``DEMO_S2`` is always there). ``udps``: user-defined processes by id.
    ``output``: folder for ``save_result`` (default: the working directory).

    Returns the result node's value: a DataArray, or the STAC Item of what ``save_result`` wrote.
    """
    g = load_graph(graph)
    values = dict(parameters or {})
    for param in g.parameters:
        if param["name"] not in values and "default" in param:
            values[param["name"]] = param["default"]
    ctx = Context(
        registry=registry or default_registry(),
        udps={k: load_graph(v) for k, v in (udps or {}).items()},
        builtin_udp_dirs=_builtin_udp_dirs(),
        allow_udf=allow_udf,
    )
    token = settings.set(RunSettings(collections, output))
    try:
        return evaluate(g, Scope(values), ctx)
    finally:
        settings.reset(token)


def _builtin_udp_dirs() -> tuple[Path, ...]:
    """The packaged ``process_graphs/`` folder (this package's UDPs)."""
    from importlib import resources

    folder = Path(str(resources.files("openeo_deepfeatures.process_graphs")))
    return (folder,) if folder.is_dir() else ()
