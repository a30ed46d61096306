"""Process memory: keeping the resident memory of a streaming run at one region's worth.

Tiles of 100+ channels are allocated and freed over and over by several threads. glibc's
allocator serves arrays below its *dynamic* mmap threshold (which grows up to 32 MiB after the
first large free) from per-thread heap arenas, and keeps what is freed there: the process's
resident memory then grows with the number of tiles although each is freed, the effect
dask.distributed's documentation calls "memory not released back to the OS". Measured with
``benchmarks/bench_feature_cube.py`` (20 px tiles): 10x the demo's area peaked at 1.27-1.36x
the demo's peak without these settings, 1.17-1.23x with them (three runs each).

Both functions are no-ops where the C library is not glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import functools
import sys

__all__ = ["LARGE_ARRAY_BYTES", "heap_for_large_arrays", "release_memory"]

#: Arrays from this size on are mapped on their own and unmapped when freed.
LARGE_ARRAY_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc malloc.h


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 (glibc only)
    except (OSError, AttributeError):
        return None
    return libc


def heap_for_large_arrays() -> bool:
    """Serve allocations of :data:`LARGE_ARRAY_BYTES` and more by ``mmap`` from now on, in this
    process (glibc ``mallopt(M_MMAP_THRESHOLD)``), so that a freed tile goes back to the OS at
    once. This fixes the threshold (glibc otherwise raises it as large blocks are freed); small
    allocations are unaffected. True when the setting took effect."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, LARGE_ARRAY_BYTES) == 1)


def release_memory() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim(0)``, all arenas). True when
    some memory was released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)
