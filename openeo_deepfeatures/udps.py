"""The deepfeatures user-defined processes (UDPs): openEO process graphs built from Python.

Each process is described once, in ``openeo_deepfeatures/processes/specs/<id>.json``: a UDP
takes all its metadata (summary, description, parameters, returns, examples, links, ...) from
that spec and adds a graph of standard processes; only the defaults a portable graph cannot
leave ``null`` differ (:func:`portable_defaults`; the specs say so). The graphs are built with
the openEO Python client (``openeo.processes`` process builders) by the same step functions that
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

import copy
import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
    "PortableDefault",
    "build_udp",
    "default_bands",
    "default_indices",
    "embed_step",
    "feature_embedding_udf",
    "parameters_used",
    "portable_defaults",
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
    context = {"model": model, "model_sha256": model_sha256, "overlap": int(overlap)}
    return _step(
        cube, "apply_neighborhood", process=udf, size=size, overlap=margin, context=context
    )


# --------------------------------------------------------------------------- UDP documents


@dataclass(frozen=True)
class PortableDefault:
    """A UDP parameter's default where its spec says ``null``: a graph of standard processes
    needs a value (``null`` is then no longer accepted); ``choices``: the only values the graph
    offers (an ``enum`` on the array items)."""

    default: Any
    choices: tuple[str, ...] | None = None


def portable_defaults(process_id: str) -> dict[str, PortableDefault]:
    """What the UDP of ``process_id`` changes in its spec's parameters: the defaults a graph of
    standard processes cannot leave ``null`` (each spec's description says so)."""
    models = {"model": PortableDefault(DEFAULT_MODEL_URL)}
    return {
        "deepfeatures_preprocess_s2": {
            "bands": PortableDefault(list(default_bands())),
            "boa_offset": PortableDefault(0),
        },
        "deepfeatures_spectral_indices": {
            "indices": PortableDefault(list(default_indices()), choices=default_indices()),
        },
        "deepfeatures_embed": models,
        "deepfeatures_feature_cube": models,
    }[process_id]


def _preprocess_graph(p: Mapping[str, Parameter]) -> Cube:
    return preprocess_step(
        p["data"], bands=p["bands"], boa_offset=p["boa_offset"], invalid_scl=p["invalid_scl"]
    )


def _spectral_indices_graph(p: Mapping[str, Parameter]) -> Cube:
    return spectral_indices_step(p["data"], default_indices(), select=p["indices"])


def _embed_graph(p: Mapping[str, Parameter]) -> Cube:
    return embed_step(p["data"], model=p["model"], model_sha256=p["model_sha256"])


def _feature_cube_graph(p: Mapping[str, Parameter]) -> Cube:
    refl = preprocess_step(p["data"], bands=default_bands())
    si = spectral_indices_step(refl, default_indices())
    return embed_step(si, model=p["model"], model_sha256=p["model_sha256"])


#: The graph of each UDP, built from the parameters of its spec (``processes/specs/<id>.json``).
_GRAPHS: dict[str, Callable[[Mapping[str, Parameter]], Cube]] = {
    "deepfeatures_preprocess_s2": _preprocess_graph,
    "deepfeatures_spectral_indices": _spectral_indices_graph,
    "deepfeatures_embed": _embed_graph,
    "deepfeatures_feature_cube": _feature_cube_graph,
}
#: What a UDP takes from its spec, in this order (all the spec's metadata; then the graph).
_METADATA = (
    "id",
    "summary",
    "description",
    "categories",
    "experimental",
    "parameters",
    "returns",
    "exceptions",
    "examples",
    "links",
)


def parameters_used(nodes: Mapping[str, Any]) -> set[str]:
    """The UDP parameters a flat graph reads (``from_parameter`` outside callbacks)."""

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, Mapping):
            if "process_graph" in value:  # a callback: its parameters are its own
                return
            if set(value) == {"from_parameter"}:
                yield value["from_parameter"]
                return
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    return {name for node in nodes.values() for name in walk(node.get("arguments", {}))}


def _portable(param: Mapping[str, Any], change: PortableDefault | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(param))
    if change is None:
        return out
    schemas = out["schema"] if isinstance(out["schema"], list) else [out["schema"]]
    schemas = [s for s in schemas if s.get("type") != "null"]
    if change.choices is not None:
        schemas = [{**s, "items": {**s["items"], "enum": list(change.choices)}} for s in schemas]
    out["schema"] = schemas[0] if len(schemas) == 1 else schemas
    out["default"] = copy.deepcopy(change.default)
    return out


def build_udp(process_id: str) -> dict[str, Any]:
    """The UDP document (openEO process JSON) of ``process_id``: the metadata of its spec
    (:func:`openeo_deepfeatures.processes.get_spec`) and a graph of standard processes.

    The UDP lists the spec's parameters its graph reads (those it leaves out are optional in
    the spec), with the :func:`portable_defaults`, and the spec's examples it can run.
    """
    from .errors import ProcessUnsupported
    from .processes import get_spec

    if process_id not in _GRAPHS:
        raise ProcessUnsupported(process=process_id, namespace=NAMESPACE_URL)
    spec = get_spec(process_id)
    params = {
        p["name"]: Parameter(name=p["name"], description=p["description"], schema=p["schema"])
        for p in spec["parameters"]
    }
    graph = build_process_dict(_GRAPHS[process_id](params))["process_graph"]
    used = parameters_used(graph)
    changes = portable_defaults(process_id)
    doc = {key: spec[key] for key in _METADATA if key in spec}
    doc["parameters"] = [
        _portable(p, changes.get(p["name"])) for p in spec["parameters"] if p["name"] in used
    ]
    doc["examples"] = [e for e in spec.get("examples", []) if set(e["arguments"]) <= used]
    doc["process_graph"] = graph
    return doc


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
