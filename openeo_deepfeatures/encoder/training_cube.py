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

import argparse
import datetime
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import (
    BandMissing,
    DimensionNotAvailable,
    NoDataAvailable,
    ProcessParameterInvalid,
)
from ..io import atomic_path, open_cube
from ..sentinel2 import BAND_BY_LABEL, canonical_cube

__all__ = [
    "ATTR",
    "DEFAULT_SIZE",
    "FORMAT",
    "FORMAT_VERSION",
    "KINDS",
    "SPLITS",
    "X_DIMS",
    "add_cli",
    "make_training_cube",
    "open_training_cube",
    "training_cube_provenance",
    "training_cube_sha256",
]

PROCESS = "make_training_cube"
#: Name of the attribute holding the JSON provenance.
ATTR = "deepfeatures_training_cube"
FORMAT = "deepfeatures-training-cube"
FORMAT_VERSION = "1"
SPLITS = ("train", "validation", "test")
#: Default sample size (T, H, W) per kind.
DEFAULT_SIZE = {"tile": (16, 32, 32), "patch": (11, 15, 15)}
KINDS = tuple(DEFAULT_SIZE)
X_DIMS = ("sample", "t", "channel", "row", "col")
_SAMPLE_VARS = ("t0", "y0", "x0", "block")
CLEAR_RULE = "a pixel-date is clear when at least one channel is finite"
SOURCE_SHA256_METHOD = (
    "sha256 of the concatenated sha256 digests of every (date, channel) slice, each the "
    "float32 little-endian bytes of its (y, x) values in C order, in (t, channel) order"
)
CONTENT_SHA256_METHOD = (
    "sha256 of x (float32 LE, C order), day (float64 LE), split (newline-joined UTF-8), "
    "t0, y0, x0, block (int64 LE) and channel (newline-joined UTF-8), in that order"
)

#: A lazy source up to this size (as float32) is computed once into memory.
IN_MEMORY_BYTES = 256 * 2**20
#: Most bytes of a lazy source computed at once while scanning or cutting samples.
REGION_BYTES = 128 * 2**20
#: Target size of one zarr chunk of ``x``.
CHUNK_BYTES = 16 * 2**20


