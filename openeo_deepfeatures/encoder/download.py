"""Models by URL: the execution policy's check, then the UDF kernel's cached download."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..udf import feature_embedding as udf_kernel
from .loader import kernel_errors

if TYPE_CHECKING:
    from ..policy import ExecutionPolicy

__all__ = ["cache_dir", "cached_model"]


def cache_dir() -> Path:
    """Where models given by URL are kept (the UDF's cache): ``$DEEPFEATURES_CACHE``, else
    ``$XDG_CACHE_HOME/openeo-deepfeatures/models`` (``~/.cache/...``)."""
    return udf_kernel.cache_dir()


def cached_model(
    url: str,
    *,
    sha256: str | None = None,
    timeout: float = 60,
    policy: ExecutionPolicy | None = None,
) -> Path:
    """The local copy of the model at ``url`` (downloaded on first use, atomically; with
    ``sha256``, checked).

    ``policy`` (default: :func:`~openeo_deepfeatures.policy.current_policy`) checks the URL,
    also when the copy is cached, and every redirect of the download.
    """
    from ..policy import current_policy

    policy = policy or current_policy()
    policy.check_url(url, what="the model")

    def opener(target: str):
        return policy.open_url(target, timeout=timeout, what="the model")

    with kernel_errors("load_encoder"):
        return Path(udf_kernel.download(url, sha256, opener=opener))
