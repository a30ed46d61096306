# /// script
# dependencies = ["numpy>=1.26", "xarray>=2024.1", "onnxruntime>=1.18"]
# ///
"""DeepFeatures encoder (openEO UDF file of openeo-deepfeatures): spectral indices -> features.

Self-contained (numpy, xarray, onnxruntime). Turns a spectral-index cube ``(t, bands, y, x)``
into a feature cube ``(t, bands=F01..Fk, y, x)`` (float32) with an ONNX encoder whose contract
(input channels, normalisation, receptive field, output names) is stored in the model file's
metadata. The package ``openeo_deepfeatures`` imports this very file for its native path.

Use it in ``apply_neighborhood`` with the whole time series in each window and an overlap of at
least the model's ``spatial_radius`` (8 px for the default model)::

    udf = openeo.UDF.from_file("feature_embedding.py", context={"model": URL, "model_sha256": DIGEST})
    features = si_cube.apply_neighborhood(
        udf,
        size=[{"dimension": "x", "value": 128, "unit": "px"},
              {"dimension": "y", "value": 128, "unit": "px"}, {"dimension": "t", "value": None}],
        overlap=[{"dimension": "x", "value": 8, "unit": "px"},
                 {"dimension": "y", "value": 8, "unit": "px"}],
    )

Context keys:

- ``model`` (required): an http(s) URL, downloaded once per worker into ``$DEEPFEATURES_CACHE``
  (default ``$XDG_CACHE_HOME/openeo-deepfeatures/models``, i.e. ``~/.cache/...``) and then
  reused; or a local path, absolute or relative to the working directory. With the job option
  ``"udf-dependency-archives": ["https://.../model.zip#tmp/model"]`` the path is
  ``"tmp/model/default.onnx"``.
- ``model_sha256``: the model file's digest (as the processes' parameter of that name); a file
  with another digest is refused. ``sha256``, the key of earlier releases, is still read.
- ``providers``: onnxruntime execution providers (default CUDA then CPU when available, else CPU);
  ``threads``: onnxruntime intra-op threads; ``batch_size``: windows per call (patch models).
- ``overlap``: the overlap of the windows in px (default: the model's ``spatial_radius``).

Models are loaded by :func:`open_model`, the one model loader of the project (the package's
native path calls it too): per worker process, the file is read and sha256-hashed once and one
onnxruntime session is kept per (file, sha256, providers, threads).

Cube borders: openEO backends fill the part of a window beyond the cube's edge with no-data,
while the native ``openeo_deepfeatures.embed`` treats the cube's edge as the edge of the data.
To give the same features, outer rows and columns that are NaN for every date and channel are
cut off (at most ``overlap`` px on each side), the model runs on the rest, and the cut rows and
columns are NaN in the result (they lie in the overlap, which the backend discards). An overlap
strip inside the cube that has no data at all is treated the same way, as an edge.

Dense models (``(1, T, C, H, W) -> (1, T, k, H, W)``) run once over the window. Patch models
(``(N, T, C, h, w) -> (N, k)``, the DeepFeatures layout) run one window per pixel-date, padded
with NaN (``x = 0``, ``valid = 0``) beyond the data and with the first/last date beyond the
series. Features are finite everywhere the model runs, also where all inputs are missing.
"""

# No `from __future__ import annotations`: openeo.udf.run_udf_code recognises apply_datacube by
# its annotations, and does not recognise the string "xarray.DataArray".

import functools
import hashlib
import http.client
import json
import logging
import math
import os
import re
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray

__all__ = [
    "PATCH_BATCH_BYTES",
    "Model",
    "OpenModel",
    "apply_datacube",
    "apply_metadata",
    "cache_dir",
    "clear_caches",
    "dense_features",
    "download",
    "file_sha256",
    "load_model",
    "normalise",
    "open_model",
    "patch_batch_size",
    "patch_features",
    "resolve_providers",
    "time_inputs",
]

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
#: Patch models without ``batch_size``: as many windows per call as fit in this many bytes.
PATCH_BATCH_BYTES = 32 * 2**20
_MAX_PATCH_BATCH = 1024
_DIMS = ("t", "bands", "y", "x")
_ALIASES = {"time": "t", "band": "bands"}
_log = logging.getLogger(__name__)


