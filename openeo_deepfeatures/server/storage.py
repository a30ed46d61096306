"""JSON files on disk, written atomically (a reader never sees half a file)."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

__all__ = ["read_json", "safe_id", "write_json"]

_ID = re.compile(r"^[\w\-]+$")


def safe_id(value: str) -> bool:
    """Ids become file names: letters, digits, ``_`` and ``-`` (openEO UDPs: ``^\\w+$``)."""
    return bool(_ID.match(value))


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(value, indent=1, default=str), "utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))
