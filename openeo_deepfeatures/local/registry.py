"""The process registry of the local executor, and the one place that assembles it.

Three layers, later ones win: every process of openeo-processes-dask with its spec, our fixes
and additions (``load_collection``, ``save_result`` in :mod:`.processes`, ``load_stac``,
``apply_neighborhood``, ``run_udf``, …), and the deepfeatures processes (also under the
namespace ``deepfeatures``). The modules implementing processes know nothing of the registry.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from .. import processes as ours
from ..errors import ProcessUnsupported
from .specs import spec_file, upstream_spec

__all__ = ["Process", "Registry", "default_registry"]


@dataclass(frozen=True)
class Process:
    id: str
    spec: Mapping[str, Any] | None
    implementation: Callable[..., Any]
    namespace: str | None = None
    upstream: bool = False  # an openeo-processes-dask implementation (typed arguments)

    @property
    def parameters(self) -> frozenset[str]:
        return _signature_names(self.implementation)


@cache
def _signature_names(func: Callable[..., Any]) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return frozenset()


# Modules of openeo-processes-dask whose processes its package namespace loses: its
# ``__init__`` never imports ``dates`` (date_between, date_difference, date_shift), and an
# ``except ImportError as e:`` there deletes the ``e`` it star-imported from ``math``.
_MISSED_MODULES = ("dates", "math")


@cache
def _upstream() -> dict[str, Process]:
    """openeo-processes-dask implementations paired with the specs it ships."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import openeo_processes_dask.process_implementations as impl
    members = dict(inspect.getmembers(impl, inspect.isfunction))
    for module_name in _MISSED_MODULES:
        module = importlib.import_module(f"{impl.__name__}.{module_name}")
        for name in module.__all__:
            members.setdefault(name, getattr(module, name))
    found: dict[str, Process] = {}
    for name, func in sorted(members.items()):
        pid = name[1:] if name.startswith("_") and not name.startswith("__") else name
        if spec_file(pid).is_file():
            found[pid] = Process(pid, upstream_spec(pid), func, upstream=True)
    return found


def _overrides() -> list[Process]:
    """Our implementations, replacing upstream's or filling its gaps."""
    # imported here: `import openeo_deepfeatures.local` stays free of pystac, openeo.udf, ...
    from . import neighborhood, processes, stac, udf

    return [
        Process("load_collection", upstream_spec("load_collection"), processes.load_collection),
        Process("save_result", upstream_spec("save_result"), processes.save_result),
        Process("apply_neighborhood", neighborhood.SPEC, neighborhood.apply_neighborhood),
        Process("apply_dimension", upstream_spec("apply_dimension"), udf.apply_dimension),
        Process("reduce_dimension", upstream_spec("reduce_dimension"), udf.reduce_dimension),
        Process("run_udf", upstream_spec("run_udf"), udf.run_udf),
        Process(
            "array_create",
            upstream_spec("array_create"),
            processes.array_create,
            upstream=True,
        ),
        Process(
            "array_contains",
            upstream_spec("array_contains"),
            processes.array_contains,
            upstream=True,
        ),
        Process("load_stac", stac.SPEC, stac.load_stac),
    ]


class Registry:
    """Processes by (namespace, id)."""

    def __init__(self) -> None:
        self._predefined: dict[str, Process] = {}
        self._namespaced: dict[tuple[str, str], Process] = {}

    def add(self, process: Process) -> None:
        if process.namespace is None:
            self._predefined[process.id] = process
        else:
            self._namespaced[(process.namespace, process.id)] = process

    def get(self, process_id: str, namespace: str | None = None) -> Process:
        if namespace is None and process_id in self._predefined:
            return self._predefined[process_id]
        if namespace is not None and (namespace, process_id) in self._namespaced:
            return self._namespaced[(namespace, process_id)]
        raise ProcessUnsupported(process=process_id, namespace=namespace or "predefined")

    def has(self, process_id: str, namespace: str | None = None) -> bool:
        if namespace is None:
            return process_id in self._predefined
        return (namespace, process_id) in self._namespaced

    def __contains__(self, process_id: str) -> bool:
        return process_id in self._predefined

    def ids(self) -> list[str]:
        return sorted(self._predefined)

    def specs(self) -> list[Mapping[str, Any]]:
        """What ``GET /processes`` would list."""
        return [p.spec for _, p in sorted(self._predefined.items()) if p.spec is not None]


def default_registry() -> Registry:
    """Upstream processes, our fixes and additions, and the deepfeatures processes."""
    registry = Registry()
    for process in _upstream().values():
        registry.add(process)
    for process in _overrides():
        registry.add(process)
    for pid in ours.PROCESS_IDS:
        spec, func = ours.get_spec(pid), ours.get_implementation(pid)
        registry.add(Process(pid, spec, func))
        registry.add(Process(pid, spec, func, namespace=ours.NAMESPACE))
    return registry


def call_kwargs(
    process: Process, inherited: Mapping[str, Any], args: Mapping[str, Any]
) -> dict[str, Any]:
    """Explicit arguments plus those inherited from a parent process the function accepts.

    An optional parameter left out gets its spec default where the function has none of its
    own (openeo-processes-dask's ``text_concat`` requires ``separator``, whose default is "").
    """
    accepted = process.parameters
    out = {k: v for k, v in inherited.items() if k in accepted and k not in args}
    out.update(args)
    required = _required_names(process.implementation)
    for param in (process.spec or {}).get("parameters", []):
        name = param["name"]
        if name in required and name not in out and "default" in param:
            out[name] = param["default"]
    return out


@cache
def _required_names(func: Callable[..., Any]) -> frozenset[str]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
