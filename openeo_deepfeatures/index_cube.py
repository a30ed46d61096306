"""Spectral-index cubes on disk: zarr and a STAC item, as ``deepfeatures indices compute`` writes them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from .errors import ProcessParameterInvalid
from .indices import ASI_VERSION
from .io import INDICES_CODEC, write_zarr
from .stac import ZARR, cube_item, write_item
from .versions import software_versions

__all__ = ["IndexCubeFiles", "write_index_cube"]

_VERSIONS = ("openeo-deepfeatures", "numpy", "xarray", "dask", "zarr")


@dataclass(frozen=True)
class IndexCubeFiles:
    """What :func:`write_index_cube` wrote."""

    zarr: Path
    item: Path | None


def write_index_cube(
    si: xr.DataArray,
    path: str | Path,
    *,
    overwrite: bool = False,
    stac: bool = True,
    source: str | None = None,
    progress: bool = False,
    codec: str = INDICES_CODEC,
    level: int | None = None,
) -> IndexCubeFiles:
    """Write the index cube ``si`` to ``path`` (zarr v3) and its STAC item ``<stem>.stac.json``.

    ``source``: the input, recorded in the item. ``codec``, ``level``: the zarr compression
    (:func:`openeo_deepfeatures.io.zarr_compressors`). Both files are written atomically; when
    the item fails, the zarr is removed again.
    """
    path = Path(path)
    item_path = path.with_suffix(".stac.json") if stac else None
    if item_path is not None and item_path.exists() and not overwrite:
        raise ProcessParameterInvalid(
            process="write_index_cube",
            parameter="path",
            reason=f"{item_path} exists; pass overwrite=True.",
        )
    properties = {
        "deepfeatures:asi_version": ASI_VERSION,
        "deepfeatures:input": source,
        "deepfeatures:software": software_versions(_VERSIONS),
    }
    item = cube_item(  # built first: nothing is written when the cube cannot be described
        si,
        item_id=path.stem,
        href=f"./{path.name}",
        media_type=ZARR,
        properties={k: v for k, v in properties.items() if v is not None},
    )
    write_zarr(si, path, overwrite=overwrite, progress=progress, codec=codec, level=level)
    if item_path is not None:
        try:
            write_item(item, item_path, overwrite=overwrite)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    return IndexCubeFiles(path, item_path)
