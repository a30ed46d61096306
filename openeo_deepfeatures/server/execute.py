"""The one place the server calls the executor (sync results and batch jobs), under a policy.

Runs are serialized by :data:`RUN_LOCK` (each still uses every dask thread): netCDF-C and
HDF5, under netCDF4 and xarray's netCDF reads and writes, are not thread-safe, and two graphs
reading or writing netCDF at once crashed the process (segmentation fault) in our tests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..local import run_process_graph
from ..policy import ExecutionPolicy

__all__ = ["RUN_LOCK", "execute", "server_policy"]

#: Held while a graph runs and its result is written, or while the server opens a
#: collection's file to describe it (reentrant: the server holds it around both).
RUN_LOCK = threading.RLock()


def server_policy(*, data: tuple[Path, ...], output: Path, allow_udf: bool) -> ExecutionPolicy:
    """What a graph sent to the server may do: read the ``--data`` folders (and the package's
    data), write only into its own ``output`` folder, fetch public ``https`` URLs, run UDFs
    only with ``--allow-udf``."""
    return ExecutionPolicy(read_roots=data, write_root=output, allow_udf=allow_udf)


def execute(
    graph: Any,
    *,
    collections: Mapping[str, str],
    udps: Mapping[str, Any],
    output: Path,
    allow_udf: bool,
    data: tuple[Path, ...] = (),
) -> Any:
    """Run ``graph`` with the server's collections and stored UDPs; ``save_result`` into
    ``output``; refusals of the policy are :class:`~openeo_deepfeatures.errors.PermissionDenied`
    (HTTP 403)."""
    with RUN_LOCK:
        return run_process_graph(
            graph,
            collections=collections,
            udps=udps,
            output=output,
            allow_udf=allow_udf,
            policy=server_policy(data=data, output=output, allow_udf=allow_udf),
        )
