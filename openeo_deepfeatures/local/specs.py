"""The openEO process specs that openeo-processes-dask ships (openEO processes 2.0)."""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = ["spec_file", "upstream_spec"]


def spec_file(process_id: str) -> Traversable:
    """The JSON file of ``process_id``'s spec (it may not exist)."""
    folder = resources.files("openeo_processes_dask.specs").joinpath("openeo-processes")
    return folder.joinpath(f"{process_id}.json")


def upstream_spec(process_id: str) -> dict[str, Any]:
    """A fresh copy of the spec of ``process_id`` (callers may change it)."""
    return json.loads(spec_file(process_id).read_text("utf-8"))
