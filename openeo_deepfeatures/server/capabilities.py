"""The static documents of the API: capabilities, well-known, conformance, formats, runtimes."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

__all__ = [
    "API_VERSION",
    "ENDPOINTS",
    "capabilities",
    "conformance",
    "file_formats",
    "well_known",
]

API_VERSION = "1.2.0"

#: (path, methods) of every endpoint this server answers, as listed in ``GET /``.
ENDPOINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("/", ("GET",)),
    ("/conformance", ("GET",)),
    ("/file_formats", ("GET",)),
    ("/udf_runtimes", ("GET",)),
    ("/service_types", ("GET",)),
    ("/collections", ("GET",)),
    ("/collections/{collection_id}", ("GET",)),
    ("/processes", ("GET",)),
    ("/credentials/basic", ("GET",)),
    ("/me", ("GET",)),
    ("/process_graphs", ("GET",)),
    ("/process_graphs/{process_graph_id}", ("GET", "PUT", "DELETE")),
    ("/validation", ("POST",)),
    ("/result", ("POST",)),
    ("/jobs", ("GET", "POST")),
    ("/jobs/{job_id}", ("GET", "PATCH", "DELETE")),
    ("/jobs/{job_id}/results", ("GET", "POST", "DELETE")),
    ("/jobs/{job_id}/estimate", ("GET",)),
    ("/jobs/{job_id}/logs", ("GET",)),
)

CONFORMANCE = (
    "https://api.openeo.org/1.2.0",
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
)


def capabilities(base_url: str, title: str) -> dict[str, Any]:
    return {
        "api_version": API_VERSION,
        "backend_version": version("openeo-deepfeatures"),
        "stac_version": "1.0.0",
        "type": "Catalog",
        "id": "openeo-deepfeatures-local",
        "title": title,
        "description": (
            "A local openEO backend over the openeo-deepfeatures dask executor: the DeepFeatures "
            "processes (spectral indices, ONNX feature cubes), openeo-processes-dask, "
            "synchronous results and batch jobs."
        ),
        "production": False,
        "conformsTo": list(CONFORMANCE),
        "endpoints": [{"path": p, "methods": list(m)} for p, m in ENDPOINTS],
        "links": [
            {"rel": "self", "href": f"{base_url}/", "type": "application/json"},
            {"rel": "conformance", "href": f"{base_url}/conformance", "type": "application/json"},
            {"rel": "data", "href": f"{base_url}/collections", "type": "application/json"},
            {
                "rel": "version-history",
                "href": f"{base_url}/.well-known/openeo",
                "type": "application/json",
            },
        ],
    }


def well_known(base_url: str) -> dict[str, Any]:
    return {"versions": [{"url": f"{base_url}/", "api_version": API_VERSION, "production": False}]}


def conformance() -> dict[str, Any]:
    return {"conformsTo": list(CONFORMANCE)}


_RASTER = ["raster"]
_FORMATS_OUT = {
    "GTiff": ("GeoTIFF (one raster: reduce t first)", _RASTER),
    "netCDF": ("netCDF", _RASTER),
    "ZARR": ("Zarr v3 (a folder; downloaded as a zip archive)", _RASTER),
    "JSON": ("JSON (numbers, arrays; cubes as an xarray dict)", ["raster", "other"]),
}
_FORMATS_IN = {
    "GTiff": ("GeoTIFF", _RASTER),
    "netCDF": ("netCDF", _RASTER),
    "ZARR": ("Zarr", _RASTER),
}


def file_formats() -> dict[str, Any]:
    def block(table: dict[str, tuple[str, list[str]]]) -> dict[str, Any]:
        return {
            name: {"title": title, "gis_data_types": kinds, "parameters": {}}
            for name, (title, kinds) in table.items()
        }

    return {"input": block(_FORMATS_IN), "output": block(_FORMATS_OUT)}
