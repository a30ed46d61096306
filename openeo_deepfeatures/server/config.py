"""What a ``deepfeatures serve`` instance is configured with."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    """Settings of one local backend.

    ``data``: folders whose cubes (netCDF, zarr, GeoTIFF) are served as collections, besides
    ``DEMO_S2``. ``jobs``: where batch jobs (metadata, logs, results) and stored process graphs
    live; a restart lists them again. ``scheduler``: ``None`` (dask's threads in this process),
    ``"local"`` (a dask.distributed LocalCluster) or a scheduler address. ``token``: the one
    user's secret (the password for ``/credentials/basic``); generated when not given.
    """

    data: tuple[Path, ...] = ()
    jobs: Path = Path("deepfeatures-jobs")
    scheduler: str | None = None
    allow_udf: bool = False
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    user: str = "local"
    title: str = "openeo-deepfeatures local backend"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(Path(p) for p in self.data))
        object.__setattr__(self, "jobs", Path(self.jobs))
