"""Options shared by several ``deepfeatures`` commands."""

from __future__ import annotations

import argparse

__all__ = ["add_release_memory"]


def add_release_memory(cmd: argparse.ArgumentParser) -> None:
    """``--release-memory``: the command owns its process, so it may set the allocator."""
    cmd.add_argument(
        "--release-memory",
        action="store_true",
        help="serve large arrays by mmap in this process (glibc), so that freed tiles go back "
        "to the OS at once while the zarr is written: a lower peak resident memory for large "
        "cubes (the same as DEEPFEATURES_RELEASE_MEMORY=1)",
    )
