"""An openEO client connection that runs everything with this package's local executor.

A drop-in for ``openeo.local.LocalConnection``: the same folder scan for netCDF/zarr/GeoTIFF
collections (collection id = file path), plus ``DEMO_S2`` and cubes registered by id, and
``execute``/``download`` through :func:`openeo_deepfeatures.local.run_process_graph`
(so load_collection, save_result, apply_neighborhood, run_udf, UDPs and the deepfeatures
processes all work)::

    from openeo_deepfeatures.local.connection import LocalConnection

    con = LocalConnection()
    cube = con.load_collection("DEMO_S2", bands=["B04", "B08"])
    ndvi = cube.ndvi(red="B04", nir="B08").execute()  # an xarray.DataArray
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import openeo.local
import pandas as pd
import xarray as xr

__all__ = ["LocalConnection"]


class LocalConnection(openeo.local.LocalConnection):
    """``openeo.local.LocalConnection`` backed by the deepfeatures executor.

    ``policy``: the :class:`~openeo_deepfeatures.policy.ExecutionPolicy` graphs run under
    (default: that of :func:`~openeo_deepfeatures.local.run_process_graph`); the scanned and
    registered collection files are readable in any case.
    """

    def __init__(
        self,
        local_collections_path: str | Path | list[str | Path] = (),
        *,
        collections: Mapping[str, Any] | None = None,
        output: str | Path | None = None,
        allow_udf: bool = True,
        policy: Any = None,
    ) -> None:
        paths = (
            [str(local_collections_path)]
            if isinstance(local_collections_path, (str, Path))
            else [str(p) for p in local_collections_path]
        )
        super().__init__(paths)
        self.collections = dict(collections or {})
        self.output = output
        self.allow_udf = allow_udf
        self.policy = policy  # an ExecutionPolicy; None: that of run_process_graph

    def _files(self) -> dict[str, str]:
        if not self.local_collections_path:
            return {}
        from openeo.local.collections import _get_local_collections

        found = _get_local_collections(self.local_collections_path)["collections"]
        return {c["id"]: c["id"] for c in found}

    def list_collections(self) -> list[dict]:
        own = [self.describe_collection(cid) for cid in ("DEMO_S2", *self.collections)]
        return own + (list(super().list_collections()) if self.local_collections_path else [])

    def describe_collection(self, collection_id: str) -> dict:
        if collection_id != "DEMO_S2" and collection_id not in self.collections:
            return super().describe_collection(collection_id)
        from .processes import RunSettings, open_collection, settings

        token = settings.set(RunSettings(self.collections))
        try:
            cube = open_collection(collection_id)
        finally:
            settings.reset(token)
        return _metadata(collection_id, cube)

    def load_stac(
        self,
        url: str,
        spatial_extent: Any = None,
        temporal_extent: Any = None,
        bands: list[str] | None = None,
        properties: Any = None,
    ) -> Any:
        """A ``load_stac`` cube with its band metadata, read offline by our ``load_stac``."""
        from openeo.metadata import CollectionMetadata

        from ..policy import use_policy
        from . import effective_policy
        from .stac import load_stac

        arguments = {"url": url}
        for name, value in (
            ("spatial_extent", spatial_extent),
            ("temporal_extent", temporal_extent),
            ("bands", bands),
            ("properties", properties),
        ):
            if value is not None:
                arguments[name] = value
        cube = self.datacube_from_process(process_id="load_stac", **arguments)
        if properties is None:  # lazy: only the STAC JSON is read to learn the bands
            policy = effective_policy(self.policy, output=self.output, allow_udf=self.allow_udf)
            with use_policy(policy):
                found = load_stac(url, spatial_extent, temporal_extent, bands)
            labels = [str(b) for b in found["bands"].values]
            dims = {"bands": {"type": "bands", "values": labels}}
            cube.metadata = CollectionMetadata({"id": url, "cube:dimensions": dims})
        return cube

    def execute(
        self,
        process_graph: Any,
        *,
        validate: bool | None = None,
        auto_decode: bool = True,
    ) -> Any:
        """Run ``process_graph`` locally; returns what its result node returns."""
        if validate:
            raise ValueError("LocalConnection validates while it runs; pass validate=None.")
        return self._run(process_graph, self.output)

    def _run(self, graph: Any, output: str | Path | None) -> Any:
        from . import run_process_graph

        return run_process_graph(
            graph,
            collections={**self._files(), **self.collections},
            output=output,
            allow_udf=self.allow_udf,
            policy=self.policy,
        )

    def list_output_formats(self) -> dict:
        """What ``save_result`` writes here (``GET /file_formats`` output part)."""
        kinds = ["raster"]
        return {
            "ZARR": {"title": "Zarr (v3)", "gis_data_types": kinds, "parameters": {}},
            "netCDF": {"title": "netCDF", "gis_data_types": kinds, "parameters": {}},
            "GTiff": {"title": "GeoTIFF", "gis_data_types": kinds, "parameters": {}},
        }

    def download(
        self, graph: Any, outputfile: str | Path | None = None, **kwargs: Any
    ) -> bytes | None:
        """Run a graph ending in ``save_result``; move what it wrote to ``outputfile``.

        Without ``outputfile`` the file's bytes are returned, as from a backend.
        """
        from ..errors import OpenEOError

        target = Path(outputfile) if outputfile is not None else None
        work = target.parent if target is not None else None
        with tempfile.TemporaryDirectory(dir=work, prefix=".deepfeatures-") as tmp:
            item = self._run(graph, tmp)
            if not isinstance(item, Mapping) or "assets" not in item:
                raise OpenEOError("the process graph saved no result (it needs save_result).")
            written = Path(item["assets"]["data"]["href"])
            if target is None:
                if written.is_dir():
                    raise OpenEOError("a zarr result is a folder: pass an outputfile.")
                return written.read_bytes()
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(written, target)
        return None


def _metadata(collection_id: str, cube: xr.DataArray) -> dict[str, Any]:
    """STAC collection metadata with the datacube extension, as a backend would describe it."""
    crs = cube.rio.crs if hasattr(cube, "rio") else None
    epsg = crs.to_epsg() if crs is not None else None
    times = pd.DatetimeIndex(cube["t"].values) if "t" in cube.dims else None
    dims: dict[str, Any] = {}
    for axis in ("x", "y"):
        values = cube[axis].values
        dims[axis] = {
            "type": "spatial",
            "axis": axis,
            "extent": [float(values.min()), float(values.max())],
            "reference_system": epsg,
        }
    if times is not None:
        dims["t"] = {"type": "temporal", "extent": [str(times.min()), str(times.max())]}
    bands = [str(b) for b in cube["bands"].values] if "bands" in cube.dims else []
    if bands:
        dims["bands"] = {"type": "bands", "values": bands}
    return {
        "stac_version": "1.0.0",
        "type": "Collection",
        "id": collection_id,
        "description": cube.attrs.get("long_name", collection_id),
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [list(cube.rio.transform_bounds("EPSG:4326"))] if crs else [[]]},
            "temporal": {
                "interval": [[str(times.min()), str(times.max())]] if times is not None else [[]]
            },
        },
        "cube:dimensions": dims,
        "summaries": {"eo:bands": [{"name": b} for b in bands]},
        "links": [],
    }
