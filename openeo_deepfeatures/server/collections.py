"""Collections of a local backend: ``DEMO_S2`` and the cubes found in the ``--data`` folders."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from ..errors import CollectionNotFound, OpenEOError

__all__ = ["Catalog", "collection_metadata", "with_links"]

_log = logging.getLogger(__name__)

DEMO_ID = "DEMO_S2"
_SUFFIXES = (".nc", ".zarr", ".tif", ".tiff")
_DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"


def _collection_id(name: str) -> str:
    """Letters, digits and ``_ - . ~`` (openEO ids may hold ``/`` too; URL paths may not)."""
    return re.sub(r"[^\w\-.~]", "_", name)


def _cubes(folder: Path) -> list[Path]:
    """Cube files and zarr stores in ``folder`` and below (a zarr store is not descended into)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in [d for d in dirs if d.lower().endswith(".zarr")]:
            found.append(Path(root) / name)
            dirs.remove(name)
        found += [
            Path(root) / f
            for f in sorted(files)
            if Path(f).suffix.lower() in _SUFFIXES and not f.startswith(".")
        ]
    return found


class Catalog:
    """Collection ids mapped to files, and their STAC metadata (read once, lazily)."""

    def __init__(self, folders: Iterable[Path] = ()) -> None:
        self.paths: dict[str, Path] = {}
        for folder in folders:
            for path in _cubes(Path(folder)):
                cid = _collection_id(path.stem)
                if cid in self.paths or cid == DEMO_ID:  # the same name twice: with its folders
                    parts = path.relative_to(folder).with_suffix("").parts
                    cid = _collection_id(".".join(parts))
                self.paths.setdefault(cid, path.resolve())
        self._metadata: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        return [DEMO_ID, *sorted(self.paths)]

    def collections(self) -> dict[str, str]:
        """What ``run_process_graph(collections=...)`` gets: ids to paths."""
        return {cid: str(path) for cid, path in self.paths.items()}

    def describe_all(self) -> list[dict[str, Any]]:
        """Metadata of every collection; a file that can't be read as a cube is left out."""
        found = []
        for cid in self.ids():
            try:
                found.append(self.describe(cid))
            except OpenEOError as exc:
                _log.warning("not serving %s (%s): %s", cid, self.paths.get(cid), exc)
        return found

    def describe(self, collection_id: str) -> dict[str, Any]:
        if collection_id != DEMO_ID and collection_id not in self.paths:
            raise CollectionNotFound(collection=collection_id)
        with self._lock:
            if collection_id not in self._metadata:
                try:
                    cube = self._open(collection_id)
                except (OSError, ValueError, KeyError) as exc:  # a file that isn't a cube
                    raise OpenEOError(
                        f"collection '{collection_id}' ({self.paths[collection_id]}) can't be "
                        f"read as a cube: {type(exc).__name__}: {exc}"
                    ) from exc
                self._metadata[collection_id] = collection_metadata(collection_id, cube)
            return self._metadata[collection_id]

    def _open(self, collection_id: str) -> xr.DataArray:
        from ..local.processes import RunSettings, open_collection, settings
        from .execute import RUN_LOCK

        token = settings.set(RunSettings(self.collections()))
        try:
            with RUN_LOCK:  # netCDF-C/HDF5 are not thread-safe (see .execute)
                return open_collection(collection_id)
        finally:
            settings.reset(token)


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def collection_metadata(collection_id: str, cube: xr.DataArray) -> dict[str, Any]:
    """A STAC 1.0 Collection with the datacube extension (``cube:dimensions``) for ``cube``."""
    import rioxarray  # noqa: F401

    crs = cube.rio.crs
    epsg = crs.to_epsg() if crs is not None else None
    dims: dict[str, Any] = {}
    for axis in ("x", "y"):
        values = cube[axis].values
        step = float(abs(values[1] - values[0])) if values.size > 1 else None
        dims[axis] = {
            "type": "spatial",
            "axis": axis,
            "extent": [float(values.min()), float(values.max())],
            **({"step": step} if step else {}),
            **({"reference_system": epsg} if epsg is not None else {}),
        }
    interval: list[Any] = [None, None]
    if "t" in cube.dims:
        times = pd.DatetimeIndex(cube["t"].values)
        interval = [_iso(times.min()), _iso(times.max())]
        dims["t"] = {"type": "temporal", "extent": interval}
    bands = [str(b) for b in cube["bands"].values] if "bands" in cube.dims else []
    if bands:
        dims["bands"] = {"type": "bands", "values": bands}
    bbox = list(cube.rio.transform_bounds("EPSG:4326")) if crs is not None else [-180, -90, 180, 90]
    description = cube.attrs.get("long_name") or cube.attrs.get("description")
    license_id = "proprietary"  # unknown for a user's file: STAC's value for "see the provider"
    if collection_id == DEMO_ID:
        description = (
            "The embedded demo cube: Sentinel-2 L2A digital numbers with SCL, 1 km2 in Romania "
            "(EPSG:3035), from the nrt 0.2.1 wheel; contains modified Copernicus Sentinel data."
        )
        license_id = "EUPL-1.2"
    return {
        "stac_version": "1.0.0",
        "stac_extensions": [_DATACUBE],
        "type": "Collection",
        "id": collection_id,
        "title": collection_id,
        "description": str(description or f"Local cube {collection_id}."),
        "license": license_id,
        "providers": [{"name": "openeo-deepfeatures (local)", "roles": ["host"]}],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [interval]}},
        "cube:dimensions": dims,
        "summaries": {"eo:bands": [{"name": b} for b in bands]} if bands else {},
        "links": [],
    }


def with_links(metadata: Mapping[str, Any], base: str) -> dict[str, Any]:
    out = dict(metadata)
    out["links"] = [
        {"rel": "self", "href": f"{base}/collections/{metadata['id']}"},
        {"rel": "root", "href": f"{base}/"},
        {"rel": "parent", "href": f"{base}/collections"},
    ]
    return out