class UdfError(Exception):
    """An error with a message that starts with its openEO-style code; ``reason`` is the
    message without it, ``parameter`` the UDF context key (or loader argument) at fault."""

    code = "Internal"

    def __init__(self, reason: str, parameter=None) -> None:
        super().__init__(f"{self.code}: {reason}")
        self.reason = reason
        self.parameter = parameter


class ProcessParameterMissing(UdfError, ValueError):
    code = "ProcessParameterMissing"


class ProcessParameterInvalid(UdfError, ValueError):
    code = "ProcessParameterInvalid"


class BandMissing(UdfError, ValueError):
    code = "BandMissing"


class DimensionNotAvailable(UdfError, ValueError):
    code = "DimensionNotAvailable"


class ModelDownloadFailed(UdfError, RuntimeError):
    code = "ModelDownloadFailed"


# --------------------------------------------------------------------------- numeric kernel


def normalise(x, offset, scale, clip: float, *, axis: int = 1, copy: bool = True):
    """``(x_n, valid)``, float32: ``x_n = clip((x - offset) / scale, -clip, clip)`` per channel
    on ``axis``, 0 where ``x`` is NaN/inf; ``valid`` (size 1 on ``axis``) is 1 where at least
    one channel is finite. ``copy=False``: a float32 ``x`` is normalised in place (and
    returned as ``x_n``), which saves a copy of a 100+ channel tile."""
    x = np.asarray(x)
    axis = axis % x.ndim
    if x.shape[axis] != len(offset) or len(offset) != len(scale):
        raise ProcessParameterInvalid(
            f"normalise: the array has {x.shape[axis]} channels on axis {axis}, the model "
            f"{len(offset)}."
        )
    shape = [1] * x.ndim
    shape[axis] = len(offset)
    offset = np.asarray(offset, dtype=np.float32).reshape(shape)
    scale = np.asarray(scale, dtype=np.float32).reshape(shape)
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x)
    # in place on one float32 array: tiles hold 100+ channels, temporaries would multiply them
    with np.errstate(invalid="ignore", over="ignore"):
        if copy or not x.flags.writeable:
            x_n = np.subtract(x, offset, dtype=np.float32)
        else:
            x_n = np.subtract(x, offset, out=x)
        np.divide(x_n, scale, out=x_n)
        np.clip(x_n, -clip, clip, out=x_n)
    valid = finite.any(axis=axis, keepdims=True).astype(np.float32)
    np.copyto(x_n, np.float32(0), where=np.logical_not(finite, out=finite))
    return x_n, valid


def time_inputs(dates):
    """``(day, doy)`` model inputs, float32, for dates on the last axis (``datetime64`` or days
    since 1970-01-01): days since the first date, and the 0-based fractional day of year."""
    dates = np.asarray(dates)
    if np.issubdtype(dates.dtype, np.datetime64):
        ms = dates.astype("datetime64[ms]")
    else:
        steps = np.round(dates.astype(np.float64) * 86_400_000).astype("timedelta64[ms]")
        ms = np.datetime64("1970-01-01", "ms") + steps
    epoch_days = (ms - np.datetime64("1970-01-01", "ms")) / np.timedelta64(1, "D")
    doy = (ms - ms.astype("datetime64[Y]").astype("datetime64[ms]")) / np.timedelta64(1, "D")
    day = epoch_days - epoch_days[..., :1]
    return day.astype(np.float32), doy.astype(np.float32)


