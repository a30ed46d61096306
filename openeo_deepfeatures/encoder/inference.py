"""Encoder inference: onnxruntime sessions, and dense and patch feature extraction over dask.

:func:`embed` turns a spectral-index cube ``(t, bands, y, x)`` into a feature cube
``(t, bands=F01..Fk, y, x)`` (float32). The model contract alone decides which channels are
read (selected by name, in contract order), how they are normalised, the spatial halo
(``spatial_radius``) and the temporal context (``temporal_radius`` acquisitions on each side).

**Sessions.** Each task finds its ``onnxruntime.InferenceSession`` with
:func:`~openeo_deepfeatures.encoder.loader.get_session`: the UDF kernel's model loader, one
session per worker process and ``(file, sha256, providers, threads)``, the file hashed once per
process. Providers: CUDA first when onnxruntime sees it (``onnxruntime-gpu`` on a machine with a
GPU), else CPU; ``providers=[...]`` overrides this, and a provider that is not available raises
:class:`~openeo_deepfeatures.errors.ProcessParameterInvalid` naming the available ones.

**Dense models** (``(1, T, C, H, W) -> (1, T, k, H, W)``): the cube is cut into tiles of
``tile`` px (and ``tile["t"]`` dates); each tile is read with a halo of ``spatial_radius`` px
and ``temporal_radius`` dates from its neighbours (``dask.array.overlap``), run in one
onnxruntime call, and the halo is cut off again, so every output pixel-date is computed once.
At the edges of the cube there is no halo (dask's ``boundary="none"``): the model sees the cube
edge exactly as in one pass over the whole cube. ``day`` is taken per tile from its own dates;
the models use only date differences, so a tile's features equal the whole-cube run's (to
float32 rounding, about 1e-6). A tile must be at least as large as the halo.

**Patch models** (``(N, 11, C, 15, 15) -> (N, k)``, the DeepFeatures layout): one window of
``temporal_window`` dates x ``(2 spatial_radius + 1)`` px squared centred on every output
pixel-date, evaluated in batches of ``batch_size`` windows. Tiles get their windows' context
from their neighbours the same way. **Cube borders:** windows that reach past the cube are
padded with no-data: values NaN, so ``x = 0`` and ``valid = 0`` there; a padded date takes the
date of the nearest real acquisition (so its day offset is that of the first/last date, and
the patch model masks the invalid frame in its attention).

**No data / all-cloud pixel-dates.** Features are defined everywhere, never NaN: a pixel-date
without data enters the model with ``x = 0`` and ``valid = 0``; a dense model fills it from the
valid dates around it (its masked temporal mean) and its spatial neighbours, a patch model
masks the invalid frames and pixels. A pixel whose whole receptive field has no data still gets
finite features (what the model makes of the time encoding alone); the result is deterministic.
Mask them downstream with the input's validity if needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.array.overlap import overlap, trim_internal

from ..errors import (
    DimensionNotAvailable,
    NoDataAvailable,
    ProcessParameterInvalid,
)
from ..udf import feature_embedding as udf_kernel
from .contract import EncoderContract
from .loader import Encoder, as_encoder, get_session, resolve_providers

__all__ = [
    "DEFAULT_TILE",
    "PATCH_BATCH_BYTES",
    "dense_features",
    "embed",
    "embed_reflectance",
    "patch_features",
]

#: Tile size of :func:`embed` when ``tile`` is not given: pixels in y and x, dates in t.
DEFAULT_TILE: Mapping[str, int] = {"t": 64, "y": 128, "x": 128}
#: Patch mode without ``batch_size``: as many windows per call as fit in this many input bytes.
PATCH_BATCH_BYTES = udf_kernel.PATCH_BATCH_BYTES
_DIMS = ("t", "bands", "y", "x")
_ALIASES = {"time": "t", "band": "bands"}
_PROCESS = "embed"


def _invalid(parameter: str, reason: str, process: str = _PROCESS) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=process, parameter=parameter, reason=reason)


# --------------------------------------------------------------------------- numpy kernels
# written once, in the UDF file udf/feature_embedding.py (it runs on openEO backends without
# this package); here they are called with the contract's values.


def dense_features(
    contract: EncoderContract, session, x: np.ndarray, days: np.ndarray, *, copy: bool = True
) -> np.ndarray:
    """One dense-model pass: ``x`` ``(T, C, H, W)`` raw channels in contract order, ``days``
    ``(T,)`` days since 1970 -> features ``(T, k, H, W)`` float32 for every pixel-date.
    ``copy=False``: a float32 ``x`` is normalised in place (overwritten).

    The kernel is ``dense_features`` of ``udf/feature_embedding.py``."""
    return udf_kernel.dense_features(
        session, x, days, contract.normalisation.to_dict(), contract.outputs, copy=copy
    )


def patch_features(
    contract: EncoderContract,
    session,
    x: np.ndarray,
    days: np.ndarray,
    *,
    batch_size: int | None = None,
) -> np.ndarray:
    """Sliding-window patch-model features for the interior of a padded block.

    ``x`` ``(T + 2 rt, C, H + 2 rs, W + 2 rs)`` raw channels in contract order (NaN where there
    is no data, including the padding), ``days`` ``(T + 2 rt,)`` days since 1970, with ``rt``
    the temporal and ``rs`` the spatial radius -> ``(T, k, H, W)`` float32: the features of the
    window centred on each interior pixel-date, ``batch_size`` windows per onnxruntime call
    (default: about :data:`PATCH_BATCH_BYTES` of input). The kernel is ``patch_features`` of
    ``udf/feature_embedding.py``.
    """
    rt, rs = contract.temporal_radius, contract.spatial_radius
    if min(x.shape[0] - 2 * rt, x.shape[2] - 2 * rs, x.shape[3] - 2 * rs) <= 0:
        raise _invalid("x", f"a block of shape {x.shape} is smaller than one window.")
    return udf_kernel.patch_features(
        session,
        x,
        days,
        contract.normalisation.to_dict(),
        spatial_radius=rs,
        temporal_radius=rt,
        outputs=contract.outputs,
        batch_size=batch_size,
    )


@dataclass(frozen=True)
class _Kernel:
    """A picklable block function: finds its session in the worker's cache."""

    path: str
    sha256: str
    contract: EncoderContract
    providers: tuple[str, ...]
    threads: int | None
    batch_size: int | None
    program: dict[str, Any] | None = None  # reflectance -> channels, inside the tile

    def session(self):
        return get_session(self.path, self.sha256, self.providers, self.threads)

    def channels(self, x: np.ndarray) -> np.ndarray:
        if self.program is None:
            return x
        from ..indices.compute import evaluate_program

        return evaluate_program(self.program, x, 1, threads=1)

    def dense(self, x: np.ndarray, days: np.ndarray) -> np.ndarray:
        # indices computed here are this task's own array: normalise them in place; a block
        # of an SI cube may be a view of the caller's data: normalise a copy
        return dense_features(
            self.contract,
            self.session(),
            self.channels(x),
            days[:, 0, 0, 0],
            copy=self.program is None,
        )

    def patch(self, x: np.ndarray, days: np.ndarray) -> np.ndarray:
        return patch_features(
            self.contract,
            self.session(),
            self.channels(x),
            days[:, 0, 0, 0],
            batch_size=self.batch_size,
        )


