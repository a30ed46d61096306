"""Strict JSON for packaged data: a duplicate key is an error, not a silent overwrite."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads_strict", "no_duplicate_keys"]


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r} in packaged JSON")
        out[key] = value
    return out


def loads_strict(text: str) -> Any:
    return json.loads(text, object_pairs_hook=no_duplicate_keys)
