"""What a run returns, as a file: ``save_result``'s own, a cube as netCDF, other values as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..io import atomic_path

__all__ = ["save_value"]


def save_value(value: Any, output: Path) -> dict[str, Any]:
    """A STAC Item whose ``data`` asset holds ``value`` (already written when save_result ran)."""
    if isinstance(value, Mapping) and "assets" in value:
        return dict(value)
    if isinstance(value, xr.DataArray):
        from ..local.processes import RunSettings, save_result, settings

        token = settings.set(RunSettings(output=output))
        try:
            return save_result(value, "netCDF")
        finally:
            settings.reset(token)
    target = output / "result.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(_plain(value), allow_nan=False), "utf-8")
    return {
        "type": "Feature",
        "properties": {},
        "assets": {"data": {"href": str(target), "type": "application/json", "roles": ["data"]}},
    }


def _plain(value: Any) -> Any:
    """JSON values: numpy scalars and arrays as numbers and lists, NaN as null."""
    if hasattr(value, "compute"):
        value = value.compute()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
