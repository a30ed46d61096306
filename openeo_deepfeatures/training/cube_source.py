"""The spectral-index cube a training cube is cut from: checked, hashed in one pass, and read
in bounded regions when it is lazy (dask)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import BandMissing, DimensionNotAvailable
from ..io import open_cube
from ..sentinel2 import canonical_cube
from .sampling import PROCESS, Options, invalid

SOURCE_SHA256_METHOD = (
    "sha256 of the concatenated sha256 digests of every (date, channel) slice, each the "
    "float32 little-endian bytes of its (y, x) values in C order, in (t, channel) order"
)
#: A lazy source up to this size (as float32) is computed once into memory.
IN_MEMORY_BYTES = 256 * 2**20
#: Most bytes of a lazy source computed at once while scanning or cutting samples.
REGION_BYTES = 128 * 2**20


@dataclass
class Source:
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


def prepare_source(si_cube: Any, channels: Sequence[str] | None) -> Source:
    path = None
    if isinstance(si_cube, (str, os.PathLike)):
        path = str(Path(si_cube).resolve())
        si_cube = open_cube(si_cube)
    elif not isinstance(si_cube, (xr.DataArray, xr.Dataset)):
        raise invalid(
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
        raise invalid(
            "si_cube",
            f"expected dimensions (t, bands, y, x), the cube also has {extra}; "
            "select or reduce them first.",
        )
    cube = cube.transpose("t", "bands", "y", "x")
    if np.issubdtype(cube.dtype, np.integer) or cube.dtype == bool:
        raise invalid(
            "si_cube",
            f"integer data ({cube.dtype}) looks like Sentinel-2 digital numbers, not spectral "
            "indices; compute them first with openeo_deepfeatures.preprocess_s2 and "
            "compute_indices (the training-cube command does so for a raw L2A cube).",
        )
    if not np.issubdtype(cube.dtype, np.floating):
        raise invalid("si_cube", f"unsupported dtype {cube.dtype}.")
    labels = [str(b) for b in cube["bands"].values.tolist()]
    if channels is not None:
        if isinstance(channels, str):
            channels = [channels]
        channels = list(channels)
        if not channels or not all(isinstance(c, str) for c in channels):
            raise invalid("channels", f"expected a list of channel names, got {channels!r}.")
        if len(set(channels)) != len(channels):
            raise invalid("channels", f"duplicate channel names in {channels}.")
        absent = [c for c in channels if c not in labels]
        if absent:
            raise BandMissing(
                process=PROCESS,
                reason=f"channels {absent} are not in the cube; it has {labels}.",
            )
        cube = cube.sel(bands=channels)
        labels = channels
    if "t" not in cube.coords or not np.issubdtype(cube["t"].dtype, np.datetime64):
        raise invalid(
            "si_cube", "the t dimension needs a coordinate of acquisition dates (datetime64)."
        )
    ns = cube["t"].values.astype("datetime64[ns]").astype(np.int64)
    day = ns / 86_400e9
    if np.any(np.diff(day) <= 0):
        raise invalid("si_cube", "the acquisition dates must be strictly increasing.")
    cube = cube.astype(np.float32, copy=False)
    data = cube.data
    if not isinstance(data, np.ndarray) and int(np.prod(data.shape)) * 4 <= IN_MEMORY_BYTES:
        data = np.asarray(data.compute())  # small: compute the pipeline once, not twice
    return Source(
        data=data,
        day=np.asarray(day, dtype=np.float64),
        channels=labels,
        path=path,
        cube=cube,
    )


def slice_digests(block: np.ndarray) -> np.ndarray:
    """sha256 of every (date, channel) slice of a (t, c, y, x) block -> uint8 (t, c, 32)."""
    out = np.empty((*block.shape[:2], 32), dtype=np.uint8)
    for i in range(block.shape[0]):
        for j in range(block.shape[1]):
            values = np.ascontiguousarray(block[i, j], dtype="<f4")
            out[i, j] = np.frombuffer(hashlib.sha256(values).digest(), dtype=np.uint8)
    return out


def scan(source: Source) -> tuple[np.ndarray, str]:
    """One pass over the source: the clear mask (t, y, x) and the sha256 of its values."""
    data = source.data
    if not source.lazy:
        clear = np.isfinite(data).any(axis=1)
        digests = slice_digests(data)
    else:
        import dask.array as da

        nt, nc, ny, nx = source.shape
        per_block = max(1, REGION_BYTES // (ny * nx * 4))  # whole (y, x) slices per block
        c_chunk = min(nc, per_block)
        t_chunk = max(1, min(nt, per_block // c_chunk))
        slices = data.rechunk((t_chunk, c_chunk, -1, -1))
        clear_lazy = da.isfinite(slices).any(axis=1)
        digests_lazy = slices.map_blocks(
            slice_digests,
            drop_axis=3,
            chunks=(slices.chunks[0], slices.chunks[1], (32,)),
            dtype=np.uint8,
        )
        clear, digests = da.compute(clear_lazy, digests_lazy)
    return np.asarray(clear, dtype=bool), hashlib.sha256(digests.tobytes()).hexdigest()


class Cutter:
    """Cut samples from the source; a lazy source is computed one block region at a time."""

    def __init__(self, source: Source, opts: Options) -> None:
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


def source_info(source: Source, sha256: str) -> dict[str, Any]:
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
