"""The encoders shipped with the package (package data), by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "SHIPPED_MODELS", "shipped_model_path"]

#: The encoders shipped with the package, by name, in order of preference: package-data paths.
SHIPPED_MODELS: dict[str, str] = {
    "default": "encoder/default.onnx",  # B02, B03, B04, B08, B8A, B11
    "s2-10m": "encoder/s2_10m.onnx",  # B02, B03, B04, B08: every openEO Sentinel-2 cube
}
#: The default encoder (``openeo_deepfeatures/data/<DEFAULT_MODEL>``).
DEFAULT_MODEL = SHIPPED_MODELS["default"]


def shipped_model_path(name: str) -> Path | None:
    """The file of a shipped model, or None when ``name`` is not one (or it is not installed)."""
    relative = SHIPPED_MODELS.get(name)
    if relative is None:
        return None
    path = resources.files("openeo_deepfeatures.data").joinpath(*relative.split("/"))
    return Path(str(path)) if path.is_file() else None