def _invalid(parameter: str, reason: str, process: str = PROCESS) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=process, parameter=parameter, reason=reason)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _positive_ints(value: Any, parameter: str, lengths: tuple[int, ...]) -> tuple[int, ...]:
    items = tuple(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if items is None or len(items) not in lengths or not all(_is_int(v) and v >= 1 for v in items):
        want = " or ".join(str(n) for n in lengths)
        raise _invalid(parameter, f"expected {want} integers >= 1, got {value!r}.")
    return tuple(int(v) for v in items)


# --------------------------------------------------------------------------- options


def _block_text(block: tuple[int | None, int, int]) -> str:
    t, h, w = block
    return f"{h}x{w} px" if t is None else f"{t} dates x {h}x{w} px"


@dataclass(frozen=True)
class _Options:
    kind: str
    size: tuple[int, int, int]
    n_samples: int
    seed: int
    min_clear_fraction: float
    max_gap_days: float | None
    split: tuple[float, float, float]
    block: tuple[int | None, int, int]
    stride: tuple[int, int, int]


def _check_options(
    kind: Any,
    size: Any,
    n_samples: Any,
    seed: Any,
    min_clear_fraction: Any,
    max_gap_days: Any,
    split: Any,
    block: Any,
    stride: Any,
) -> _Options:
    if kind not in KINDS:
        raise _invalid("kind", f"expected one of {list(KINDS)}, got {kind!r}.")
    size = DEFAULT_SIZE[kind] if size is None else _positive_ints(size, "size", (3,))
    if kind == "patch" and any(n % 2 == 0 for n in size):
        raise _invalid(
            "size",
            f"patches are centred on their target pixel and date, so T, H, W must be odd; "
            f"got {size}.",
        )
    if not _is_int(n_samples) or n_samples < 1:
        raise _invalid("n_samples", f"expected an integer >= 1, got {n_samples!r}.")
    if not _is_int(seed) or seed < 0:
        raise _invalid("seed", f"expected an integer >= 0, got {seed!r}.")
    if not _is_number(min_clear_fraction) or not 0 <= min_clear_fraction <= 1:
        raise _invalid(
            "min_clear_fraction", f"expected a number in [0, 1], got {min_clear_fraction!r}."
        )
    if max_gap_days is not None and (
        not _is_number(max_gap_days) or not math.isfinite(max_gap_days) or max_gap_days <= 0
    ):
        raise _invalid(
            "max_gap_days", f"expected a number of days > 0 (or None), got {max_gap_days!r}."
        )
    fractions = tuple(split) if isinstance(split, (list, tuple, np.ndarray)) else None
    if (
        fractions is None
        or len(fractions) != len(SPLITS)
        or not all(_is_number(f) and math.isfinite(f) and f >= 0 for f in fractions)
    ):
        raise _invalid(
            "split",
            f"expected three fractions >= 0 for {'/'.join(SPLITS)}, got {split!r}.",
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise _invalid(
            "split", f"the fractions {list(fractions)} sum to {sum(fractions):g}, not 1."
        )
    T, H, W = size
    if block is None:
        block3: tuple[int | None, int, int] = (None, 2 * H, 2 * W)
    else:
        given = _positive_ints(block, "block", (2, 3))
        block3 = (None, *given) if len(given) == 2 else given  # type: ignore[assignment]
    bt, bh, bw = block3
    if bh < H or bw < W or (bt is not None and bt < T):
        raise _invalid(
            "block",
            f"a sample must fit in one split block; blocks of {_block_text(block3)} are "
            f"smaller than the sample size {size} (T, H, W).",
        )
    stride = (1, 1, 1) if stride is None else _positive_ints(stride, "stride", (3,))
    return _Options(
        kind=kind,
        size=size,  # type: ignore[arg-type]
        n_samples=int(n_samples),
        seed=int(seed),
        min_clear_fraction=float(min_clear_fraction),
        max_gap_days=None if max_gap_days is None else float(max_gap_days),
        split=tuple(float(f) for f in fractions),  # type: ignore[arg-type]
        block=block3,
        stride=stride,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- source


@dataclass
class _Source:
    data: Any  # numpy or dask array (t, channel, y, x), float32
    day: np.ndarray  # float64 days since 1970-01-01
    channels: list[str]
    path: str | None
    cube: xr.DataArray

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def lazy(self) -> bool:
        return not isinstance(self.data, np.ndarray)


def _prepare_source(si_cube: Any, channels: Sequence[str] | None) -> _Source:
    path = None
    if isinstance(si_cube, (str, os.PathLike)):
        path = str(Path(si_cube).resolve())
        si_cube = open_cube(si_cube)
    elif not isinstance(si_cube, (xr.DataArray, xr.Dataset)):
        raise _invalid(
            "si_cube",
            f"expected an xarray.DataArray (t, bands, y, x) or a path to a zarr/netCDF cube, "
            f"got {type(si_cube).__name__}.",
        )
    cube = canonical_cube(si_cube, PROCESS)
    missing = [d for d in ("t", "y", "x") if d not in cube.dims]
    if missing:
        raise DimensionNotAvailable(
            reason=f"process '{PROCESS}' needs dimensions (t, bands, y, x); the cube has "
            f"{tuple(cube.dims)}, without {missing}."
        )
    extra = [d for d in cube.dims if d not in ("t", "bands", "y", "x")]
    if extra:
        raise _invalid(
            "si_cube",
            f"expected dimensions (t, bands, y, x), the cube also has {extra}; "
            "select or reduce them first.",
        )
    cube = cube.transpose("t", "bands", "y", "x")
    if np.issubdtype(cube.dtype, np.integer) or cube.dtype == bool:
        raise _invalid(
            "si_cube",
            f"integer data ({cube.dtype}) looks like Sentinel-2 digital numbers, not spectral "
            "indices; compute them first with openeo_deepfeatures.preprocess_s2 and "
            "compute_indices (the training-cube command does so for a raw L2A cube).",
        )
    if not np.issubdtype(cube.dtype, np.floating):
        raise _invalid("si_cube", f"unsupported dtype {cube.dtype}.")
    labels = [str(b) for b in cube["bands"].values.tolist()]
    if channels is not None:
        if isinstance(channels, str):
            channels = [channels]
        channels = list(channels)
        if not channels or not all(isinstance(c, str) for c in channels):
            raise _invalid("channels", f"expected a list of channel names, got {channels!r}.")
        if len(set(channels)) != len(channels):
            raise _invalid("channels", f"duplicate channel names in {channels}.")
        absent = [c for c in channels if c not in labels]
        if absent:
            raise BandMissing(
                process=PROCESS,
                reason=f"channels {absent} are not in the cube; it has {labels}.",
            )
        cube = cube.sel(bands=channels)
        labels = channels
    if "t" not in cube.coords or not np.issubdtype(cube["t"].dtype, np.datetime64):
        raise _invalid(
            "si_cube", "the t dimension needs a coordinate of acquisition dates (datetime64)."
        )
    ns = cube["t"].values.astype("datetime64[ns]").astype(np.int64)
    day = ns / 86_400e9
    if np.any(np.diff(day) <= 0):
        raise _invalid("si_cube", "the acquisition dates must be strictly increasing.")
    cube = cube.astype(np.float32, copy=False)
    data = cube.data
    if not isinstance(data, np.ndarray) and int(np.prod(data.shape)) * 4 <= IN_MEMORY_BYTES:
        data = np.asarray(data.compute())  # small: compute the pipeline once, not twice
    return _Source(
        data=data,
        day=np.asarray(day, dtype=np.float64),
        channels=labels,
        path=path,
        cube=cube,
    )


def _slice_digests(block: np.ndarray) -> np.ndarray:
    """sha256 of every (date, channel) slice of a (t, c, y, x) block -> uint8 (t, c, 32)."""
    out = np.empty((*block.shape[:2], 32), dtype=np.uint8)
    for i in range(block.shape[0]):
        for j in range(block.shape[1]):
            values = np.ascontiguousarray(block[i, j], dtype="<f4")
            out[i, j] = np.frombuffer(hashlib.sha256(values).digest(), dtype=np.uint8)
    return out


def _scan(source: _Source) -> tuple[np.ndarray, str]:
    """One pass over the source: the clear mask (t, y, x) and the sha256 of its values."""
    data = source.data
    if not source.lazy:
        clear = np.isfinite(data).any(axis=1)
        digests = _slice_digests(data)
    else:
        import dask.array as da

        nt, nc, ny, nx = source.shape
        per_block = max(1, REGION_BYTES // (ny * nx * 4))  # whole (y, x) slices per block
        c_chunk = min(nc, per_block)
        t_chunk = max(1, min(nt, per_block // c_chunk))
        slices = data.rechunk((t_chunk, c_chunk, -1, -1))
        clear_lazy = da.isfinite(slices).any(axis=1)
        digests_lazy = slices.map_blocks(
            _slice_digests,
            drop_axis=3,
            chunks=(slices.chunks[0], slices.chunks[1], (32,)),
            dtype=np.uint8,
        )
        clear, digests = da.compute(clear_lazy, digests_lazy)
    return np.asarray(clear, dtype=bool), hashlib.sha256(digests.tobytes()).hexdigest()


# --------------------------------------------------------------------------- selection


def _allocate(total: int, fractions: Sequence[float]) -> list[int]:
    """Split ``total`` by ``fractions`` (largest remainder), at least 1 for each positive one."""
    raw = [total * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0:
            donor = max(range(len(counts)), key=lambda k: (counts[k], -k))
            counts[donor] -= 1
            counts[i] += 1
    return counts


@dataclass
class _Selection:
    t0: np.ndarray
    y0: np.ndarray
    x0: np.ndarray
    block: np.ndarray
    split: np.ndarray  # index into SPLITS
    counts: dict[str, Any]
    blocks: dict[str, list[int]]
    block_grid: dict[str, int]


def _select(source: _Source, clear: np.ndarray, opts: _Options) -> _Selection:
    nt, _, ny, nx = source.shape
    T, H, W = opts.size
    for name, n, have in (("dates", T, nt), ("rows", H, ny), ("columns", W, nx)):
        if n > have:
            raise _invalid(
                "size",
                f"the sample size {opts.size} (T, H, W) needs {n} {name}; the cube has {have}.",
            )
    bt, bh, bw = opts.block
    st, sy, sx = opts.stride
    ot = np.arange(0, nt - T + 1, st)
    oy = np.arange(0, ny - H + 1, sy)
    ox = np.arange(0, nx - W + 1, sx)
    grid = (ot.size, oy.size, ox.size)

    fit_t = np.ones(ot.size, bool) if bt is None else (ot // bt) == ((ot + T - 1) // bt)
    fit_y = (oy // bh) == ((oy + H - 1) // bh)
    fit_x = (ox // bw) == ((ox + W - 1) // bw)
    fits = fit_t[:, None, None] & fit_y[None, :, None] & fit_x[None, None, :]
    n_bt = 1 if bt is None else -(-nt // bt)
    n_by, n_bx = -(-ny // bh), -(-nx // bw)
    tb = np.zeros(ot.size, np.int64) if bt is None else ot // bt
    block_id = (tb[:, None, None] * n_by + (oy // bh)[None, :, None]) * n_bx + (ox // bw)[
        None, None, :
    ]

    removed: dict[str, int] = {"straddle_block": int((~fits).sum())}
    keep = fits.copy()
    if opts.max_gap_days is not None and T > 1:
        gaps = np.lib.stride_tricks.sliding_window_view(np.diff(source.day), T - 1)[ot]
        gap_ok = (gaps.max(axis=1) <= opts.max_gap_days)[:, None, None]
        removed["max_gap_days"] = int((keep & ~gap_ok).sum())
        keep &= gap_ok
    if opts.min_clear_fraction > 0:
        table = np.zeros((nt + 1, ny + 1, nx + 1), np.int64)
        table[1:, 1:, 1:] = clear.cumsum(0, dtype=np.int64).cumsum(1).cumsum(2)
        a, b, c = np.ix_(ot, oy, ox)
        n_clear = (
            table[a + T, b + H, c + W]
            - table[a, b + H, c + W]
            - table[a + T, b, c + W]
            - table[a + T, b + H, c]
            + table[a, b, c + W]
            + table[a, b + H, c]
            + table[a + T, b, c]
            - table[a, b, c]
        )
        clear_ok = n_clear >= opts.min_clear_fraction * (T * H * W) - 1e-9
        removed["min_clear_fraction"] = int((keep & ~clear_ok).sum())
        keep &= clear_ok
    if opts.kind == "patch":
        target_ok = clear[np.ix_(ot + T // 2, oy + H // 2, ox + W // 2)]
        removed["target_clear"] = int((keep & ~target_ok).sum())
        keep &= target_ok

    positive = [i for i, f in enumerate(opts.split) if f > 0]
    fitting_blocks = np.unique(block_id[fits])
    valid_blocks = np.unique(block_id[keep])
    counts: dict[str, Any] = {
        "candidates": int(fits.size),
        "removed": removed,
        "valid": int(keep.sum()),
    }

    def shortage(what: str) -> NoDataAvailable:
        parts = [f"{removed['straddle_block']} straddle split blocks of {_block_text(opts.block)}"]
        if "max_gap_days" in removed:
            parts.append(
                f"{removed['max_gap_days']} span a gap > max_gap_days={opts.max_gap_days:g}"
            )
        if "min_clear_fraction" in removed:
            parts.append(
                f"{removed['min_clear_fraction']} are less than "
                f"min_clear_fraction={opts.min_clear_fraction:g} clear"
            )
        if "target_clear" in removed:
            parts.append(f"{removed['target_clear']} have a missing target (centre) pixel")
        return NoDataAvailable(
            reason=(
                f"{what}. Of {fits.size} candidate {opts.kind}s of {T}x{H}x{W} (t, y, x), "
                f"{', '.join(parts)}; {int(keep.sum())} valid remain in {valid_blocks.size} "
                "blocks. Lower min_clear_fraction, raise max_gap_days, ask for fewer samples "
                "or use smaller blocks."
            )
        )

    if fitting_blocks.size < len(positive):
        raise _invalid(
            "block",
            f"the cube ({nt} dates, {ny}x{nx} px) holds {fitting_blocks.size} split block(s) "
            f"of {_block_text(opts.block)} that fit a {opts.size} sample; the {len(positive)} splits "
            f"need at least {len(positive)}. Use smaller blocks (at least the sample size), or "
            "split time too with block=(T, H, W).",
        )
    if len(positive) > opts.n_samples:
        raise _invalid(
            "n_samples",
            f"{opts.n_samples} sample(s) cannot fill {len(positive)} splits {opts.split}.",
        )
    if valid_blocks.size < len(positive):
        raise shortage(
            f"valid samples lie in {valid_blocks.size} split block(s), {len(positive)} splits "
            "need at least one each"
        )

    rng = np.random.default_rng(opts.seed)
    permuted = rng.permutation(valid_blocks)
    per_split_blocks = _allocate(valid_blocks.size, opts.split)
    per_split_samples = _allocate(opts.n_samples, opts.split)
    flat_keep = keep.ravel()
    flat_block = block_id.ravel()
    chosen: list[np.ndarray] = []
    split_of: list[np.ndarray] = []
    blocks: dict[str, list[int]] = {}
    valid_per_split: dict[str, int] = {}
    start = 0
    for i, name in enumerate(SPLITS):
        mine = np.sort(permuted[start : start + per_split_blocks[i]])
        start += per_split_blocks[i]
        blocks[name] = [int(b) for b in mine]
        pool = np.flatnonzero(flat_keep & np.isin(flat_block, mine))
        valid_per_split[name] = int(pool.size)
        need = per_split_samples[i]
        if need > pool.size:
            raise shortage(
                f"split '{name}' has {pool.size} valid candidate(s) in its "
                f"{mine.size} block(s), {need} sample(s) are asked"
            )
        picked = rng.choice(pool, size=need, replace=False) if need else pool[:0]
        # canonical order inside a split: block, then t0, y0, x0 (flat index order)
        picked = picked[np.lexsort((picked, flat_block[picked]))]
        chosen.append(picked)
        split_of.append(np.full(need, i, dtype=np.int64))
    flat = np.concatenate(chosen)
    it, iy, ix = np.unravel_index(flat, grid)
    counts["valid_per_split"] = valid_per_split
    counts["blocks_per_split"] = {name: len(b) for name, b in blocks.items()}
    counts["samples"] = dict(zip(SPLITS, per_split_samples, strict=True))
    return _Selection(
        t0=ot[it].astype(np.int64),
        y0=oy[iy].astype(np.int64),
        x0=ox[ix].astype(np.int64),
        block=flat_block[flat].astype(np.int64),
        split=np.concatenate(split_of),
        counts=counts,
        blocks=blocks,
        block_grid={"t": n_bt, "y": n_by, "x": n_bx},
    )


# --------------------------------------------------------------------------- cutting


class _Cutter:
    """Cut samples from the source; a lazy source is computed one block region at a time."""

    def __init__(self, source: _Source, opts: _Options) -> None:
        self.data = source.data
        self.lazy = source.lazy
        self.nt, self.nc, self.ny, self.nx = source.shape
        self.size = opts.size
        self.block = opts.block
        self.region: tuple[int, int, int, int] | None = None  # t-start, t-end, y-start, x-start
        self.values = np.empty((0, 0, 0, 0), dtype=np.float32)

    def __call__(self, t0: int, y0: int, x0: int) -> np.ndarray:
        T, H, W = self.size
        if not self.lazy:
            window = self.data[t0 : t0 + T, :, y0 : y0 + H, x0 : x0 + W]
        else:
            ts, ys, xs = self._load(t0, y0, x0)
            t, y, x = t0 - ts, y0 - ys, x0 - xs
            window = self.values[t : t + T, :, y : y + H, x : x + W]
        return np.where(np.isfinite(window), window, np.float32(np.nan)).astype(np.float32)

    def _load(self, t0: int, y0: int, x0: int) -> tuple[int, int, int]:
        T = self.size[0]
        bt, bh, bw = self.block
        ys, xs = (y0 // bh) * bh, (x0 // bw) * bw
        ye, xe = min(ys + bh, self.ny), min(xs + bw, self.nx)
        if self.region is not None:
            r_ts, r_te, r_ys, r_xs = self.region
            if (r_ys, r_xs) == (ys, xs) and r_ts <= t0 and t0 + T <= r_te:
                return r_ts, r_ys, r_xs
        t_limit = self.nt if bt is None else min(self.nt, (t0 // bt + 1) * bt)
        slice_bytes = self.nc * (ye - ys) * (xe - xs) * 4
        te = min(t_limit, t0 + max(T, REGION_BYTES // slice_bytes))
        self.values = np.asarray(self.data[t0:te, :, ys:ye, xs:xe].compute())
        self.region = (t0, te, ys, xs)
        return t0, ys, xs


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


def _source_info(source: _Source, sha256: str) -> dict[str, Any]:
    cube = source.cube
    nt, nc, ny, nx = source.shape
    crs = None
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        crs = cube.rio.crs
    except ImportError:  # pragma: no cover - rioxarray is a core dependency
        pass
    dates = cube["t"].values

    def axis(name: str) -> dict[str, Any] | None:
        if name not in cube.coords or not np.issubdtype(cube[name].dtype, np.number):
            return None
        values = cube[name].values
        return {"first": float(values[0]), "last": float(values[-1]), "size": int(values.size)}

    return {
        "path": source.path,
        "sha256": sha256,
        "sha256_method": SOURCE_SHA256_METHOD,
        "shape": {"t": nt, "bands": nc, "y": ny, "x": nx},
        "channels": source.channels,
        "dates": [
            str(np.datetime_as_string(dates[0], unit="s")),
            str(np.datetime_as_string(dates[-1], unit="s")),
        ],
        "crs": None if crs is None else crs.to_string(),
        "y": axis("y"),
        "x": axis("x"),
    }


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
    opts = _check_options(
        kind, size, n_samples, seed, min_clear_fraction, max_gap_days, split, block, stride
    )
    target = Path(path)
    if target.exists() and not overwrite:
        raise _invalid("path", f"{str(target)!r} exists; choose another path or overwrite.")
    if provenance is not None and not isinstance(provenance, Mapping):
        raise _invalid("provenance", f"expected a mapping, got {type(provenance).__name__}.")
    source = _prepare_source(si_cube, channels)
    if source.path is not None and Path(source.path) == target.resolve():
        raise _invalid("path", "the output would replace the input cube.")
    clear, source_sha256 = _scan(source)
    selection = _select(source, clear, opts)

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
        "source": {**_source_info(source, source_sha256), **dict(provenance or {})},
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
        raise _invalid("provenance", f"not JSON-serialisable: {exc}") from None

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
    cut = _Cutter(source, opts)

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
    return _invalid("path", f"{str(path)!r} is not a training cube: {reason}", "open_training_cube")


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


# --------------------------------------------------------------------------- CLI


def _number_list(kind: type, lengths: tuple[int, ...]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) not in lengths:
            want = " or ".join(str(n) for n in lengths)
            raise argparse.ArgumentTypeError(
                f"expected {want} comma-separated {kind.__name__}s, got {text!r}"
            )
        return values

    return parse


def _cmd_training_cube(args: argparse.Namespace) -> int:
    import sys

    from ..indices import compute_indices
    from ..sentinel2 import preprocess_s2

    process = "deepfeatures training-cube"
    cube = canonical_cube(open_cube(args.input, variable=args.variable), process)
    labels = [str(b) for b in cube["bands"].values.tolist()]
    channels = None
    steps: list[str] = []
    if "SCL" in labels or np.issubdtype(cube.dtype, np.integer):
        cube = compute_indices(preprocess_s2(cube, mask="SCL" in labels), args.indices)
        steps = ["preprocess_s2", f"compute_indices({args.indices or 'all computable'})"]
    elif args.indices and not set(args.indices) <= set(labels):
        if not all(label in BAND_BY_LABEL for label in labels):
            raise BandMissing(
                process=process,
                reason=f"--indices {sorted(set(args.indices) - set(labels))} are not channels "
                f"of {args.input}, which has {labels}.",
            )
        cube = compute_indices(cube, args.indices)  # a reflectance cube
        steps = [f"compute_indices({args.indices})"]
    else:
        channels = args.indices
    out = make_training_cube(
        cube,
        args.output,
        kind=args.kind,
        size=args.size,
        n_samples=args.samples,
        seed=args.seed,
        min_clear_fraction=args.min_clear,
        max_gap_days=args.max_gap_days,
        split=args.split,
        block=args.block,
        stride=args.stride,
        channels=channels,
        provenance={"path": str(Path(args.input).resolve()), "steps": steps},
        overwrite=args.overwrite,
    )
    if not args.quiet:
        info = training_cube_provenance(open_training_cube(out))
        counts = info["counts"]
        per_split = ", ".join(f"{k} {v}" for k, v in counts["samples"].items())
        removed = ", ".join(f"{k} {v}" for k, v in counts["removed"].items())
        print(
            f"wrote {out}: {info['n_samples']} {info['kind']}s ({per_split}) of "
            f"{tuple(info['size'].values())} (t, y, x) x {len(info['channels'])} channels; "
            f"{counts['candidates']} candidates, removed: {removed}",
            file=sys.stderr,
        )
    return 0


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``training-cube`` command to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "training-cube",
        help="sample tiles or patches from an SI cube into a zarr training cube",
        description=(
            "Sample training tiles or DeepFeatures patches from a spectral-index cube, with "
            "validity rules and a block-wise train/validation/test split. INPUT is an SI cube "
            "or a raw Sentinel-2 L2A cube (DN with SCL: preprocessed and --indices computed)."
        ),
    )
    p.add_argument("input", help="SI cube or raw S2 L2A cube (.zarr, .nc)")
    p.add_argument("-o", "--output", required=True, help="output training cube (.zarr)")
    p.add_argument("--kind", choices=KINDS, default="tile", help="tile (dense) or patch")
    p.add_argument(
        "--size",
        type=_number_list(int, (3,)),
        metavar="T,H,W",
        help="dates and pixels per sample (tile 16,32,32; patch 11,15,15)",
    )
    p.add_argument("--samples", type=int, default=512, help="number of samples (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--min-clear", type=float, default=0.5, help="least clear fraction per sample (0.5)"
    )
    p.add_argument("--max-gap-days", type=float, help="largest gap between consecutive dates")
    p.add_argument(
        "--split",
        type=_number_list(float, (3,)),
        default=(0.7, 0.15, 0.15),
        metavar="TRAIN,VAL,TEST",
        help="split fractions (0.7,0.15,0.15)",
    )
    p.add_argument(
        "--block",
        type=_number_list(int, (2, 3)),
        metavar="[T,]H,W",
        help="split blocks in pixels (and dates); default twice the sample size",
    )
    p.add_argument(
        "--stride", type=_number_list(int, (3,)), metavar="T,Y,X", help="candidate step (1,1,1)"
    )
    p.add_argument(
        "--indices",
        nargs="+",
        help="indices to compute from a raw cube, or channels to keep from an SI cube",
    )
    p.add_argument("--variable", help="variable holding the cube (netCDF/zarr)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_training_cube)
    return p
