"""Run a callback over windows of a labelled cube, with overlap, and stitch the results.

The engine behind ``apply_neighborhood`` and behind UDF callbacks of ``apply_dimension`` and
``reduce_dimension``. Each window is a labelled ``xarray.DataArray`` with real coordinates
(the overlap beyond the cube's border is no-data, with coordinates continued at the
dimension's step); the callback returns a labelled array; the overlap is cut away and the
cores are stitched into one lazy dask array. Every output cell is computed exactly once.

Dimensions are *windowed* (split into windows, optionally with overlap; they must come back
with the same size) or *whole* (each window holds all of it; the callback may change its
labels, e.g. new band names, or drop it, as a reducer does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..errors import DataCubePropertiesImmutable, OpenEOError

__all__ = ["WindowSpec", "apply_windows", "continued_coords"]


@dataclass(frozen=True)
class WindowSpec:
    """How one dimension is split: window bounds ``[(start, stop), ...]`` and overlap in cells."""

    bounds: tuple[tuple[int, int], ...]
    overlap: int = 0

    @classmethod
    def whole(cls, n: int) -> WindowSpec:
        return cls(((0, n),), 0)

    @classmethod
    def regular(cls, n: int, size: int, overlap: int = 0) -> WindowSpec:
        return cls(tuple((s, min(s + size, n)) for s in range(0, n, size)), overlap)


def continued_coords(values: np.ndarray, before: int, after: int) -> np.ndarray:
    """Coordinates continued ``before``/``after`` the ends at the dimension's step."""
    if before == 0 and after == 0:
        return values
    if len(values) < 2 or not (
        np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.datetime64)
    ):
        raise OpenEOError(f"cannot extend coordinates {values[:3]!r} beyond the cube's border")
    step_lo, step_hi = values[1] - values[0], values[-1] - values[-2]
    lo = values[0] - step_lo * np.arange(before, 0, -1)
    hi = values[-1] + step_hi * np.arange(1, after + 1)
    return np.concatenate([lo, values, hi]).astype(values.dtype, copy=False)


def _padded(cube: xr.DataArray, specs: Mapping[str, WindowSpec]) -> xr.DataArray:
    pads = {d: s.overlap for d, s in specs.items() if s.overlap}
    if not pads:
        return cube
    if not np.issubdtype(cube.dtype, np.floating):
        cube = cube.astype(np.float32 if cube.dtype.itemsize <= 2 else np.float64)
    padded = cube.pad({d: (n, n) for d, n in pads.items()}, mode="constant", constant_values=np.nan)
    return padded.assign_coords(
        {d: continued_coords(cube[d].values, n, n) for d, n in pads.items()}
    )