# --------------------------------------------------------------------------- the cube


def _standard_dims(cube: xr.DataArray) -> xr.DataArray:
    if not isinstance(cube, xr.DataArray):
        raise _invalid("data", f"an xarray.DataArray (t, bands, y, x), not {type(cube).__name__}.")
    renames = {a: c for a, c in _ALIASES.items() if a in cube.dims and c not in cube.dims}
    cube = cube.rename(renames) if renames else cube
    dims = [str(d) for d in cube.dims]
    missing = [d for d in _DIMS if d not in dims]
    extra = [d for d in dims if d not in _DIMS]
    if missing or extra:
        raise DimensionNotAvailable(
            reason=(
                f"embed() needs a cube with dimensions {list(_DIMS)} ('time'/'band' are "
                f"accepted too); this one has {dims}"
                + (f": missing {missing}" if missing else "")
                + (f", unexpected {extra}" if extra else "")
                + "."
            )
        )
    if 0 in cube.shape:
        raise NoDataAvailable(reason=f"embed(): the cube is empty ({dict(cube.sizes)}).")
    for d in ("t", "bands"):
        if d not in cube.coords:
            raise _invalid("data", f"the cube has no labels on dimension {d!r}.")
    return cube.transpose(*_DIMS)


def _epoch_days(t: xr.DataArray) -> np.ndarray:
    values = np.asarray(t.values)
    try:
        if not np.issubdtype(values.dtype, np.datetime64):
            import pandas as pd

            values = pd.to_datetime(values).values
        ms = values.astype("datetime64[ms]")
    except (TypeError, ValueError) as exc:
        raise _invalid(
            "data", f"the 't' labels must be dates, not {values[:3].tolist()}... ({exc})."
        ) from None
    if np.isnat(ms).any():
        raise _invalid("data", "the 't' labels contain NaT (missing dates).")
    days = (ms - np.datetime64("1970-01-01", "ms")) / np.timedelta64(1, "D")
    if (np.diff(days) < 0).any():
        raise _invalid("data", "the 't' labels are not in ascending order; sort the cube by t.")
    return days.astype(np.float64)


