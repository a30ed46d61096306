"""STAC items through pystac: written cubes (datacube and projection extensions), machine-learning
models (MLM extension), and item files.

:func:`cube_item` is the one builder of cube items: feature cubes, index cubes and the local
executor's ``save_result`` all describe their files with it. It reads the cube; the model item
takes plain values (this module sits below ``encoder`` in the layers), which the encoder contract
gives in :meth:`openeo_deepfeatures.encoder.EncoderContract.stac_item`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pystac
import xarray as xr
from pystac.extensions.datacube import (
    DatacubeExtension,
    Dimension,
    DimensionType,
    Variable,
    VariableType,
)
from pystac.extensions.file import FileExtension
from pystac.extensions.mlm import (
    AssetGeneralMLMExtension,
    InputStructure,
    MLMExtension,
    ModelInput,
    ModelOutput,
    ProcessingExpression,
    ResultStructure,
)
from pystac.extensions.projection import ProjectionExtension

from .errors import ProcessParameterInvalid
from .io import atomic_path

__all__ = [
    "GEOTIFF",
    "JSON",
    "NETCDF",
    "ZARR",
    "cube_item",
    "mlm_model_item",
    "read_item",
    "sha256_multihash",
    "write_item",
]


def sha256_multihash(hex_digest: str) -> str:
    """The ``file:checksum`` form of a sha256 digest (multihash: ``1220`` + hex)."""
    return "1220" + hex_digest.lower()


def _model_input(spec: Mapping[str, Any]) -> ModelInput:
    structure = InputStructure.create(
        shape=list(spec["shape"]), dim_order=list(spec["dim_order"]), data_type=spec["data_type"]
    )
    pre = spec.get("pre_processing_function")
    model_input = ModelInput.create(
        name=spec["name"],
        bands=list(spec.get("bands", [])),
        input=structure,
        description=spec.get("description"),
        pre_processing_function=ProcessingExpression.create(**pre) if pre else None,
    )
    # MLM >= 1.3 wants a list of value-scaling objects (one per band); pystac's setter takes one
    model_input.properties["value_scaling"] = (
        [dict(v) for v in spec["value_scaling"]] if spec.get("value_scaling") else None
    )
    return model_input


def _model_output(spec: Mapping[str, Any]) -> ModelOutput:
    result = ResultStructure.create(
        shape=list(spec["shape"]), dim_order=list(spec["dim_order"]), data_type=spec["data_type"]
    )
    return ModelOutput.create(
        name=spec["name"],
        tasks=list(spec["tasks"]),
        result=result,
        description=spec.get("description"),
    )


def mlm_model_item(
    *,
    item_id: str,
    model_href: str,
    name: str,
    architecture: str,
    tasks: Sequence[str],
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    artifact_type: str,
    media_type: str,
    bands: Sequence[Mapping[str, Any]] = (),
    framework: str | None = None,
    framework_version: str | None = None,
    total_parameters: int | None = None,
    model_sha256: str | None = None,
    model_size: int | None = None,
    description: str | None = None,
    properties: Mapping[str, Any] | None = None,
    datetime: _dt.datetime | None = None,
) -> pystac.Item:
    """A STAC item (no geometry) describing one model file with the MLM extension.

    ``inputs``/``outputs`` are dicts with ``name``, ``shape``, ``dim_order``, ``data_type``
    (``bands``, ``description``, ``value_scaling`` (list, one per band),
    ``pre_processing_function`` for inputs; ``tasks`` for outputs). ``bands`` are STAC 1.1
    band objects for the input bands the MLM inputs refer to.
    """
    props = dict(properties or {})
    if description:
        props["description"] = description
    if bands:
        props["bands"] = [dict(b) for b in bands]
    when = datetime or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    item = pystac.Item(id=item_id, geometry=None, bbox=None, datetime=when, properties=props)
    mlm = MLMExtension.ext(item, add_if_missing=True)
    mlm.apply(
        name=name,
        architecture=architecture,
        tasks=list(tasks),
        input=[_model_input(s) for s in inputs],
        output=[_model_output(s) for s in outputs],
        framework=framework,
        framework_version=framework_version,
        total_parameters=total_parameters,
        pretrained=False,
        pretrained_source=None,
        accelerator="amd64",
        accelerator_constrained=False,
    )
    # mlm:pretrained false requires an explicit null source (pystac drops None values)
    item.properties["mlm:pretrained_source"] = None
    asset = pystac.Asset(href=model_href, media_type=media_type, roles=["mlm:model"], title=name)
    item.add_asset("model", asset)
    AssetGeneralMLMExtension.ext(asset, add_if_missing=True).apply(artifact_type=artifact_type)
    if model_sha256 is not None or model_size is not None:
        file_ext = FileExtension.ext(asset, add_if_missing=True)
        if model_sha256 is not None:
            file_ext.checksum = sha256_multihash(model_sha256)
        if model_size is not None:
            file_ext.size = int(model_size)
    return item


#: Media types of the cube files this package writes.
ZARR = "application/vnd+zarr"
NETCDF = "application/netcdf"
GEOTIFF = str(pystac.MediaType.GEOTIFF)
JSON = str(pystac.MediaType.JSON)

#: Points per side of a grid's outline when it is reprojected to EPSG:4326 (edges bend).
_FOOTPRINT_POINTS = 10


def cube_item(
    data: Any,
    *,
    item_id: str,
    href: str,
    media_type: str,
    description: str | None = None,
    properties: Mapping[str, Any] | None = None,
) -> pystac.Item:
    """The STAC Item of a written cube; the one builder of feature cubes, index cubes and
    ``save_result``.

    Everything is read from the cube (an ``xarray.DataArray``, lazy is fine: no values are
    computed) as it was written:

    - ``geometry`` and ``bbox``: the footprint of the cube's grid in EPSG:4326 (odc-geo,
      edges densified); none for a cube without a CRS or a regular x/y grid;
    - ``start_datetime``/``end_datetime``: the first and last ``t`` (a dimension or a scalar
      coordinate); a cube without ``t`` gets ``datetime`` = now;
    - projection extension: ``proj:code`` (``proj:wkt2`` for a CRS without EPSG code),
      ``proj:shape``, ``proj:transform``, ``proj:bbox``;
    - datacube extension: every dimension (``x``/``y`` spatial, ``t`` temporal, ``bands``,
      others with their labels), the cube as a data variable (``description`` or its
      ``long_name``) and its coordinates along dimensions as auxiliary variables;
    - the file as asset ``data``.

    A result that is no cube (a number, a list) gets ``datetime`` and the asset only.
    """
    if not isinstance(data, xr.DataArray):
        item = pystac.Item(
            id=item_id, geometry=None, bbox=None, datetime=_now(), properties=dict(properties or {})
        )
        item.add_asset("data", pystac.Asset(href=href, media_type=media_type, roles=["data"]))
        return item
    grid = _grid(data)
    geometry = bbox = None
    if grid is not None:
        footprint = grid.footprint("EPSG:4326", npoints=_FOOTPRINT_POINTS)
        geometry = json.loads(json.dumps(footprint.json))  # tuples -> lists
        bbox = [float(v) for v in footprint.boundingbox]
    times = _times(data)
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=None if times else _now(),
        start_datetime=min(times) if times else None,
        end_datetime=max(times) if times else None,
        properties=dict(properties or {}),
    )
    item.add_asset("data", pystac.Asset(href=href, media_type=media_type, roles=["data"]))
    reference_system: int | str | None = None
    if grid is not None:
        epsg = grid.crs.epsg
        reference_system = epsg if epsg is not None else grid.crs.to_wkt()
        ProjectionExtension.ext(item, add_if_missing=True).apply(
            code=f"EPSG:{epsg}" if epsg is not None else None,
            wkt2=None if epsg is not None else grid.crs.to_wkt(),
            shape=[int(n) for n in grid.shape.yx],
            transform=[float(v) for v in list(grid.transform)[:6]],
            bbox=[float(v) for v in grid.extent.boundingbox],
        )
    cube = DatacubeExtension.ext(item, add_if_missing=True)
    cube.dimensions = {
        str(dim): Dimension.from_dict(_dimension(data, str(dim), grid, reference_system))
        for dim in data.dims
    }
    name = str(data.name or "data")
    variables = {
        name: Variable.from_dict(
            _variable(data.dims, VariableType.DATA, description or data.attrs.get("long_name"))
        )
    }
    for coord_name, coord in data.coords.items():
        if coord.dims and coord_name not in data.dims:
            text = coord.attrs.get("description") or coord.attrs.get("long_name")
            variables[str(coord_name)] = Variable.from_dict(
                _variable(coord.dims, VariableType.AUXILIARY, text)
            )
    cube.variables = variables
    return item


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def _grid(data: xr.DataArray) -> Any:
    """The cube's odc-geo ``GeoBox`` (regular x/y grid with a CRS), else None."""
    import odc.geo.xr  # noqa: F401  (the .odc accessor)
    from odc.geo.geobox import GeoBox

    if not {"x", "y"} <= set(data.dims) or min(data.sizes["x"], data.sizes["y"]) == 0:
        return None
    grid = data.odc.geobox
    return grid if isinstance(grid, GeoBox) and grid.crs is not None else None


