"""The deepfeatures openEO processes: specs (openEO process JSON) bound to implementations."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from .._json import loads_strict
from ..errors import ProcessUnsupported
from . import implementations

__all__ = ["NAMESPACE", "PROCESS_IDS", "get_implementation", "get_spec", "list_specs"]

#: Namespace under which graphs may reference these processes (they also resolve as plain ids).
NAMESPACE = "deepfeatures"
PROCESS_IDS: tuple[str, ...] = tuple(sorted(implementations.__all__))


@cache
def _load(process_id: str) -> str:
    return resources.files(__name__).joinpath("specs", f"{process_id}.json").read_text("utf-8")


def get_spec(process_id: str) -> dict[str, Any]:
    """The openEO process description of one of our processes (a fresh copy)."""
    if process_id not in PROCESS_IDS:
        raise ProcessUnsupported(process=process_id, namespace=NAMESPACE)
    return loads_strict(_load(process_id))


def list_specs() -> list[dict[str, Any]]:
    """All our process descriptions, as ``GET /processes`` would list them."""
    return [get_spec(p) for p in PROCESS_IDS]


def get_implementation(process_id: str) -> Callable[..., Any]:
    if process_id not in PROCESS_IDS:
        raise ProcessUnsupported(process=process_id, namespace=NAMESPACE)
    return getattr(implementations, process_id)