def _tile_sizes(tile: int | Mapping[str, int | None] | None) -> dict[str, int | None]:
    sizes: dict[str, int | None] = dict(DEFAULT_TILE)
    if tile is None:
        return sizes
    if isinstance(tile, Mapping):
        unknown = sorted(set(tile) - {"t", "y", "x"})
        if unknown:
            raise _invalid("tile", f"keys are 't', 'y', 'x', not {unknown}.")
        sizes.update(tile)
    else:
        sizes["y"] = sizes["x"] = tile
    for dim, value in sizes.items():
        if value is None and dim == "t":
            continue  # the whole series in one chunk
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise _invalid(
                "tile", f"{dim}: a positive number of {_unit(dim)} is needed, not {value!r}."
            )
        sizes[dim] = int(value)
    return sizes


def _unit(dim: str) -> str:
    return "dates" if dim == "t" else "pixels"


def _chunks(n: int, size: int | None, depth: int) -> tuple[int, ...]:
    """``size`` chunks over ``n``; a last chunk smaller than ``depth`` joins the one before."""
    if size is None or size >= n:
        return (n,)
    out = [size] * (n // size)
    rest = n % size
    if rest:
        if rest < depth:
            out[-1] += rest
        else:
            out.append(rest)
    return tuple(out)


def embed_reflectance(
    reflectance: xr.DataArray,
    encoder: Encoder | str | os.PathLike | None = None,
    *,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    tile: int | Mapping[str, int | None] | None = None,
    batch_size: int | None = None,
) -> xr.DataArray:
    """Encoder features of a reflectance cube: :func:`embed` with the model's spectral indices
    computed inside each tile (with its halo) instead of as a cube of their own.

    Equal to ``embed(compute_indices(reflectance, model channels), ...)``, but the index cube
    (the model's channels: often 100+ per pixel and date) never exists beyond one tile, so
    memory stays bounded by the tile size however large the cube (see
    ``benchmarks/bench_feature_cube.py``). ``reflectance``: ``(t, bands, y, x)`` surface
    reflectance with the Sentinel-2 bands the indices need, NaN where there is no data.
    """
    return _embed(
        reflectance,
        encoder,
        providers=providers,
        threads=threads,
        tile=tile,
        batch_size=batch_size,
        from_reflectance=True,
    )


def embed(
    si_cube: xr.DataArray,
    encoder: Encoder | str | os.PathLike | None = None,
    *,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    tile: int | Mapping[str, int | None] | None = None,
    batch_size: int | None = None,
) -> xr.DataArray:
    """Encoder features of a spectral-index cube: ``(t, bands=F01..Fk, y, x)``, float32.

    Parameters
    ----------
    si_cube:
        ``(t, bands, y, x)`` (``time``/``band`` accepted, any order) with at least the model's
        channels in ``bands`` (others are ignored); NaN where there is no data (clouds).
    encoder:
        An :class:`~openeo_deepfeatures.encoder.Encoder`, the path of an ONNX encoder, or
        ``None`` for the default model.
    providers:
        onnxruntime execution providers in order of preference; default CUDA when available,
        else CPU.
    threads:
        onnxruntime intra-op threads per session (default: onnxruntime's, one per core). With
        a multi-threaded dask scheduler, dask threads x ``threads`` should not exceed the cores.
    tile:
        Tile size: pixels in y and x (an int), or ``{"t": dates, "y": px, "x": px}`` (``"t":
        None``: the whole series in one tile). Default :data:`DEFAULT_TILE`. Each must be at
        least the model's halo (``spatial_radius`` px, ``temporal_radius`` dates).
    batch_size:
        Patch models: windows per onnxruntime call (default: about
        :data:`PATCH_BATCH_BYTES` of input per call). Dense models run one tile per call (set
        ``tile`` instead); giving ``batch_size`` for them is an error.

    Returns
    -------
    A lazy (dask) cube when ``si_cube`` is dask-backed, else a computed one; coordinates ``t``,
    ``y``, ``x`` and the CRS (``spatial_ref``) of the input; attributes name the model and its
    sha256. See the module docstring for tiling, cube borders and no-data.
    """
    return _embed(
        si_cube,
        encoder,
        providers=providers,
        threads=threads,
        tile=tile,
        batch_size=batch_size,
        from_reflectance=False,
    )


def _embed(
    si_cube: xr.DataArray,
    encoder: Encoder | str | os.PathLike | None,
    *,
    providers: Sequence[str] | None,
    threads: int | None,
    tile: int | Mapping[str, int | None] | None,
    batch_size: int | None,
    from_reflectance: bool,
) -> xr.DataArray:
    enc = as_encoder(encoder, process=_PROCESS)
    contract = enc.contract
    cube = _standard_dims(si_cube)
    program = None
    if from_reflectance:
        from ..indices import compile_indices

        labels = [str(b) for b in cube["bands"].values]
        program = compile_indices(list(contract.channels), labels).to_dict()
        inputs = list(program["inputs"])
    else:
        contract.check_channels(cube["bands"].values.tolist(), process=_PROCESS)
        inputs = list(contract.channels)
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1
    ):
        raise _invalid("threads", f"a positive integer or None, not {threads!r}.")
    if batch_size is not None:
        if contract.family != "patch":
            raise _invalid(
                "batch_size",
                f"the {contract.family} model {contract.name!r} runs one tile per call; set "
                "`tile` to change how much it computes at once.",
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise _invalid("batch_size", f"a positive integer, not {batch_size!r}.")
        if batch_size < 1:
            raise _invalid("batch_size", f"a positive integer, not {batch_size!r}.")
        batch_size = int(batch_size)
    sizes = _tile_sizes(tile)
    halo = {"t": contract.temporal_radius, "y": contract.spatial_radius}
    halo["x"] = halo["y"]
    for dim in ("t", "y", "x"):
        if sizes[dim] is not None and sizes[dim] < halo[dim]:
            raise _invalid(
                "tile",
                f"{dim} = {sizes[dim]} {_unit(dim)} is smaller than the halo of the model "
                f"{contract.name!r} ({halo[dim]} {_unit(dim)} of context on each side); use "
                f"at least {halo[dim]} (tiles several times the halo waste less).",
            )
    chosen = resolve_providers(providers)
    get_session(enc.path, enc.sha256, chosen, threads)  # fail now, not inside a dask task
    kernel = _Kernel(
        str(enc.path.resolve()), enc.sha256, contract, chosen, threads, batch_size, program
    )

    days = _epoch_days(cube["t"])
    lazy = isinstance(cube.data, da.Array)
    x = cube.sel(bands=inputs).data
    x = x.astype(np.float32) if lazy else da.from_array(np.asarray(x, dtype=np.float32))
    nt, _, ny, nx = x.shape
    chunks = (
        _chunks(nt, sizes["t"], halo["t"]),
        (len(inputs),),
        _chunks(ny, sizes["y"], halo["y"]),
        _chunks(nx, sizes["x"], halo["x"]),
    )
    d = da.from_array(days.reshape(nt, 1, 1, 1), chunks=(chunks[0], 1, 1, 1))
    if contract.family == "dense":
        data = _dense(kernel, x.rechunk(chunks), d, halo, contract.k)
    else:
        data = _patch(kernel, x, days, chunks, halo, contract.k)

    out = _wrap(data, cube, contract, enc)
    if not lazy:
        out = out.compute(scheduler="synchronous")
    return out


def _depths(chunks, halo: Mapping[str, int]) -> dict[int, int]:
    """Overlap depth per axis; none along an axis in one chunk (no neighbours to read)."""
    return {
        i: (halo[dim] if dim in halo and len(chunks[i]) > 1 else 0) for i, dim in enumerate(_DIMS)
    }


def _dense(kernel: _Kernel, x: da.Array, d: da.Array, halo, k: int) -> da.Array:
    depth = _depths(x.chunks, halo)
    none = dict.fromkeys(depth, "none")
    x_ov = overlap(x, depth=depth, boundary=none, allow_rechunk=False)
    d_ov = overlap(d, depth={0: depth[0], 1: 0, 2: 0, 3: 0}, boundary=none, allow_rechunk=False)
    out = da.map_blocks(
        kernel.dense,
        x_ov,
        d_ov,
        chunks=(x_ov.chunks[0], (k,), *x_ov.chunks[2:]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
        name="deepfeatures-dense",
    )
    return trim_internal(out, depth, boundary=none)


def _patch(kernel: _Kernel, x: da.Array, days: np.ndarray, chunks, halo, k: int) -> da.Array:
    rt, rs = halo["t"], halo["y"]
    pad = ((rt, rt), (0, 0), (rs, rs), (rs, rs))
    padded = da.pad(x, pad, mode="constant", constant_values=np.nan)
    grown = tuple(
        (c[0] + a, *c[1:-1], c[-1] + b) if len(c) > 1 else (c[0] + a + b,)
        for c, (a, b) in zip(chunks, pad, strict=True)
    )
    padded = padded.rechunk(grown)
    days_p = np.pad(days, rt, mode="edge").reshape(-1, 1, 1, 1)
    d = da.from_array(days_p, chunks=(grown[0], 1, 1, 1))
    depth = _depths(grown, halo)
    none = dict.fromkeys(depth, "none")
    x_ov = overlap(padded, depth=depth, boundary=none, allow_rechunk=False)
    d_ov = overlap(d, depth={0: depth[0], 1: 0, 2: 0, 3: 0}, boundary=none, allow_rechunk=False)
    return da.map_blocks(
        kernel.patch,
        x_ov,
        d_ov,
        chunks=(chunks[0], (k,), *chunks[2:]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), dtype=np.float32),
        name="deepfeatures-patch",
    )


def _wrap(data: da.Array, cube: xr.DataArray, contract: EncoderContract, enc: Encoder):
    coords: dict[str, Any] = {
        "t": cube["t"],
        "bands": ("bands", list(contract.features)),
        "y": cube["y"],
        "x": cube["x"],
    }
    for name, coord in cube.coords.items():
        if name not in coords and "bands" not in coord.dims:
            coords[name] = coord  # spatial_ref (CRS) and other non-band coordinates
    attrs = {k: v for k, v in cube.attrs.items() if k in ("crs", "grid_mapping")}
    attrs.update(
        long_name="DeepFeatures latent features",
        model_name=contract.name,
        model_version=contract.model_version,
        model_family=contract.family,
        model_sha256=enc.sha256,
        model_file=enc.path.name,
        channels=",".join(contract.channels),
    )
    out = xr.DataArray(data, dims=_DIMS, coords=coords, name="features", attrs=attrs)
    if "grid_mapping" in cube.encoding:
        out.encoding["grid_mapping"] = cube.encoding["grid_mapping"]
    return out
