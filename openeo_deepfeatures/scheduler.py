"""Connecting to a dask.distributed scheduler: one function for the CLI and the HTTP server."""

from __future__ import annotations

from typing import Any

from .errors import ProcessParameterInvalid

__all__ = ["connect_scheduler"]


def connect_scheduler(address: str | None, *, process: str, timeout: str | None = None) -> Any:
    """A dask.distributed client (set as dask's default), or None without an address.

    ``"local"`` starts a LocalCluster in this process, owned by the client (closing the
    client shuts it down); anything else is a scheduler address. An unreachable scheduler is
    a :class:`ProcessParameterInvalid` for ``--scheduler`` of ``process``.
    """
    if not address:
        return None
    from dask.distributed import Client

    if address == "local":
        return Client(processes=False)
    try:
        return Client(address) if timeout is None else Client(address, timeout=timeout)
    except OSError as exc:
        raise ProcessParameterInvalid(
            process=process,
            parameter="--scheduler",
            reason=f"cannot reach the dask scheduler at {address!r} ({exc}).",
        ) from None
