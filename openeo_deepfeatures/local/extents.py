"""openEO extents as the local processes use them: dates as naive UTC, bounding boxes in a CRS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..errors import ProcessParameterInvalid, TemporalExtentEmpty

__all__ = ["bbox_in_crs", "temporal_bounds", "utc"]


def utc(value: Any, process: str, parameter: str) -> pd.Timestamp | None:
    """A date or date-time as naive UTC (cube labels are UTC); None stays None."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ProcessParameterInvalid(
            process=process, parameter=parameter, reason=f"{value!r} is not a date or date-time."
        ) from exc
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def temporal_bounds(
    extent: Sequence[Any], process: str
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``[start, end]`` as naive UTC; ``TemporalExtentEmpty`` unless end is after start."""
    start, end = (utc(v, process, "temporal_extent") for v in extent)
    if start is not None and end is not None and end <= start:
        raise TemporalExtentEmpty(
            reason=f"end {end} is not after start {start}.",
            process=process,
            parameter="temporal_extent",
        )
    return start, end


def bbox_in_crs(extent: Mapping[str, Any], crs: Any | None) -> tuple[float, float, float, float]:
    """An openEO bounding box (``crs`` defaults to EPSG:4326) as ``(west, south, east, north)``
    in ``crs`` (pyproj's bounds transform, densified edges); unchanged where ``crs`` is None."""
    west, south, east, north = (float(extent[k]) for k in ("west", "south", "east", "north"))
    if crs is None:
        return west, south, east, north
    from pyproj import CRS, Transformer

    src, dst = CRS.from_user_input(extent.get("crs") or 4326), CRS.from_user_input(crs)
    if src != dst:
        tr = Transformer.from_crs(src, dst, always_xy=True)
        west, south, east, north = tr.transform_bounds(west, south, east, north, densify_pts=21)
    return west, south, east, north
