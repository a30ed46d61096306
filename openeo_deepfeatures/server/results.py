"""What a run returns, as a file: ``save_result``'s own, else a cube as netCDF, a value as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

__all__ = ["save_value"]


def save_value(value: Any, output: Path) -> dict[str, Any]:
    """A STAC Item whose ``data`` asset holds ``value`` (already written when save_result ran)."""
    if isinstance(value, Mapping) and "assets" in value:
        return dict(value)
    from ..local.processes import RunSettings, save_result, settings

    token = settings.set(RunSettings(output=output))
    try:
        return save_result(value, "netCDF" if isinstance(value, xr.DataArray) else "JSON")
    finally:
        settings.reset(token)
