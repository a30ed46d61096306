"""The user-defined process store behind ``/process_graphs``: one JSON file per process."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .errors import BadRequest, ProcessGraphNotFound
from .storage import read_json, safe_id, write_json

__all__ = ["ProcessGraphStore"]

_SUMMARY_KEYS = ("id", "summary", "description", "categories", "parameters", "returns")


class ProcessGraphStore:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, process_graph_id: str) -> Path:
        if not safe_id(process_graph_id):
            raise BadRequest(
                reason=f"process graph id {process_graph_id!r} may hold letters, digits, _ and - only."
            )
        return self.folder / f"{process_graph_id}.json"

    def put(self, process_graph_id: str, process: dict[str, Any]) -> None:
        with self._lock:
            write_json(self._path(process_graph_id), {**process, "id": process_graph_id})

    def get(self, process_graph_id: str) -> dict[str, Any]:
        path = self._path(process_graph_id)
        if not path.is_file():
            raise ProcessGraphNotFound(process_graph_id=process_graph_id)
        return read_json(path)

    def delete(self, process_graph_id: str) -> None:
        path = self._path(process_graph_id)
        with self._lock:
            if not path.is_file():
                raise ProcessGraphNotFound(process_graph_id=process_graph_id)
            path.unlink()

    def all(self) -> dict[str, dict[str, Any]]:
        """Every stored process by id (what the executor gets as ``udps``)."""
        return {p.stem: read_json(p) for p in sorted(self.folder.glob("*.json"))}

    def summaries(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in process.items() if k in _SUMMARY_KEYS}
            for process in self.all().values()
        ]