def _times(data: xr.DataArray) -> list[_dt.datetime]:
    if "t" not in data.coords:
        return []
    stamps = pd.DatetimeIndex(np.ravel(data["t"].values))
    stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
    return [t.to_pydatetime() for t in stamps]


def _iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dimension(
    data: xr.DataArray, dim: str, grid: Any, reference_system: int | str | None
) -> dict[str, Any]:
    labelled = dim in data.coords
    if dim in ("x", "y"):
        out: dict[str, Any] = {"type": DimensionType.SPATIAL, "axis": dim}
        if grid is not None:
            box, res = grid.extent.boundingbox, grid.resolution
            low, high = (box.left, box.right) if dim == "x" else (box.bottom, box.top)
            out.update(
                step=float(res.x if dim == "x" else res.y), reference_system=reference_system
            )
        else:  # no CRS known (the datacube extension then implies EPSG:4326): the labels only
            values = data[dim].values if labelled else np.arange(data.sizes[dim])
            low, high = (np.min(values), np.max(values)) if len(values) else (0, 0)
        return {**out, "extent": [float(low), float(high)]}
    if dim == "t":
        times = [_iso(t) for t in _times(data)]
        if not times:
            return {"type": DimensionType.TEMPORAL, "extent": [None, None]}
        return {"type": DimensionType.TEMPORAL, "extent": [min(times), max(times)], "values": times}
    kind = "bands" if dim == "bands" else "other"
    if labelled and data.sizes[dim]:
        return {"type": kind, "values": [_label(v) for v in data[dim].values]}
    return {"type": kind, "extent": [0, max(data.sizes[dim] - 1, 0)]}


def _label(value: Any) -> str | float | int:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _variable(dims: Sequence[Any], kind: str, description: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"dimensions": [str(d) for d in dims], "type": kind}
    if description:
        out["description"] = str(description)
    return out


def write_item(item: pystac.Item, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``item`` as JSON atomically (no self link: the file can move with its model)."""
    path = Path(path)
    text = json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def read_item(path: str | os.PathLike) -> pystac.Item:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return pystac.Item.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, pystac.STACError) as exc:
        raise ProcessParameterInvalid(
            process="read_item", parameter="path", reason=f"{path} is not a STAC item: {exc}"
        ) from None
