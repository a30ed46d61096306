"""STAC items through pystac: machine-learning models (MLM extension) and item files.

This module takes plain values (it sits below ``encoder`` in the layers); the encoder contract
turns itself into these values in :meth:`openeo_deepfeatures.encoder.EncoderContract.stac_item`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pystac
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

from .errors import ProcessParameterInvalid
from .io import atomic_path

__all__ = ["cube_item", "mlm_model_item", "read_item", "sha256_multihash", "write_item"]


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


def cube_item(
    item_id: str,
    *,
    href: str,
    media_type: str,
    crs_epsg: int | None,
    bbox_native: Sequence[float],
    bbox_wgs84: Sequence[float],
    shape: Sequence[int],
    transform: Sequence[float],
    times: Sequence[_dt.datetime],
    bands: Sequence[str],
    step: Sequence[float],
    variable: str,
    description: str,
    properties: Mapping[str, Any] | None = None,
    per_date: Mapping[str, str] | None = None,
) -> pystac.Item:
    """A STAC Item for a ``(t, bands, y, x)`` cube: datacube and projection extensions.

    ``per_date``: auxiliary variables on ``t`` stored beside the cube (name -> description).
    """
    from pystac.extensions.datacube import (
        DatacubeExtension,
        Dimension,
        DimensionType,
        Variable,
        VariableType,
    )
    from pystac.extensions.projection import ProjectionExtension

    west, south, east, north = (float(v) for v in bbox_wgs84)
    geometry = {
        "type": "Polygon",
        "coordinates": [
            [[west, south], [east, south], [east, north], [west, north], [west, south]]
        ],
    }
    item = pystac.Item(
        id=item_id,
        geometry=geometry,
        bbox=[west, south, east, north],
        datetime=None,
        start_datetime=min(times),
        end_datetime=max(times),
        properties=dict(properties or {}),
    )
    item.add_asset("data", pystac.Asset(href=href, media_type=media_type, roles=["data"]))
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.epsg = crs_epsg
    proj.shape = list(shape)
    proj.transform = list(transform)
    proj.bbox = [float(v) for v in bbox_native]
    cube = DatacubeExtension.ext(item, add_if_missing=True)
    x0, y0, x1, y1 = (float(v) for v in bbox_native)
    spatial = {"reference_system": crs_epsg}
    cube.dimensions = {
        "x": Dimension.from_dict(
            {"type": "spatial", "axis": "x", "extent": [x0, x1], "step": step[0], **spatial}
        ),
        "y": Dimension.from_dict(
            {"type": "spatial", "axis": "y", "extent": [y0, y1], "step": step[1], **spatial}
        ),
        "t": Dimension.from_dict(
            {
                "type": DimensionType.TEMPORAL,
                "extent": [_iso(min(times)), _iso(max(times))],
                "values": [_iso(t) for t in times],
            }
        ),
        "bands": Dimension.from_dict({"type": "bands", "values": list(bands)}),
    }
    cube.variables = {
        variable: Variable.from_dict(
            {
                "dimensions": ["t", "bands", "y", "x"],
                "type": VariableType.DATA,
                "description": description,
            }
        ),
        **{
            name: Variable.from_dict(
                {"dimensions": ["t"], "type": VariableType.AUXILIARY, "description": text}
            )
            for name, text in (per_date or {}).items()
        },
    }
    return item


def _iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


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
