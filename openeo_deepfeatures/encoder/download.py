"""Models by URL: downloaded once into the user cache, atomically, then reused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..errors import ProcessParameterInvalid
from ..io import atomic_path

if TYPE_CHECKING:
    from ..policy import ExecutionPolicy

__all__ = ["cache_dir", "cached_model"]


def cache_dir() -> Path:
    """``$DEEPFEATURES_CACHE``, else ``$XDG_CACHE_HOME/openeo-deepfeatures``, else ``~/.cache/…``."""
    if os.environ.get("DEEPFEATURES_CACHE"):
        return Path(os.environ["DEEPFEATURES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "openeo-deepfeatures"


def cached_model(url: str, *, timeout: float = 60, policy: ExecutionPolicy | None = None) -> Path:
    """The local copy of the model at ``url`` (downloaded on first use).

    ``policy`` (default: :func:`~openeo_deepfeatures.policy.current_policy`) checks the URL,
    also when the copy is cached, and every redirect of the download.
    """
    from ..policy import current_policy

    policy = policy or current_policy()
    policy.check_url(url, what="the model")
    name = Path(urlsplit(url).path).name or "model.onnx"
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    target = cache_dir() / "models" / f"{key}-{name}"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            policy.open_url(url, timeout=timeout, what="the model") as response,
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