def apply_windows(
    cube: xr.DataArray,
    func: Callable[[xr.DataArray], Any],
    specs: Mapping[str, WindowSpec],
    *,
    process: str,
    drop: Sequence[str] = (),
    mutable: Sequence[str] = (),
) -> xr.DataArray:
    """Apply ``func`` to every window of ``cube`` and stitch the cores into one cube.

    ``specs`` holds the windowed dimensions; all others are whole. ``drop``: whole dimensions
    the callback removes (a reducer); a size-1 remainder of them is squeezed away.
    ``mutable``: whole dimensions whose labels the callback may change (e.g. new band names);
    every other dimension must come back with its labels.
    """
    specs = {d: s for d, s in specs.items() if d in cube.dims}
    _check_window_bytes(cube, specs, process)
    lazy = cube.chunks is not None
    padded = _padded(cube, specs)
    windowed = list(specs)
    grid = [range(len(specs[d].bounds)) for d in windowed]
    index = list(np.ndindex(*[len(g) for g in grid])) or [()]

    def window(pos: tuple[int, ...]) -> xr.DataArray:
        sel = {}
        for d, i in zip(windowed, pos, strict=True):
            start, stop = specs[d].bounds[i]
            sel[d] = slice(start, stop + 2 * specs[d].overlap)
        return padded.isel(sel)

    def run(win: xr.DataArray) -> xr.DataArray:
        out = func(win)
        if isinstance(out, xr.DataArray):
            pass
        elif isinstance(out, np.ndarray | da.Array) and out.shape == win.shape:
            out = win.copy(data=out)
        else:
            raise DataCubePropertiesImmutable(
                reason=f"the callback of '{process}' must return a data cube, not {type(out).__name__}."
            )
        for d in drop:
            if d in out.dims and out.sizes[d] == 1:
                out = out.squeeze(d, drop=True)
        expected = [d for d in win.dims if d not in drop]
        if sorted(map(str, out.dims)) != sorted(map(str, expected)):
            raise DataCubePropertiesImmutable(
                reason=f"the callback of '{process}' returned dimensions {list(out.dims)}, expected {expected}."
            )
        for d in expected:
            if d in mutable or d in windowed:
                continue
            if out.sizes[d] != win.sizes[d] or (
                d in out.coords and not np.array_equal(out[d].values, win[d].values)
            ):
                raise DataCubePropertiesImmutable(
                    reason=f"the callback of '{process}' changed the labels of dimension '{d}'."
                )
        for d in windowed:
            if out.sizes[d] != win.sizes[d]:
                raise DataCubePropertiesImmutable(
                    reason=f"the callback of '{process}' changed the size of dimension '{d}' "
                    f"from {win.sizes[d]} to {out.sizes[d]}."
                )
        out = out.transpose(*order)
        core = {d: slice(specs[d].overlap, out.sizes[d] - specs[d].overlap) for d in windowed}
        return out.isel(core)

    # The first window fixes the output's dimension order, labels of whole dimensions and dtype.
    first_win = window(index[0])
    order = [d for d in first_win.dims if d not in drop]
    first = run(first_win.compute() if lazy else first_win)
    whole_coords = {d: first[d] for d in order if d not in windowed and d in first.coords}

    def block(pos: tuple[int, ...]) -> np.ndarray:
        out = run(window(pos).compute())
        for d, coord in whole_coords.items():
            if not np.array_equal(out[d].values, coord.values):
                raise DataCubePropertiesImmutable(
                    reason=f"the callback of '{process}' returned labels {list(out[d].values)[:5]} "
                    f"for dimension '{d}' in one window and {list(coord.values)[:5]} in another."
                )
        return np.asarray(out.values, dtype=first.dtype)

    blocks: dict[tuple[int, ...], Any] = {}
    for pos in index:
        shape = tuple(
            _core_len(specs[d], pos[windowed.index(d)]) if d in specs else first.sizes[d]
            for d in order
        )
        if pos == index[0]:
            blocks[pos] = da.from_array(np.asarray(first.values), chunks=shape)
        else:
            blocks[pos] = da.from_delayed(
                dask.delayed(block, pure=True)(pos), shape=shape, dtype=first.dtype
            )

    def nest_ordered(level: int, pos: dict[str, int]) -> Any:
        if level == len(order):
            return blocks[tuple(pos[d] for d in windowed)]
        d = order[level]
        if d in specs:
            return [nest_ordered(level + 1, {**pos, d: i}) for i in range(len(specs[d].bounds))]
        return [nest_ordered(level + 1, pos)]

    data = da.block(nest_ordered(0, {}))
    coords = {d: cube[d] for d in windowed}
    coords.update(whole_coords)
    result = xr.DataArray(data, dims=order, coords=coords, attrs=dict(cube.attrs), name=cube.name)
    scalars = {k: v for k, v in cube.coords.items() if v.ndim == 0}
    result = result.assign_coords(scalars)
    if hasattr(cube, "rio") and cube.rio.crs is not None and {"x", "y"} <= set(order):
        result = result.rio.write_crs(cube.rio.crs)
    return result if lazy else result.compute()


def _check_window_bytes(cube: xr.DataArray, specs: Mapping[str, WindowSpec], process: str) -> None:
    """Refuse windows whose array (overlap included) exceeds the policy's ``max_array_bytes``."""
    from ..policy import current_policy

    cells = 1
    for d in cube.dims:
        spec = specs.get(d)
        if spec is None:
            cells *= cube.sizes[d]
        else:
            cells *= (
                max((stop - start for start, stop in spec.bounds), default=0) + 2 * spec.overlap
            )
    padded = any(s.overlap for s in specs.values()) and not np.issubdtype(cube.dtype, np.floating)
    itemsize = max(cube.dtype.itemsize, 4) if padded else cube.dtype.itemsize
    current_policy().check_limit(
        "max_array_bytes",
        cells * itemsize,
        f"{process}: one window holds {cells * itemsize:,} bytes",
    )


def _core_len(spec: WindowSpec, i: int) -> int:
    start, stop = spec.bounds[i]
    return stop - start
