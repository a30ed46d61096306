"""DeepFeatures for the openEO Python client: ``DataCube`` in, ``DataCube`` out.

Every function takes an ``openeo.DataCube`` from any connection (CDSE, openEO Platform, our
:class:`~openeo_deepfeatures.local.LocalConnection`, or none at all) and adds the DeepFeatures
steps to its process graph; nothing contacts a backend, so graphs can be built offline.

``namespace=None`` (default) inlines the steps: the graph is self-contained and runs on any
backend with Python UDFs (the spectral indices and preprocessing are pure openEO math).
``namespace=NAMESPACE_URL`` (or a URL/folder of your own copies, or ``"deepfeatures"`` on a
backend with the plugin installed) references the published UDPs by id instead::

    import openeo
    from openeo_deepfeatures import client

    con = openeo.connect("openeo.dataspace.copernicus.eu").authenticate_oidc()
    s2 = con.load_collection(
        "SENTINEL2_L2A",
        spatial_extent={"west": 5.05, "south": 51.2, "east": 5.10, "north": 51.23},
        temporal_extent=["2023-01-01", "2024-01-01"],
        bands=[*client.DEFAULT_BANDS, "SCL"],
    )
    features = client.feature_cube(s2)
    job = features.create_job(out_format="netCDF", job_options=client.job_options())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openeo.rest.datacube import DataCube

from . import udps
from .errors import ProcessParameterInvalid
from .sentinel2 import BANDS, DEFAULT_INVALID_SCL

__all__ = [
    "DEFAULT_BANDS",
    "DEFAULT_MODEL_URL",
    "MODEL_URLS",
    "NAMESPACE_URL",
    "embed",
    "feature_cube",
    "job_options",
    "preprocess_s2",
    "spectral_indices",
]

NAMESPACE_URL = udps.NAMESPACE_URL
DEFAULT_MODEL_URL = udps.DEFAULT_MODEL_URL
#: The Sentinel-2 bands the default model's indices need (load them plus ``SCL``).
DEFAULT_BANDS: tuple[str, ...] = udps.default_bands()
#: The shipped models as published with the package source, by name (``default``, ``s2-10m``).
MODEL_URLS: dict[str, str] = udps.model_urls()


def _check_cube(cube: Any, process: str) -> DataCube:
    if not isinstance(cube, DataCube):
        raise ProcessParameterInvalid(
            process=process,
            parameter="data",
            reason=f"an openeo.DataCube is needed, not {type(cube).__name__}.",
        )
    return cube


def _cube_bands(cube: DataCube) -> list[str] | None:
    metadata = cube.metadata
    if metadata is None or not metadata.has_band_dimension():
        return None
    return [str(b) for b in metadata.band_names]


def _loaded_bands(cube: DataCube) -> list[str]:
    """The ``bands`` of the graph's ``load_collection`` (cubes built without metadata)."""
    loads = [n for n in cube.flat_graph().values() if n["process_id"] == "load_collection"]
    bands = loads[0]["arguments"].get("bands") if len(loads) == 1 else None
    return [str(b) for b in bands] if isinstance(bands, list) else []


def _reference(cube: DataCube, process_id: str, namespace: str, **arguments: Any) -> DataCube:
    args = {k: v for k, v in arguments.items() if v is not None}
    return cube.process(process_id, data=cube, namespace=namespace, **args)


def preprocess_s2(
    cube: DataCube,
    *,
    bands: Sequence[str] | None = None,
    boa_offset: float = 0,
    invalid_scl: Sequence[int] = DEFAULT_INVALID_SCL,
    namespace: str | None = None,
) -> DataCube:
    """Digital numbers -> surface reflectance ``(DN + boa_offset) / 10000``, SCL mask applied.

    ``bands``: reflectance bands to keep (default: those of the cube's metadata other than
    ``SCL``, else :data:`DEFAULT_BANDS`). ``boa_offset``: 0 for harmonised collections such as
    CDSE ``SENTINEL2_L2A``, -1000 for raw products of processing baseline 04.00 or later.
    """
    process = "deepfeatures_preprocess_s2"
    cube = _check_cube(cube, process)
    if bands is None:
        known = _cube_bands(cube)
        bands = [b for b in known if b != "SCL"] if known else list(DEFAULT_BANDS)
    if namespace is not None:
        return _reference(
            cube,
            process,
            namespace,
            bands=list(bands),
            boa_offset=boa_offset,
            invalid_scl=list(invalid_scl),
        )
    return udps.preprocess_step(
        cube, bands=list(bands), boa_offset=boa_offset, invalid_scl=list(invalid_scl)
    )


