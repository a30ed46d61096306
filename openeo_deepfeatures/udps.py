"""The deepfeatures user-defined processes (UDPs): openEO process graphs built from Python.

Each UDP is built with the openEO Python client (``openeo.processes`` process builders and
``openeo.rest.udp.build_process_dict``) by the same step functions that
:mod:`openeo_deepfeatures.client` applies to a user's ``DataCube``, so a UDP and the inlined
client graph are one graph. ``deepfeatures udps`` writes them to ``process_graphs/`` (checked
in; a test fails when the files drift from this generator).

- ``deepfeatures_preprocess_s2``: DN -> reflectance, SCL cloud mask (pure openEO math).
- ``deepfeatures_spectral_indices``: the default model's spectral indices (pure openEO math
  generated from the formula DAG, bands selected by label; runs on any backend, no UDF).
- ``deepfeatures_embed``: ``apply_neighborhood`` + ``run_udf`` with ``udf/feature_embedding.py``.
- ``deepfeatures_feature_cube``: the three above, inlined, on a Sentinel-2 L2A DN cube.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from openeo.api.process import Parameter
from openeo.processes import ProcessBuilder
from openeo.processes import process as _process
from openeo.rest.datacube import THIS, DataCube
from openeo.rest.udp import build_process_dict

from .indices.resolve import resolve_indices
from .indices.to_openeo import indices_callback
from .sentinel2 import DEFAULT_INVALID_SCL

__all__ = [
    "DEFAULT_MODEL_URL",
    "EMBED_OVERLAP",
    "EMBED_WINDOW",
    "NAMESPACE_URL",
    "UDP_IDS",
    "build_udp",
    "default_bands",
    "default_indices",
    "embed_step",
    "feature_embedding_udf",
    "preprocess_step",
    "spectral_indices_step",
    "write_udps",
]

_REPO_RAW = "https://raw.githubusercontent.com/openeo-deepfeatures/openeo-deepfeatures/main"
#: Where the checked-in UDPs are published: ``namespace`` for ``datacube_from_process``.
NAMESPACE_URL = f"{_REPO_RAW}/process_graphs"
#: The default encoder as published with the package source (sha256 in its STAC item).
DEFAULT_MODEL_URL = f"{_REPO_RAW}/openeo_deepfeatures/data/encoder/default.onnx"
#: apply_neighborhood windows of the embedding: pixels in x and y (the whole series in t) ...
EMBED_WINDOW = 64
#: ... and their overlap on each side: the spatial context (halo) a model may use (the
#: default model's ``spatial_radius``; the UDF refuses models that need more).
EMBED_OVERLAP = 8
UDP_IDS = (
    "deepfeatures_preprocess_s2",
    "deepfeatures_spectral_indices",
    "deepfeatures_embed",
    "deepfeatures_feature_cube",
)
_SOURCE_LINK = {
    "rel": "about",
    "href": "https://github.com/openeo-deepfeatures/openeo-deepfeatures",
    "title": "openeo-deepfeatures: source, documentation and the native implementation",
    "type": "text/html",
}
_DEEPFEATURES_LINK = {
    "rel": "about",
    "href": "https://rsc4earth.de/project/deepfeatures/",
    "title": "The DeepFeatures project (ESA AI4Science)",
    "type": "text/html",
}

Cube = DataCube | ProcessBuilder | Parameter


# --------------------------------------------------------------------------- defaults


@functools.cache
def default_indices() -> tuple[str, ...]:
    """The spectral indices the default encoder reads (its channels, in contract order)."""
    return model_channels("default")


@functools.cache
def model_channels(name: str) -> tuple[str, ...]:
    """The channels of a shipped model (``default``, ``s2-10m``), in contract order."""
    from .encoder import load_encoder

    return tuple(load_encoder(name).contract.channels)


def model_urls() -> dict[str, str]:
    """The shipped models as published with the package source, by name."""
    from .encoder.selection import SHIPPED_MODELS

    return {
        name: f"{_REPO_RAW}/openeo_deepfeatures/data/{path}"
        for name, path in SHIPPED_MODELS.items()
    }


@functools.cache
def default_bands() -> tuple[str, ...]:
    """The Sentinel-2 bands those indices need, in band-table order."""
    from .sentinel2 import BANDS

    labels = [b.label for b in BANDS]
    used = {band for r in resolve_indices(default_indices(), labels) for band in r.bands.values()}
    return tuple(b for b in labels if b in used)


@functools.cache
def feature_embedding_udf() -> str:
    """Source of the embedding UDF (``udf/feature_embedding.py``), as sent to backends."""
    return (
        resources.files("openeo_deepfeatures.udf")
        .joinpath("feature_embedding.py")
        .read_text("utf-8")
    )


# --------------------------------------------------------------------------- steps


def _step(cube: Cube, process_id: str, **arguments: Any) -> Cube:
    """``process_id(data=cube, **arguments)`` as a ``DataCube`` or a process builder."""
    if isinstance(cube, DataCube):
        return cube.process(process_id, data=THIS, **arguments)
    return _process(process_id, data=cube, **arguments)


def _callback(nodes: Mapping[str, Any]) -> dict[str, Any]:
    return {"process_graph": dict(nodes)}


def preprocess_step(
    cube: Cube,
    *,
    bands: Sequence[str] | Parameter,
    boa_offset: float | Parameter = 0,
    invalid_scl: Sequence[int] | Parameter = DEFAULT_INVALID_SCL,
) -> Cube:
    """DN -> reflectance ``(DN + boa_offset) / 10000`` (DN 0 is no data), SCL classes masked."""
    reflectance = _callback(
        {
            "valid": {
                "process_id": "neq",
                "arguments": {"x": {"from_parameter": "x"}, "y": 0},
            },
            "shifted": {
                "process_id": "add",
                "arguments": {"x": {"from_parameter": "x"}, "y": {"from_parameter": "context"}},
            },
            "scaled": {
                "process_id": "divide",
                "arguments": {"x": {"from_node": "shifted"}, "y": 10000},
            },
            "kept": {
                "process_id": "if",
                "arguments": {"value": {"from_node": "valid"}, "accept": {"from_node": "scaled"}},
                "result": True,
            },
        }
    )
    scl = _callback(
        {
            "scl": {
                "process_id": "array_element",
                "arguments": {"data": {"from_parameter": "data"}, "label": "SCL"},
                "result": True,
            }
        }
    )
    invalid = _callback(
        {
            "known": {"process_id": "is_valid", "arguments": {"x": {"from_parameter": "x"}}},
            "listed": {
                "process_id": "array_contains",
                "arguments": {
                    "data": {"from_parameter": "context"},
                    "value": {"from_parameter": "x"},
                },
            },
            "bad": {
                "process_id": "if",
                "arguments": {
                    "value": {"from_node": "known"},
                    "accept": {"from_node": "listed"},
                    "reject": True,
                },
                "result": True,
            },
        }
    )
    if not isinstance(bands, Parameter):
        bands = list(bands)
    if not isinstance(invalid_scl, Parameter):
        invalid_scl = [int(c) for c in invalid_scl]
    refl = _step(
        _step(cube, "filter_bands", bands=bands), "apply", process=reflectance, context=boa_offset
    )
    bad = _step(
        _step(cube, "reduce_dimension", reducer=scl, dimension="bands"),
        "apply",
        process=invalid,
        context=invalid_scl,
    )
    return _step(refl, "mask", mask=bad)


def spectral_indices_step(
    cube: Cube,
    indices: Sequence[str],
    *,
    bands: Sequence[str] | None = None,
    select: Parameter | None = None,
) -> Cube:
    """Pure openEO math: ``indices`` from the reflectance bands (picked by label); results
    that are not finite become no-data, as in the native ``compute_indices``.

    ``bands``: the labels the cube offers (default: those the indices need). ``select``: a UDP
    parameter of index names kept after computing (``filter_bands``).
    """
    indices = list(indices)
    labels = list(bands) if bands is not None else list(default_bands())
    nodes = indices_callback(indices, labels)
    finite = _callback(
        {
            "finite": {"process_id": "is_valid", "arguments": {"x": {"from_parameter": "x"}}},
            "kept": {
                "process_id": "if",
                "arguments": {"value": {"from_node": "finite"}, "accept": {"from_parameter": "x"}},
                "result": True,
            },
        }
    )
    out = _step(cube, "apply_dimension", process=_callback(nodes), dimension="bands")
    out = _step(out, "apply", process=finite)  # +-inf (division by zero) -> no-data
    out = _step(out, "rename_labels", dimension="bands", target=indices)
    if select is not None:
        out = _step(out, "filter_bands", bands=select)
    return out


def embed_step(
    cube: Cube,
    *,
    model: str | Parameter = DEFAULT_MODEL_URL,
    model_sha256: str | Parameter | None = None,
    window: int = EMBED_WINDOW,
    overlap: int = EMBED_OVERLAP,
) -> Cube:
    """``apply_neighborhood`` windows of ``window`` px (all dates) with ``overlap`` px of halo,
    each through ``run_udf`` with the embedding UDF; the model comes in the context."""
    udf = _callback(
        {
            "udf": {
                "process_id": "run_udf",
                "arguments": {
                    "data": {"from_parameter": "data"},
                    "udf": feature_embedding_udf(),
                    "runtime": "Python",
                    "context": {"from_parameter": "context"},
                },
                "result": True,
            }
        }
    )
    size = [
        {"dimension": "x", "value": int(window), "unit": "px"},
        {"dimension": "y", "value": int(window), "unit": "px"},
        {"dimension": "t", "value": None},
    ]
    margin = [
        {"dimension": "x", "value": int(overlap), "unit": "px"},
        {"dimension": "y", "value": int(overlap), "unit": "px"},
    ]
    context = {"model": model, "sha256": model_sha256, "overlap": int(overlap)}
    return _step(
        cube, "apply_neighborhood", process=udf, size=size, overlap=margin, context=context
    )


# --------------------------------------------------------------------------- UDP documents


def _datacube(name: str, description: str) -> Parameter:
    return Parameter.datacube(name=name, description=description)


def _model_parameters() -> list[Parameter]:
    return [
        Parameter.string(
            name="model",
            description=(
                "URL (or path on the backend, e.g. inside a `udf-dependency-archives` folder) of "
                "the ONNX encoder with an embedded DeepFeatures model contract. The default is the "
                "encoder shipped with openeo-deepfeatures. It is downloaded once per worker and "
                "cached."
            ),
            default=DEFAULT_MODEL_URL,
            subtype="uri",
        ),
        Parameter(
            name="model_sha256",
            description=(
                "Expected sha256 of the model file (hex). The download is refused when it "
                "differs. `null` skips the check."
            ),
            schema=[{"type": "string", "pattern": "^[0-9a-f]{64}$"}, {"type": "null"}],
            default=None,
        ),
    ]


_S2_DIMENSIONS = [
    {"type": "spatial", "axis": ["x", "y"]},
    {"type": "temporal"},
    {"type": "bands"},
]


def _returns(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "schema": {"type": "object", "subtype": "datacube", "dimensions": _S2_DIMENSIONS},
    }


def _example(title: str, arguments: dict[str, Any], description: str) -> dict[str, Any]:
    return {"title": title, "description": description, "arguments": arguments}


def _preprocess_udp() -> dict[str, Any]:
    data = _datacube(
        "data",
        "Sentinel-2 L2A digital numbers with dimensions `t`, `bands`, `y`, `x`, as loaded from "
        "a collection such as CDSE `SENTINEL2_L2A`; needs the band `SCL` and the bands in `bands`.",
    )
    bands = Parameter.array(
        name="bands",
        description="Reflectance bands to keep, by label (`B01`..`B12`, `B8A`).",
        item_schema={"type": "string", "subtype": "band-name"},
        default=list(default_bands()),
    )
    offset = Parameter.number(
        name="boa_offset",
        description=(
            "`BOA_ADD_OFFSET` added to the digital numbers before dividing by 10000. `0` for "
            "harmonised collections (CDSE `SENTINEL2_L2A` delivers harmonised values) and for "
            "processing baselines before 04.00; `-1000` for raw products of baseline 04.00 or "
            "later."
        ),
        default=0,
    )
    invalid = Parameter.array(
        name="invalid_scl",
        description=(
            "Scene classification (SCL) classes set to no-data in every band. The default masks "
            "no data (0), saturated or defective (1), cloud shadows (3), cloud medium (8) and "
            "high probability (9) and thin cirrus (10). Pixels without a valid SCL value are "
            "masked too."
        ),
        item_schema={"type": "integer", "minimum": 0, "maximum": 11},
        default=[int(c) for c in DEFAULT_INVALID_SCL],
    )
    graph = preprocess_step(data, bands=bands, boa_offset=offset, invalid_scl=invalid)
    return build_process_dict(
        graph,
        process_id="deepfeatures_preprocess_s2",
        summary="Sentinel-2 L2A digital numbers to cloud-masked surface reflectance",
        description=(
            "Converts Sentinel-2 L2A digital numbers to surface reflectance, "
            "`(DN + boa_offset) / 10000`, treats DN 0 as no-data, and sets every pixel whose "
            "scene classification (`SCL`) is listed in `invalid_scl` to no-data in all bands. "
            "The `SCL` band is dropped.\n\n"
            "Pure openEO processes: runs on any backend. Equal to the native "
            "`openeo_deepfeatures.preprocess_s2` without mask dilation."
        ),
        parameters=[data, bands, offset, invalid],
        returns=_returns("Surface reflectance (float) of the bands in `bands`, no-data masked."),
        categories=["cubes", "math", "cloud masking"],
        examples=[
            _example(
                "Default masking, harmonised collection",
                {"data": {"from_parameter": "data"}},
                "Reflectance of the default bands with clouds, shadows and cirrus masked.",
            )
        ],
        links=[_SOURCE_LINK],
    )


def _spectral_indices_udp() -> dict[str, Any]:
    data = _datacube(
        "data",
        "Surface reflectance (as made by `deepfeatures_preprocess_s2`) with a `bands` dimension "
        f"holding at least {', '.join(default_bands())}.",
    )
    names = list(default_indices())
    select = Parameter.array(
        name="indices",
        description=(
            "The indices to return, by ASI short name (a subset of the default list, which is "
            "the set the default DeepFeatures encoder reads)."
        ),
        item_schema={"type": "string", "enum": names},
        default=names,
    )
    graph = spectral_indices_step(data, names, select=select)
    return build_process_dict(
        graph,
        process_id="deepfeatures_spectral_indices",
        summary="DeepFeatures spectral indices (Awesome Spectral Indices) from Sentinel-2",
        description=(
            f"Computes {len(names)} spectral indices of the Awesome Spectral Indices catalogue "
            "(the channels of the default DeepFeatures encoder) for every pixel and date and "
            "returns them as the labels of the `bands` dimension.\n\n"
            "Pure openEO math generated from the formula DAG of openeo-deepfeatures: "
            "sub-expressions shared by several indices are computed once, bands are selected "
            "by label, so it runs on any backend without UDFs. Constants use the catalogue's "
            "defaults (e.g. SAVI `L = 0.5`); kernel indices use an RBF kernel with "
            "`sigma = 0.5 (a + b)`. Results that are not finite are no-data.\n\n"
            "For another set of indices, build the graph with "
            "`openeo_deepfeatures.client.spectral_indices(cube, indices=[...])`."
        ),
        parameters=[data, select],
        returns=_returns("The spectral indices as the labels of the `bands` dimension."),
        categories=["cubes", "math", "vegetation indices"],
        examples=[
            _example(
                "A few indices",
                {"data": {"from_parameter": "data"}, "indices": ["NDVI", "EVI", "NDWI"]},
                "NDVI, EVI and NDWI per pixel and date.",
            )
        ],
        links=[
            _SOURCE_LINK,
            {
                "rel": "about",
                "href": "https://github.com/awesome-spectral-indices/awesome-spectral-indices",
                "title": "Awesome Spectral Indices (the formula catalogue)",
                "type": "text/html",
            },
        ],
    )


def _embed_udp() -> dict[str, Any]:
    data = _datacube(
        "data",
        "A spectral-index cube (`t`, `bands`, `y`, `x`) holding the channels the model reads "
        "(for the default model: the output of `deepfeatures_spectral_indices`); no-data "
        "(clouds) as null.",
    )
    model, sha = _model_parameters()
    graph = embed_step(data, model=model, model_sha256=sha)
    return build_process_dict(
        graph,
        process_id="deepfeatures_embed",
        summary="DeepFeatures encoder: spectral-index cube to latent feature cube",
        description=(
            "Runs a DeepFeatures encoder (ONNX with an embedded model contract) over a "
            "spectral-index cube and returns its latent features per pixel and date as the "
            "labels `F01`, `F02`, ... of the `bands` dimension.\n\n"
            f"Runs as a Python UDF (`udf/feature_embedding.py`, numpy + xarray + onnxruntime) "
            f"in `apply_neighborhood` windows of {EMBED_WINDOW} x {EMBED_WINDOW} px with all "
            f"dates and {EMBED_OVERLAP} px of overlap: models with a spatial context of up to "
            f"{EMBED_OVERLAP} px give the same features as one pass over the whole cube "
            "(the UDF refuses models that need more). "
            "The model contract decides the channels (selected by label), their normalisation "
            "and the context. Features are defined for every pixel and date, cloudy ones "
            "included (the model fills them from their valid neighbours in space and time)."
        ),
        parameters=[data, model, sha],
        returns=_returns("The latent features as the labels of the `bands` dimension."),
        categories=["cubes", "machine learning", "udf"],
        examples=[
            _example(
                "Default model",
                {"data": {"from_parameter": "data"}},
                "Features F01..F06 of the default encoder.",
            )
        ],
        links=[_SOURCE_LINK, _DEEPFEATURES_LINK],
    )


def _feature_cube_udp() -> dict[str, Any]:
    data = _datacube(
        "data",
        "Sentinel-2 L2A digital numbers (`t`, `bands`, `y`, `x`) as loaded from a collection "
        f"such as CDSE `SENTINEL2_L2A`, with the bands {', '.join(default_bands())} and `SCL`.",
    )
    model, sha = _model_parameters()
    refl = preprocess_step(data, bands=default_bands())
    si = spectral_indices_step(refl, default_indices())
    graph = embed_step(si, model=model, model_sha256=sha)
    return build_process_dict(
        graph,
        process_id="deepfeatures_feature_cube",
        summary="DeepFeatures feature cube from Sentinel-2 L2A",
        description=(
            "The whole DeepFeatures chain on a Sentinel-2 L2A cube: digital numbers to "
            "cloud-masked reflectance (as `deepfeatures_preprocess_s2` with its defaults), the "
            "spectral indices of the default encoder (as `deepfeatures_spectral_indices`), and "
            "the encoder's latent features (as `deepfeatures_embed`).\n\n"
            "Load the cube with `load_collection` (e.g. CDSE `SENTINEL2_L2A`) including the "
            "`SCL` band; the result is a Feature Data Cube with the labels `F01`, `F02`, ... on "
            "the `bands` dimension, ready for `save_result` (netCDF or GeoTIFF)."
        ),
        parameters=[data, model, sha],
        returns=_returns("The latent features as the labels of the `bands` dimension."),
        categories=["cubes", "machine learning", "udf"],
        examples=[
            _example(
                "Default model",
                {"data": {"from_parameter": "data"}},
                "Features F01..F06 of the default encoder for a Sentinel-2 L2A cube.",
            )
        ],
        links=[_SOURCE_LINK, _DEEPFEATURES_LINK],
    )


_BUILDERS = {
    "deepfeatures_preprocess_s2": _preprocess_udp,
    "deepfeatures_spectral_indices": _spectral_indices_udp,
    "deepfeatures_embed": _embed_udp,
    "deepfeatures_feature_cube": _feature_cube_udp,
}


def build_udp(process_id: str) -> dict[str, Any]:
    """The UDP document (openEO process JSON) of ``process_id``."""
    from .errors import ProcessUnsupported

    if process_id not in _BUILDERS:
        raise ProcessUnsupported(process=process_id, namespace=NAMESPACE_URL)
    return _BUILDERS[process_id]()


def _dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_udps(folder: str | Path, *, check: bool = False) -> list[Path]:
    """Write every UDP to ``folder/<id>.json``; ``check=True`` writes nothing and returns
    the files that differ from (or are missing against) the generator."""
    from .io import atomic_path

    folder = Path(folder)
    out = []
    for process_id in UDP_IDS:
        path = folder / f"{process_id}.json"
        text = _dumps(build_udp(process_id))
        if check:
            if not path.is_file() or path.read_text("utf-8") != text:
                out.append(path)
            continue
        with atomic_path(path, overwrite=True) as tmp:
            Path(tmp).write_text(text, "utf-8")
        out.append(path)
    return out
