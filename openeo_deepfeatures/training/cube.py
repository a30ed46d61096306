"""Training data cubes: tiles or DeepFeatures patches sampled from a spectral-index cube.

A training cube is a zarr (v3) store of ``n`` samples cut from an SI cube ``(t, bands, y, x)``:

- ``x``: float32 ``(sample, t, channel, row, col)``, NaN where missing (cloud, no data, or a
  non-finite index value). The spatial dimensions are called ``row``/``col`` because xarray
  cannot hold a variable ``x`` that has a dimension ``x``.
- ``day``: float64 ``(sample, t)``, days since 1970-01-01 of each acquisition.
- ``split``: str ``(sample,)``, ``"train"``, ``"validation"`` or ``"test"``.
- ``t0``, ``y0``, ``x0``: int64 ``(sample,)``, index in the source cube of the sample's first
  date, row and column (so ``x[i] == source[t0:t0+T, :, y0:y0+H, x0:x0+W]``).
- ``block``: int64 ``(sample,)``, the split block that holds the sample.
- coordinates ``sample`` (0..n-1) and ``channel`` (index or band names).
- attribute ``deepfeatures_training_cube``: JSON provenance (source path and sha256, kind, size,
  seed, rules, counts, the sha256 of the content, software versions, creation time).

Samples are ordered by split (train, validation, test), then block, then ``(t0, y0, x0)``.

**Validity rules.** A pixel-date is *clear* when at least one channel is finite (the SCL cloud
mask of :func:`~openeo_deepfeatures.preprocess_s2` sets every channel to NaN). A candidate window
is kept when it lies inside one split block, when no two consecutive acquisitions in it are more
than ``max_gap_days`` apart, when at least ``min_clear_fraction`` of its pixel-dates are clear,
and (``kind="patch"``) when its centre pixel at its centre date, the target, is clear.

**Split.** The cube is cut into blocks of ``block = (H, W)`` pixels (or ``(T, H, W)``
acquisitions x pixels, to split time as well). A sample never straddles two blocks. The blocks
that hold valid candidates are assigned to the splits by a permutation seeded with ``seed``, in
proportion to ``split``; each split then draws its share of ``n_samples`` from its own blocks
without replacement. Neighbouring pixels of different splits are therefore never in one sample.
Same input and seed give byte-identical arrays, whatever the dask chunking of the input.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ProcessParameterInvalid
from ..io import atomic_path
from .cube_source import Cutter, prepare_source, scan, source_info
from .sampling import DEFAULT_SIZE, KINDS, SPLITS, check_options, invalid, select

__all__ = [
    "ATTR",
    "DEFAULT_SIZE",
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "SPLITS",
    "X_DIMS",
    "make_training_cube",
    "open_training_cube",
    "training_cube_provenance",
    "training_cube_sha256",
]

#: Name of the attribute holding the JSON provenance.
ATTR = "deepfeatures_training_cube"
FORMAT = "deepfeatures-training-cube"
FORMAT_VERSION = "1"
X_DIMS = ("sample", "t", "channel", "row", "col")
_SAMPLE_VARS = ("t0", "y0", "x0", "block")
CLEAR_RULE = "a pixel-date is clear when at least one channel is finite"
CONTENT_SHA256_METHOD = (
    "sha256 of x (float32 LE, C order), day (float64 LE), split (newline-joined UTF-8), "
    "t0, y0, x0, block (int64 LE) and channel (newline-joined UTF-8), in that order"
)
#: Target size of one zarr chunk of ``x``.
CHUNK_BYTES = 16 * 2**20


# --------------------------------------------------------------------------- hashing


def _content_digest(
    x_batches: Iterator[np.ndarray], variables: Mapping[str, np.ndarray], channels: Sequence[str]
) -> str:
    h = hashlib.sha256()
    for batch in x_batches:
        h.update(np.ascontiguousarray(batch, dtype="<f4"))
    h.update(np.ascontiguousarray(variables["day"], dtype="<f8"))
    h.update("\n".join(str(s) for s in variables["split"]).encode())
    for name in _SAMPLE_VARS:
        h.update(np.ascontiguousarray(variables[name], dtype="<i8"))
    h.update("\n".join(channels).encode())
    return h.hexdigest()


def training_cube_sha256(ds: xr.Dataset) -> str:
    """sha256 of a training cube's content (``x``, ``day``, ``split``, origins, channels).

    Reads ``x`` chunk by chunk. Equals ``content_sha256`` in the provenance of an intact cube.
    """
    x = ds["x"].variable
    step = x.chunks[0][0] if x.chunks else max(1, ds.sizes["sample"])
    n = ds.sizes["sample"]
    batches = (np.asarray(x[i : i + step].values) for i in range(0, n, step))
    variables = {name: np.asarray(ds[name].values) for name in ("day", "split", *_SAMPLE_VARS)}
    channels = [str(c) for c in ds["channel"].values.tolist()]
    return _content_digest(batches, variables, channels)


# --------------------------------------------------------------------------- writing


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("openeo-deepfeatures", "numpy", "xarray", "dask", "zarr"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def make_training_cube(
    si_cube: xr.DataArray | xr.Dataset | str | os.PathLike,
    path: str | os.PathLike,
    *,
    kind: str = "tile",
    size: Sequence[int] | None = None,
    n_samples: int = 512,
    seed: int = 0,
    min_clear_fraction: float = 0.5,
    max_gap_days: float | None = None,
    split: Sequence[float] = (0.7, 0.15, 0.15),
    block: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    channels: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Sample tiles or patches from an SI cube into a zarr training cube (see module docs).

    Parameters
    ----------
    si_cube
        Spectral-index cube ``(t, bands, y, x)``, numpy or dask, or the path of one (zarr or
        netCDF). Lazy cubes are read in bounded pieces (cubes under ``IN_MEMORY_BYTES`` at once).
    path
        Output ``.zarr`` (v3), written atomically.
    kind
        ``"tile"`` (dense encoders) or ``"patch"`` (DeepFeatures layout: centred, odd sizes).
    size
        ``(T, H, W)``: acquisitions and pixels per sample; default ``DEFAULT_SIZE[kind]``.
    n_samples
        Number of samples, divided among the splits by ``split`` (largest remainder).
    seed
        Seed of the block permutation and of the draws.
    min_clear_fraction
        Least fraction of clear pixel-dates in a sample.
    max_gap_days
        Largest allowed time between consecutive acquisitions of a sample (None: no limit).
    split
        Fractions of train / validation / test (sum 1); a fraction may be 0.
    block
        Split blocks ``(H, W)`` in pixels, or ``(T, H, W)`` to split time too (T in
        acquisitions); at least the sample size. Default ``(2H, 2W)``.
    stride
        Step ``(t, y, x)`` between candidate sample origins; default ``(1, 1, 1)``.
    channels
        Channels to keep, in order (default: every band of the cube).
    provenance
        Extra JSON-serialisable facts about the source, recorded under ``source``.
    overwrite
        Replace an existing ``path``.

    Returns
    -------
    pathlib.Path
        ``path``; open it with :func:`open_training_cube`.

    Raises
    ------
    ProcessParameterInvalid
        An impossible setting; the message names the parameter.
    NoDataAvailable
        Too few valid samples; the message says how many candidates each rule removed.
    """
    opts = check_options(
        kind, size, n_samples, seed, min_clear_fraction, max_gap_days, split, block, stride
    )
    target = Path(path)
    if target.exists() and not overwrite:
        raise invalid("path", f"{str(target)!r} exists; choose another path or overwrite.")
    if provenance is not None and not isinstance(provenance, Mapping):
        raise invalid("provenance", f"expected a mapping, got {type(provenance).__name__}.")
    source = prepare_source(si_cube, channels)
    if source.path is not None and Path(source.path) == target.resolve():
        raise invalid("path", "the output would replace the input cube.")
    clear, source_sha256 = scan(source)
    selection = select(source, clear, opts)

    T, H, W = opts.size
    n = selection.t0.size
    nc = len(source.channels)
    day = source.day[selection.t0[:, None] + np.arange(T)[None, :]]
    variables: dict[str, np.ndarray] = {
        "day": day,
        "split": np.asarray([SPLITS[i] for i in selection.split], dtype=object),
        "t0": selection.t0,
        "y0": selection.y0,
        "x0": selection.x0,
        "block": selection.block,
    }
    chunk = max(1, min(n, CHUNK_BYTES // (T * nc * H * W * 4)))
    info: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": opts.kind,
        "size": {"t": T, "y": H, "x": W},
        "seed": opts.seed,
        "n_samples": n,
        "channels": source.channels,
        "source": {**source_info(source, source_sha256), **dict(provenance or {})},
        "rules": {
            "clear": CLEAR_RULE,
            "min_clear_fraction": opts.min_clear_fraction,
            "max_gap_days": opts.max_gap_days,
            "target_clear": opts.kind == "patch",
        },
        "split": {
            "fractions": dict(zip(SPLITS, opts.split, strict=True)),
            "block": {"t": opts.block[0], "y": opts.block[1], "x": opts.block[2]},
            "block_grid": selection.block_grid,
            "blocks": selection.blocks,
        },
        "stride": {"t": opts.stride[0], "y": opts.stride[1], "x": opts.stride[2]},
        "counts": selection.counts,
        "content_sha256": None,
        "content_sha256_method": CONTENT_SHA256_METHOD,
        "versions": _versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise invalid("provenance", f"not JSON-serialisable: {exc}") from None

    import dask.array as da
    import zarr

    placeholder = da.zeros((n, T, nc, H, W), dtype=np.float32, chunks=(chunk, T, nc, H, W))
    ds = xr.Dataset(
        {
            "x": (X_DIMS, placeholder),
            "day": (("sample", "t"), day),
            **{name: (("sample",), variables[name]) for name in ("split", *_SAMPLE_VARS)},
        },
        coords={
            "sample": np.arange(n, dtype=np.int64),
            "channel": np.asarray(source.channels, dtype=object),
        },
    )
    ds["x"].attrs = {"long_name": "sample values, NaN where missing", "units": "1"}
    # not CF "days since ...": readers would decode it to datetime64 instead of float64 days
    ds["day"].attrs = {"long_name": "acquisition date, days since 1970-01-01", "units": "d"}
    cut = Cutter(source, opts)

    with atomic_path(target, overwrite=overwrite) as tmp:
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, compute=False)
        group = zarr.open_group(tmp, mode="r+", zarr_format=3)
        x_store = group["x"]

        def batches() -> Iterator[np.ndarray]:
            for a in range(0, n, chunk):
                b = min(n, a + chunk)
                values = np.stack(
                    [
                        cut(int(t0), int(y0), int(x0))
                        for t0, y0, x0 in zip(
                            selection.t0[a:b], selection.y0[a:b], selection.x0[a:b], strict=True
                        )
                    ]
                )
                x_store[a:b] = values
                yield values

        info["content_sha256"] = _content_digest(batches(), variables, source.channels)
        group.attrs[ATTR] = json.dumps(info, allow_nan=False)
    return target


# --------------------------------------------------------------------------- reading


def _not_a_training_cube(path: Any, reason: str) -> ProcessParameterInvalid:
    return invalid("path", f"{str(path)!r} is not a training cube: {reason}", "open_training_cube")


def training_cube_provenance(ds: xr.Dataset) -> dict[str, Any]:
    """The provenance of a training cube as a dict (from its ``deepfeatures_training_cube`` attr)."""
    text = ds.attrs.get(ATTR)
    if not isinstance(text, str):
        raise _not_a_training_cube(
            ds.encoding.get("source", "<dataset>"), f"it has no '{ATTR}' attribute."
        )
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _not_a_training_cube(
            ds.encoding.get("source", "<dataset>"), f"'{ATTR}' is not JSON ({exc})."
        ) from None
    if not isinstance(info, dict):
        raise _not_a_training_cube(
            ds.encoding.get("source", "<dataset>"), f"'{ATTR}' is not an object."
        )
    return info


def open_training_cube(path: str | os.PathLike, *, verify: bool = False) -> xr.Dataset:
    """Open a training cube lazily (dask) and check its format.

    ``verify=True`` also recomputes the content sha256 (reads all of ``x``) and refuses a cube
    whose values differ from what was written.
    """
    path = Path(path)
    if not path.is_dir():
        raise _not_a_training_cube(path, "no such zarr store (directory).")
    try:
        ds = xr.open_zarr(path, consolidated=False)
    except (OSError, ValueError, KeyError) as exc:
        raise _not_a_training_cube(path, f"cannot open it as zarr ({exc}).") from None
    ds.encoding.setdefault("source", str(path))
    info = training_cube_provenance(ds)
    if info.get("format") != FORMAT or info.get("format_version") != FORMAT_VERSION:
        raise _not_a_training_cube(
            path,
            f"format {info.get('format')!r} version {info.get('format_version')!r}, expected "
            f"{FORMAT!r} version {FORMAT_VERSION!r}.",
        )
    expected: dict[str, tuple[tuple[str, ...], Callable[[np.dtype], bool]]] = {
        "x": (X_DIMS, lambda d: d == np.float32),
        "day": (("sample", "t"), lambda d: d == np.float64),
        "split": (("sample",), lambda d: d.kind in "OUT"),
        **{v: (("sample",), lambda d: d == np.int64) for v in _SAMPLE_VARS},
        "channel": (("channel",), lambda d: d.kind in "OUT"),
    }
    for name, (dims, dtype_ok) in expected.items():
        if name not in ds.variables:
            raise _not_a_training_cube(path, f"variable {name!r} is missing.")
        var = ds.variables[name]
        if var.dims != dims or not dtype_ok(var.dtype):
            raise _not_a_training_cube(
                path, f"{name!r} has dims {var.dims} and dtype {var.dtype}, expected dims {dims}."
            )
    size = info.get("size", {})
    shape = (ds.sizes["t"], ds.sizes["row"], ds.sizes["col"])
    if (size.get("t"), size.get("y"), size.get("x")) != shape:
        raise _not_a_training_cube(path, f"x has (t, row, col) {shape}, provenance says {size}.")
    channels = [str(c) for c in ds["channel"].values.tolist()]
    if channels != info.get("channels") or ds.sizes["sample"] != info.get("n_samples"):
        raise _not_a_training_cube(path, "channels or sample count differ from the provenance.")
    labels = {str(s) for s in ds["split"].values.tolist()}
    if not labels <= set(SPLITS):
        raise _not_a_training_cube(path, f"split labels {sorted(labels - set(SPLITS))} unknown.")
    if verify:
        actual = training_cube_sha256(ds)
        if actual != info.get("content_sha256"):
            raise _not_a_training_cube(
                path,
                f"its content sha256 {actual} differs from the recorded "
                f"{info.get('content_sha256')} (modified or truncated).",
            )
    return ds