def spectral_indices(
    cube: DataCube,
    indices: Sequence[str] | None = None,
    *,
    namespace: str | None = None,
) -> DataCube:
    """Spectral indices (ASI short names; default: the default model's channels) as bands.

    Inlined, any computable set of indices becomes pure openEO math for the bands the cube
    offers (its metadata; all Sentinel-2 bands when it has none). With ``namespace``, the
    published UDP computes the default set and returns ``indices`` of it.
    """
    process = "deepfeatures_spectral_indices"
    cube = _check_cube(cube, process)
    names = list(indices) if indices is not None else list(udps.default_indices())
    if namespace is not None:
        unknown = sorted(set(names) - set(udps.default_indices()))
        if unknown:
            raise ProcessParameterInvalid(
                process=process,
                parameter="indices",
                reason=f"the published UDP computes the default model's indices only; {unknown} "
                "are not among them. Leave `namespace` unset to inline any index.",
            )
        return _reference(cube, process, namespace, indices=names)
    bands = _cube_bands(cube) or [b.label for b in BANDS]
    return udps.spectral_indices_step(cube, names, bands=bands)


def embed(
    cube: DataCube,
    model: str = DEFAULT_MODEL_URL,
    *,
    model_sha256: str | None = None,
    namespace: str | None = None,
) -> DataCube:
    """Encoder features ``F01..Fk`` of a spectral-index cube (UDF in ``apply_neighborhood``).

    ``model``: URL of an ONNX encoder, or a path on the backend (e.g. inside a
    ``udf-dependency-archives`` folder, see :func:`job_options`). ``model_sha256``: refuse a
    model file with another digest.
    """
    process = "deepfeatures_embed"
    cube = _check_cube(cube, process)
    if namespace is not None:
        return _reference(cube, process, namespace, model=model, model_sha256=model_sha256)
    return udps.embed_step(cube, model=model, model_sha256=model_sha256)


def _shipped_name(model: str | None, cube: DataCube) -> str | None:
    """The shipped model meant by ``model`` (a name or its URL); None picks by the cube's bands."""
    if model is None:
        from .bands import normalize_band_label
        from .encoder.selection import bands_needed

        known = {str(normalize_band_label(b)) for b in (_cube_bands(cube) or _loaded_bands(cube))}
        if known:
            for name in MODEL_URLS:
                if set(bands_needed(udps.model_channels(name))) <= known:
                    return name
        return "default"  # no band metadata: the default model's bands are loaded
    for name, url in MODEL_URLS.items():
        if model in (name, url):
            return name
    return None


def feature_cube(
    cube: DataCube,
    model: str | None = None,
    *,
    model_sha256: str | None = None,
    namespace: str | None = None,
) -> DataCube:
    """Sentinel-2 L2A digital numbers (with ``SCL``) -> DeepFeatures feature cube.

    ``model``: a shipped model's name (``"default"``, ``"s2-10m"``) or URL
    (:data:`MODEL_URLS`), or the URL/backend path of a model of your own with the default
    model's channels. None: the first shipped model whose bands the cube's metadata lists
    (``s2-10m`` for a cube of B02, B03, B04, B08 and SCL), else ``default``.
    """
    from .encoder.selection import bands_needed

    process = "deepfeatures_feature_cube"
    cube = _check_cube(cube, process)
    name = _shipped_name(model, cube)
    url = MODEL_URLS[name] if name is not None else str(model)
    if namespace is not None:
        return _reference(cube, process, namespace, model=url, model_sha256=model_sha256)
    channels = udps.model_channels(name or "default")
    refl = preprocess_s2(cube, bands=bands_needed(channels))
    si = udps.spectral_indices_step(refl, list(channels))
    return udps.embed_step(si, model=url, model_sha256=model_sha256)


def job_options(
    *,
    model_archive: str | None = None,
    executor_memory: str = "2G",
    python_memory: str = "3G",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Batch-job options for geopyspark backends (CDSE, openEO Platform) running our UDFs.

    ``python_memory``: memory of the Python UDF worker. The default model reads 146 index
    channels (float32): an 80 x 80 px window (64 px plus 8 px of overlap on each side) of 140
    dates is 0.5 GiB in, and the UDF holds about three times that at its peak. ``model_archive``:
    ``"https://.../model.zip#tmp/model"`` makes the backend unpack the zip into ``tmp/model``
    beside the UDF (job option ``udf-dependency-archives``); then pass
    ``model="tmp/model/<file>.onnx"`` to :func:`embed`/:func:`feature_cube` and nothing is
    downloaded at run time.
    """
    options: dict[str, Any] = {
        "executor-memory": executor_memory,
        "python-memory": python_memory,
    }
    if model_archive is not None:
        if "#" not in model_archive:
            raise ProcessParameterInvalid(
                process="job_options",
                parameter="model_archive",
                reason="use 'URL#folder', e.g. 'https://host/model.zip#tmp/model': the part "
                "after '#' is the folder the backend unpacks the archive into.",
            )
        options["udf-dependency-archives"] = [model_archive]
    options.update(extra or {})
    return options
