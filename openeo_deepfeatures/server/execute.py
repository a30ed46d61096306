"""The one place the server calls the executor (sync results, validation and batch jobs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..local import run_process_graph

__all__ = ["execute"]


def execute(
    graph: Any,
    *,
    collections: Mapping[str, str],
    udps: Mapping[str, Any],
    output: Path,
    allow_udf: bool,
    data: tuple[Path, ...] = (),
) -> Any:
    """Run ``graph`` with the server's collections and stored UDPs; ``save_result`` into ``output``.

    ``data`` (the ``--data`` folders) and ``output`` are what a run may read and write.
    """
    return run_process_graph(
        graph,
        collections=collections,
        udps=udps,
        output=output,
        allow_udf=allow_udf,
    )
