"""Installed versions of the software that made an output (for provenance records)."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

__all__ = ["software_versions"]


def software_versions(names: Iterable[str]) -> dict[str, str]:
    """``{distribution: version}`` for the installed ones of ``names`` (others are skipped)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
