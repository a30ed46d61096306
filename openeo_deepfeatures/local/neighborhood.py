"""``apply_neighborhood`` for local runs (upstream has none).

``size`` and ``overlap`` are read per dimension as the openEO spec says: x/y in pixels (``px``,
or ``m`` when it is a whole number of pixels), ``t`` as all values (``null``), a number of
acquisitions, or an ISO 8601 duration (``P1D``: one window per day, ``P1M``: per month, ...),
other dimensions whole. The callback sees each window with its overlap (no-data beyond the
cube's border, coordinates continued), its overlap is cut away afterwards, and the stitched
result equals a computation over the whole cube. The callback may rename the ``bands`` (as a
UDF with ``apply_metadata`` does on the geopyspark backends); other dimensions keep their labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DimensionNotAvailable, FeatureUnsupported, ProcessParameterInvalid
from .windows import WindowSpec, apply_windows

__all__ = ["SPEC", "apply_neighborhood", "duration_windows"]

_DURATION = re.compile(
    r"^P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


_CUBE = {
    "type": "object",
    "subtype": "datacube",
    "dimensions": [{"type": "spatial", "axis": ["x", "y"]}],
}
_CHUNK = {
    "type": "array",
    "items": {
        "type": "object",
        "subtype": "chunk-size",
        "required": ["dimension", "value"],
        "properties": {
            "dimension": {"type": "string"},
            "value": {
                "default": None,
                "anyOf": [
                    {"type": "null"},
                    {"type": "number", "minimum": 0},
                    {"type": "string", "subtype": "duration", "pattern": _DURATION.pattern},
                ],
            },
            "unit": {
                "default": None,
                "anyOf": [{"type": "null"}, {"type": "string", "enum": ["px", "m"]}],
            },
        },
    },
}
# openeo-processes-dask ships no description of apply_neighborhood: ours, for argument checks
# and process listings (the test suite compares it with the official openEO spec).
SPEC: dict[str, Any] = {
    "id": "apply_neighborhood",
    "summary": "Apply a process to pixels in a n-dimensional neighborhood",
    "description": __doc__,
    "categories": ["cubes"],
    "parameters": [
        {"name": "data", "description": "A raster data cube.", "schema": _CUBE},
        {
            "name": "process",
            "description": "Process applied to every neighbourhood (window with its overlap).",
            "schema": {
                "type": "object",
                "subtype": "process-graph",
                "parameters": [
                    {"name": "data", "description": "The window.", "schema": _CUBE},
                    {
                        "name": "context",
                        "description": "Additional data passed by the user.",
                        "schema": {"description": "Any data type."},
                        "optional": True,
                        "default": None,
                    },
                ],
                "returns": {"description": "The window, computed.", "schema": _CUBE},
            },
        },
        {"name": "size", "description": "Window sizes along dimensions.", "schema": _CHUNK},
        {
            "name": "overlap",
            "description": "Overlap added before and after each window.",
            "schema": [{"type": "null"}, _CHUNK],
            "optional": True,
            "default": None,
        },
        {
            "name": "context",
            "description": "Additional data passed to the process.",
            "schema": {"description": "Any data type."},
            "optional": True,
            "default": None,
        },
    ],
    "returns": {"description": "The computed data cube, same dimensions.", "schema": _CUBE},
    "exceptions": {
        "DimensionNotAvailable": {"message": "A dimension with the specified name does not exist."},
        "DataCubePropertiesImmutable": {
            "message": "The dimension properties (name, type, labels, reference system and resolution) must remain unchanged."
        },
    },
}


def _invalid(parameter: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process="apply_neighborhood", parameter=parameter, reason=reason)


def duration_windows(times: pd.DatetimeIndex, duration: str) -> tuple[tuple[int, int], ...]:
    """Consecutive runs of acquisitions in the same ``duration`` bin, counted from the first date."""
    match = _DURATION.match(duration)
    if match is None:
        raise _invalid("size", f"{duration!r} is not an ISO 8601 duration such as 'P1D'.")
    years, months, days, unit, hours, minutes, seconds = match.groups()
    if not times.is_monotonic_increasing:
        raise _invalid("data", "the t labels must be sorted to cut temporal windows.")
    n_months = int(years or 0) * 12 + int(months or 0)
    delta = pd.Timedelta(
        days=int(days or 0) * (7 if unit == "W" else 1),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=float(seconds or 0),
    )
    if n_months and delta:
        raise FeatureUnsupported(reason=f"durations mixing months and days ({duration!r}).")
    if n_months:
        month = times.year * 12 + times.month - 1
        bins = (month - month[0]) // n_months
    elif delta > pd.Timedelta(0):
        origin = times[0].floor("D")
        bins = (times - origin) // delta
    else:
        raise _invalid("size", f"{duration!r} is a zero duration.")
    bins = np.asarray(bins)
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    stops = np.r_[starts[1:], len(bins)]
    return tuple(zip(starts.tolist(), stops.tolist(), strict=True))


def _pixels(cube: xr.DataArray, item: Mapping[str, Any], parameter: str) -> int:
    value, unit, dim = item.get("value"), item.get("unit"), item["dimension"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _invalid(parameter, f"{dim}: {value!r} is not a number of pixels.")
    if unit == "m":
        coords = cube[dim].values
        res = abs(float(coords[1] - coords[0])) if len(coords) > 1 else None
        if not res:
            raise _invalid(parameter, f"{dim}: cannot convert metres without a resolution.")
        value = value / res
    if not float(value).is_integer():
        raise _invalid(
            parameter,
            f"{dim}: {item.get('value')!r} {unit or 'px'} is not a whole number of pixels.",
        )
    return int(value)


def _by_dimension(items: Sequence[Mapping[str, Any]] | None, cube: xr.DataArray, parameter: str):
    out: dict[str, Mapping[str, Any]] = {}
    for item in items or []:
        if not isinstance(item, Mapping) or "dimension" not in item:
            raise _invalid(parameter, f"{item!r} is not a {{dimension, value, unit}} object.")
        dim = item["dimension"]
        if dim not in cube.dims:
            raise DimensionNotAvailable(
                reason=f"'{dim}' in apply_neighborhood {parameter}; the cube has {list(cube.dims)}."
            )
        if dim in out:
            raise _invalid(parameter, f"dimension '{dim}' is given twice.")
        out[dim] = item
    return out


def window_specs(
    cube: xr.DataArray,
    size: Sequence[Mapping[str, Any]],
    overlap: Sequence[Mapping[str, Any]] | None,
) -> dict[str, WindowSpec]:
    """The windows ``size``/``overlap`` describe for ``cube``."""
    sizes = _by_dimension(size, cube, "size")
    overlaps = _by_dimension(overlap, cube, "overlap")
    specs: dict[str, WindowSpec] = {}
    for dim in cube.dims:
        item = sizes.get(dim)
        over = overlaps.get(dim)
        value = None if item is None else item.get("value")
        n = cube.sizes[dim]
        if value is None:
            continue  # all values in every window: an overlap has nothing to add
        if isinstance(value, str):
            if dim != "t":
                raise _invalid("size", f"{dim}: durations apply to the temporal dimension t only.")
            if over is not None and over.get("value") not in (None, 0, "P0D"):
                raise FeatureUnsupported(
                    reason="apply_neighborhood: a temporal overlap together with duration windows."
                )
            bounds = duration_windows(pd.DatetimeIndex(cube["t"].values), value)
            specs[dim] = WindowSpec(bounds)
            continue
        px = _pixels(cube, item, "size")
        if px == 0:
            raise _invalid("size", f"{dim}: a window of zero pixels.")
        ov = 0
        if over is not None and over.get("value") is not None:
            if isinstance(over.get("value"), str):
                raise FeatureUnsupported(
                    reason=f"apply_neighborhood: a duration overlap on dimension '{dim}'."
                )
            ov = _pixels(cube, over, "overlap")
        specs[dim] = WindowSpec.regular(n, px, ov)
    return specs


def _check_windows(cube: xr.DataArray, specs: Mapping[str, WindowSpec]) -> None:
    """Refuse windows larger than the policy's ``max_window`` (cells along one dimension,
    overlap included) before anything is padded or computed."""
    from ..policy import current_policy

    policy = current_policy()
    for dim, spec in specs.items():
        extent = max((stop - start for start, stop in spec.bounds), default=0) + 2 * spec.overlap
        policy.check_limit(
            "max_window",
            extent,
            f"apply_neighborhood: a window of {extent:,} cells along '{dim}' (overlap included)",
        )


def apply_neighborhood(
    data: xr.DataArray,
    process: Any,
    size: Sequence[Mapping[str, Any]],
    overlap: Sequence[Mapping[str, Any]] | None = None,
    context: Any = None,
) -> xr.DataArray:
    """Apply ``process`` to every neighbourhood of ``data`` (see the module docstring)."""
    if not isinstance(data, xr.DataArray) or not {"x", "y"} <= set(data.dims):
        raise _invalid("data", "expected a raster data cube with x and y dimensions.")
    specs = window_specs(data, size, overlap)
    _check_windows(data, specs)

    def call(window: xr.DataArray) -> Any:
        return process(named_parameters={"data": window, "context": context})

    mutable = ("bands",) if "bands" not in specs else ()
    return apply_windows(data, call, specs, process="apply_neighborhood", mutable=mutable)
