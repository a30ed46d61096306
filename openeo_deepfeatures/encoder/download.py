"""Models by URL: downloaded once into the user cache, atomically, then reused."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from ..errors import ProcessParameterInvalid
from ..io import atomic_path

__all__ = ["cache_dir", "cached_model"]


def cache_dir() -> Path:
    """``$DEEPFEATURES_CACHE``, else ``$XDG_CACHE_HOME/openeo-deepfeatures``, else ``~/.cache/…``."""
    if os.environ.get("DEEPFEATURES_CACHE"):
        return Path(os.environ["DEEPFEATURES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "openeo-deepfeatures"


def cached_model(url: str, *, timeout: float = 60) -> Path:
    """The local copy of the model at ``url`` (downloaded on first use)."""
    name = Path(urllib.request.urlparse(url).path).name or "model.onnx"
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    target = cache_dir() / "models" / f"{key}-{name}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            urllib.request.urlopen(url, timeout=timeout) as response,
            atomic_path(target) as tmp,
            open(tmp, "wb") as out,
        ):
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        raise ProcessParameterInvalid(
            process="load_encoder", parameter="model", reason=f"cannot download {url!r}: {exc}"
        ) from None
    return target