def dense_features(session, x, days, normalisation, outputs=("features",), *, copy=True):
    """One dense-model pass: ``x`` ``(T, C, H, W)`` raw channels in model order, ``days`` ``(T,)``
    days since 1970, ``normalisation`` ``{"offset", "scale", "clip"}`` -> ``(T, k, H, W)``.
    ``copy=False`` normalises a float32 ``x`` in place (it is overwritten)."""
    n = normalisation
    x_n, valid = normalise(x, n["offset"], n["scale"], n["clip"], axis=1, copy=copy)
    day, doy = time_inputs(np.asarray(days, dtype=np.float64)[None, :])
    feeds = {"x": x_n[None], "valid": valid[None], "day": day, "doy": doy}
    return np.asarray(session.run(list(outputs), feeds)[0][0], dtype=np.float32)


def patch_batch_size(n_channels: int, temporal_window: int, spatial_radius: int) -> int:
    """Windows per onnxruntime call so that one call reads about ``PATCH_BATCH_BYTES``."""
    side = 2 * spatial_radius + 1
    window = temporal_window * (n_channels + 1) * side * side * 4
    return max(1, min(_MAX_PATCH_BATCH, PATCH_BATCH_BYTES // window))


def patch_features(
    session,
    x,
    days,
    normalisation,
    *,
    spatial_radius: int,
    temporal_radius: int,
    outputs=("features",),
    batch_size=None,
):
    """Sliding-window patch-model features for the interior of a padded block.

    ``x`` ``(T + 2 rt, C, H + 2 rs, W + 2 rs)`` raw channels in model order (NaN where there is
    no data, padding included), ``days`` ``(T + 2 rt,)`` days since 1970, ``rt``/``rs`` the
    temporal/spatial radius -> ``(T, k, H, W)`` float32: the features of the window centred on
    each interior pixel-date, ``batch_size`` windows per call.
    """
    rt, rs = temporal_radius, spatial_radius
    tw, side = 2 * rt + 1, 2 * rs + 1
    shape = (x.shape[0] - 2 * rt, x.shape[2] - 2 * rs, x.shape[3] - 2 * rs)
    if min(shape) <= 0:
        raise ProcessParameterInvalid(f"a block of shape {x.shape} is smaller than one window.")
    n = normalisation
    x_n, valid = normalise(x, n["offset"], n["scale"], n["clip"], axis=1)
    view = functools.partial(
        np.lib.stride_tricks.sliding_window_view, window_shape=(tw, side, side), axis=(0, 2, 3)
    )
    xw, vw = view(x_n), view(valid)  # (T, C, H, W, tw, side, side)
    day, doy = time_inputs(
        np.lib.stride_tricks.sliding_window_view(np.asarray(days, dtype=np.float64), tw)
    )
    step = batch_size or patch_batch_size(x.shape[1], tw, rs)
    total, parts = math.prod(shape), []
    for start in range(0, total, step):
        ti, yi, xi = np.unravel_index(np.arange(start, min(start + step, total)), shape)
        feeds = {
            "x": np.ascontiguousarray(xw[ti, :, yi, xi].transpose(0, 2, 1, 3, 4)),
            "valid": np.ascontiguousarray(vw[ti, :, yi, xi].transpose(0, 2, 1, 3, 4)),
            "day": np.ascontiguousarray(day[ti]),
            "doy": np.ascontiguousarray(doy[ti]),
        }
        parts.append(np.asarray(session.run(list(outputs), feeds)[0], dtype=np.float32))
    out = np.concatenate(parts)
    return out.reshape(*shape, out.shape[-1]).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- the model loader
# One loader for both homes: this UDF, and the native path of openeo_deepfeatures (which imports
# this file). A model file is read and hashed once per version of the file and process; one
# onnxruntime session is made per (file, sha256, providers, threads) and process.

_LOCK = threading.RLock()  # one load at a time: tasks of a run share the first one's session
_DIGESTS: dict = {}  # (path, device, inode, size, mtime) -> sha256 of that version of the file
_SESSIONS: dict = {}  # (real path, sha256, providers, threads, process id) -> OpenModel
_MODELS: dict = {}  # session -> Model (the contract as this UDF reads it)


class OpenModel(NamedTuple):
    """A model opened by :func:`open_model`: its session, file, sha256, providers and threads,
    and the ONNX ``metadata_props`` (the contract, one JSON value per key)."""

    session: Any
    path: str
    sha256: str
    providers: tuple
    threads: Any
    metadata: dict


class Model(NamedTuple):
    """An onnxruntime session with the contract read from the model's metadata."""

    session: Any
    path: str
    sha256: str
    family: str
    channels: tuple
    features: tuple
    normalisation: dict
    spatial_radius: int
    temporal_radius: int
    outputs: tuple


def cache_dir() -> Path:
    """Where models given by URL are kept: ``$DEEPFEATURES_CACHE``, else
    ``$XDG_CACHE_HOME/openeo-deepfeatures/models`` (``~/.cache/...``), else (no writable home)
    a folder in the temporary directory."""
    if os.environ.get("DEEPFEATURES_CACHE"):
        return Path(os.environ["DEEPFEATURES_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = base / "openeo-deepfeatures" / "models"
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path(tempfile.gettempdir()) / "openeo-deepfeatures-models"
    return home


def _hash_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(path) -> tuple:
    """What identifies one version of a file: its path, inode, size and modification time."""
    st = os.stat(path)
    return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def file_sha256(path) -> str:
    """The sha256 of a file, read and hashed once per version of the file and process."""
    key = _version(path)
    with _LOCK:
        if key not in _DIGESTS:
            _DIGESTS[key] = _hash_file(path)
        return _DIGESTS[key]


def _checked_sha256(sha256):
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
        raise ProcessParameterInvalid(f"'sha256' must be 64 hex digits, not {sha256!r}.", "sha256")
    return sha256.strip().lower()


def download(url: str, sha256=None, *, opener=None) -> str:
    """The copy of the model at ``url`` in :func:`cache_dir`, downloaded on first use.

    The download goes to a temporary file that is renamed when complete (and, with ``sha256``,
    checked), so the cache never holds a partial file. ``opener(url)``: the response to read
    (default: ``urllib.request.urlopen`` with a 60 s timeout).
    """
    sha256 = _checked_sha256(sha256)
    cache = cache_dir()
    target = cache / f"{sha256 or hashlib.sha256(url.encode()).hexdigest()[:32]}.onnx"
    with _LOCK:
        if target.is_file() and (sha256 is None or file_sha256(target) == sha256):
            return str(target)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=cache)
        except OSError as exc:
            raise ModelDownloadFailed(
                f"cannot write to the model cache {str(cache)!r} ({exc}); set "
                "DEEPFEATURES_CACHE to a writable folder.",
                "model",
            ) from None
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f, (opener or _urlopen)(url) as response:
                for block in iter(lambda: response.read(1 << 20), b""):
                    digest.update(block)
                    f.write(block)
            if sha256 is not None and digest.hexdigest() != sha256:
                raise ProcessParameterInvalid(
                    f"the model downloaded from {url!r} has sha256 {digest.hexdigest()}, "
                    f"expected {sha256}: wrong URL, or the file changed.",
                    "sha256",
                )
            os.replace(tmp, target)
            _DIGESTS[_version(target)] = digest.hexdigest()  # hashed while downloading
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError: an OSError
            if isinstance(exc, UdfError):
                raise
            plain = isinstance(exc, urllib.error.HTTPError) or not hasattr(exc, "reason")
            raise ModelDownloadFailed(
                f"cannot download the model {url!r}: {exc if plain else exc.reason}. Check the "
                "URL and that this machine may reach it (on an openEO backend: ship the model "
                "with the job option 'udf-dependency-archives' and give its path).",
                "model",
            ) from None
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone already when it was renamed
    return str(target)


def _urlopen(url: str):
    return urllib.request.urlopen(url, timeout=60)


def _model_file(source, sha256, opener) -> str:
    """The local file of ``source``: an http(s) URL (downloaded) or a path."""
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise ProcessParameterInvalid(f"'model' must be a URL or a path, not {source!r}.", "model")
    source = str(source).strip()
    if urllib.parse.urlparse(source).scheme in ("http", "https"):
        return download(source, sha256, opener=opener)
    path = Path(source.removeprefix("file://")).expanduser().absolute()
    if not path.is_file():
        raise ProcessParameterInvalid(
            f"the model file {source!r} does not exist (relative paths are read from the working "
            f"directory {os.getcwd()!r}; with 'udf-dependency-archives': ['.../model.zip#tmp/"
            "model'] the path is 'tmp/model/<file>.onnx').",
            "model",
        )
    return str(path)


def resolve_providers(requested=None) -> tuple:
    """The onnxruntime execution providers a session will use.

    ``None``: CUDA then CPU when onnxruntime offers CUDA (``onnxruntime-gpu``), else CPU alone.
    A name or a list (in order of preference) is used as given; each must be available.
    """
    import onnxruntime

    available = list(onnxruntime.get_available_providers())
    if requested is None:
        return (CUDA, CPU) if CUDA in available else (CPU,)
    requested = [requested] if isinstance(requested, str) else requested
    if (
        not isinstance(requested, (list, tuple))
        or not requested
        or not all(isinstance(p, str) and p for p in requested)
    ):
        raise ProcessParameterInvalid(
            f"'providers' must be a non-empty list of onnxruntime execution provider names, "
            f"not {requested!r}; available: {available}.",
            "providers",
        )
    missing = [p for p in requested if p not in available]
    if missing:
        hint = " (install onnxruntime-gpu on a machine with a GPU)" if CUDA in missing else ""
        raise ProcessParameterInvalid(
            f"'providers' {missing} not available here{hint}; available: {available}.",
            "providers",
        )
    return tuple(dict.fromkeys(requested))


def _integer(value, key: str, minimum: int = 1, *, prefix: str = ""):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ProcessParameterInvalid(f"{prefix}{key!r} must be an integer, not {value!r}.", key)
    if value is not None and value < minimum:
        raise ProcessParameterInvalid(f"{prefix}{key!r} must be >= {minimum}, not {value}.", key)
    return value


def open_model(source, sha256=None, *, providers=None, threads=None, opener=None) -> OpenModel:
    """The model loader of both homes: the onnxruntime session of ``source``, cached.

    ``source``: an http(s) URL (downloaded once into :func:`cache_dir`, see :func:`download`;
    ``opener`` as there) or a path. ``sha256``: the digest the file must have. ``providers``:
    see :func:`resolve_providers`. ``threads``: onnxruntime intra-op threads (``None``:
    onnxruntime's default, one per core).

    The file is read and hashed once per version of it and process (a changed file is hashed
    again); one session is made per (file, sha256, providers, threads) and process, with pinned
    options: all graph optimisations, sequential execution, one inter-op thread, no CPU memory
    arena (tiles and windows differ in shape; an arena would keep the largest of each).
    """
    sha256 = _checked_sha256(sha256)
    threads = _integer(threads, "threads")
    with _LOCK:
        path = _model_file(source, sha256, opener)
        digest = file_sha256(path)
        if sha256 is not None and digest != sha256:
            raise ProcessParameterInvalid(
                f"the model file {path!r} has sha256 {digest}, expected {sha256}: the file is "
                "truncated, altered or another model.",
                "sha256",
            )
        chosen = resolve_providers(providers)
        key = (os.path.realpath(path), digest, chosen, threads, os.getpid())
        if key not in _SESSIONS:
            session = _session(path, chosen, threads)
            meta = dict(session.get_modelmeta().custom_metadata_map)
            _SESSIONS[key] = OpenModel(session, path, digest, chosen, threads, meta)
        return _SESSIONS[key]


def _session(path: str, providers: tuple, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(path, options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ProcessParameterInvalid(
            f"{path!r} is not a readable ONNX model: {str(exc).splitlines()[0][:200]}", "model"
        ) from None
    active = session.get_providers()
    if providers[0] not in active:
        _log.warning(
            "onnxruntime could not start %s for %s; running on %s", providers[0], path, active
        )
    return session


def _contract(opened: OpenModel) -> Model:
    """The model's contract, as far as this UDF needs it."""
    meta, path = opened.metadata, opened.path
    keys = ("family", "channels", "features", "normalisation", "spatial_radius", "temporal_window")
    try:
        c = {k: json.loads(meta[k]) for k in (*keys, "outputs") if k in meta}
        model = Model(
            session=opened.session,
            path=path,
            sha256=opened.sha256,
            family=c["family"],
            channels=tuple(c["channels"]),
            features=tuple(c["features"]),
            normalisation={k: c["normalisation"][k] for k in ("offset", "scale", "clip")},
            spatial_radius=int(c["spatial_radius"]),
            temporal_radius=(int(c["temporal_window"]) - 1) // 2,
            outputs=tuple(c.get("outputs", ["features"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProcessParameterInvalid(
            f"{path!r} holds no DeepFeatures encoder contract in its metadata ({exc!r}); export "
            "models with `deepfeatures export`.",
            "model",
        ) from None
    if model.family not in ("dense", "patch"):
        raise ProcessParameterInvalid(f"unknown model family {model.family!r} in {path!r}.")
    return model


def _positive(context: dict, key: str, minimum: int = 1):
    return _integer(context.get(key), key, minimum, prefix="context ")


def load_model(context: dict) -> Model:
    """The model named in ``context`` (see the module docstring), cached per process."""
    if not isinstance(context, dict) or not context.get("model"):
        raise ProcessParameterMissing(
            "the UDF context has no 'model': give the URL of the ONNX encoder, e.g. "
            "{'model': 'https://.../default.onnx', 'model_sha256': '...'}, or its path, e.g. "
            "{'model': 'tmp/model/default.onnx'} with the job option 'udf-dependency-archives'.",
            "model",
        )
    opened = open_model(
        context["model"],
        _context_sha256(context),
        providers=context.get("providers"),
        threads=_positive(context, "threads"),
    )
    with _LOCK:
        if opened.session not in _MODELS:
            _MODELS[opened.session] = _contract(opened)
        return _MODELS[opened.session]


def _context_sha256(context: dict):
    """``model_sha256`` (or ``sha256``, its name in earlier releases) of the context."""
    new, old = context.get("model_sha256"), context.get("sha256")
    if new is not None and old is not None and new != old:
        raise ProcessParameterInvalid(
            "the UDF context gives two different digests, 'model_sha256' and 'sha256' (its "
            "earlier name): give 'model_sha256' only.",
            "model_sha256",
        )
    return new if new is not None else old


def clear_caches() -> None:
    """Forget the sessions and file digests remembered by this process."""
    with _LOCK:
        _SESSIONS.clear()
        _MODELS.clear()
        _DIGESTS.clear()


# --------------------------------------------------------------------------- the cube


def _standard_cube(cube) -> xarray.DataArray:
    if not isinstance(cube, xarray.DataArray):
        raise ProcessParameterInvalid(f"expected an xarray.DataArray, not {type(cube).__name__}.")
    cube = cube.rename({a: c for a, c in _ALIASES.items() if a in cube.dims and c not in cube.dims})
    if sorted(map(str, cube.dims)) != sorted(_DIMS):
        raise DimensionNotAvailable(
            f"the cube has dimensions {list(cube.dims)}; the encoder needs {list(_DIMS)} "
            "('time'/'band' are accepted too)."
        )
    return cube.transpose(*_DIMS)


def _epoch_days(t) -> np.ndarray:
    values = np.asarray(t.values)
    try:
        if not np.issubdtype(values.dtype, np.datetime64):
            values = np.array([str(v).removesuffix("Z") for v in values], dtype="datetime64[ms]")
        ms = values.astype("datetime64[ms]")
    except (TypeError, ValueError):
        raise ProcessParameterInvalid(
            f"the 't' labels must be dates, not {values[:3].tolist()}..."
        ) from None
    days = (ms - np.datetime64("1970-01-01", "ms")) / np.timedelta64(1, "D")
    if np.isnan(days).any() or (np.diff(days) < 0).any():
        raise ProcessParameterInvalid("the 't' labels must be dates in ascending order.")
    return days


def _kept(empty: np.ndarray, limit: int) -> tuple:
    """``(start, stop)``: ``empty`` rows cut at both ends, at most ``limit`` on each side."""
    n = len(empty)
    lead = int(np.argmin(empty)) if not empty.all() else n
    trail = int(np.argmin(empty[::-1])) if not empty.all() else n
    return min(lead, limit), n - min(trail, limit)


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    """Features ``(t, bands=F01..Fk, y, x)`` float32 of an SI cube; see the module docstring."""
    model = load_model(context)
    cube = _standard_cube(cube)
    have = {str(b) for b in cube["bands"].values}
    missing = [c for c in model.channels if c not in have]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise BandMissing(
            f"the model needs {len(missing)} channels the cube lacks: "
            f"{', '.join(missing[:10])}{more}. Compute these spectral indices first."
        )
    overlap = _positive(context, "overlap", 0)
    overlap = model.spatial_radius if overlap is None else overlap
    if overlap < model.spatial_radius:
        raise ProcessParameterInvalid(
            f"the model reads {model.spatial_radius} px of context around each pixel, but the "
            f"windows overlap by {overlap} px only: features near window edges would be wrong. "
            f"Use an apply_neighborhood overlap (and context 'overlap') of at least "
            f"{model.spatial_radius} px."
        )
    x = np.asarray(cube.sel(bands=list(model.channels)).values, dtype=np.float32)
    days = _epoch_days(cube["t"])
    nt, _, ny, nx = x.shape
    finite = np.isfinite(x)
    y0, y1 = _kept(~finite.any(axis=(0, 1, 3)), overlap)
    x0, x1 = _kept(~finite.any(axis=(0, 1, 2)), overlap)
    out = np.full((nt, len(model.features), ny, nx), np.nan, dtype=np.float32)
    core = x[:, :, y0:y1, x0:x1]
    if core.size and model.family == "dense":
        out[:, :, y0:y1, x0:x1] = dense_features(
            model.session, core, days, model.normalisation, model.outputs
        )
    elif core.size:
        rt, rs = model.temporal_radius, model.spatial_radius
        padded = np.pad(core, ((rt, rt), (0, 0), (rs, rs), (rs, rs)), constant_values=np.nan)
        out[:, :, y0:y1, x0:x1] = patch_features(
            model.session,
            padded,
            np.pad(days, rt, mode="edge"),
            model.normalisation,
            spatial_radius=rs,
            temporal_radius=rt,
            outputs=model.outputs,
            batch_size=_positive(context, "batch_size"),
        )
    coords = {k: v for k, v in cube.coords.items() if "bands" not in v.dims}
    coords["bands"] = list(model.features)
    return xarray.DataArray(out, dims=_DIMS, coords=coords, name="features")


def apply_metadata(metadata, context: dict):
    """The input's metadata with the band labels renamed to the model's feature names."""
    dimension = "bands"
    if getattr(metadata, "has_band_dimension", lambda: False)():
        dimension = metadata.band_dimension.name
    return metadata.rename_labels(dimension=dimension, target=list(load_model(context).features))
