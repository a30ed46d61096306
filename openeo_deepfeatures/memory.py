"""Process memory: keeping the resident memory of a streaming run at one region's worth.

Tiles of 100+ channels are allocated and freed over and over by several threads. glibc's
allocator serves arrays below its *dynamic* mmap threshold (which grows up to 32 MiB after the
first large free) from per-thread heap arenas, and keeps what is freed there: the process's
resident memory then grows with the number of tiles although each is freed, the effect
dask.distributed's documentation calls "memory not released back to the OS".

- :func:`release_memory` (glibc ``malloc_trim``) hands memory that is already free back to the
  OS; it changes no setting. ``io.write_zarr`` calls it after each region it streams.
- :func:`heap_for_large_arrays` (glibc ``mallopt``) changes how the whole process allocates
  from then on, which a library must not do on its own: it is opt-in, with the command-line
  flag ``--release-memory`` or the environment variable :data:`RELEASE_MEMORY_ENV`
  (``DEEPFEATURES_RELEASE_MEMORY=1``, read by ``io.write_zarr`` when it streams).

Both are no-ops where the C library is not glibc (macOS, Windows, musl). Measured with
``benchmarks/bench_feature_cube.py``: see the README (Performance, Feature cubes).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

__all__ = [
    "LARGE_ARRAY_BYTES",
    "RELEASE_MEMORY_ENV",
    "heap_for_large_arrays",
    "release_memory",
    "release_memory_requested",
]

#: Arrays from this size on are mapped on their own and unmapped when freed.
LARGE_ARRAY_BYTES = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc malloc.h
#: ``1`` (or ``true``, ``yes``, ``on``): :func:`~openeo_deepfeatures.io.write_zarr` calls
#: :func:`heap_for_large_arrays` before it streams a cube (the ``--release-memory`` flag).
RELEASE_MEMORY_ENV = "DEEPFEATURES_RELEASE_MEMORY"


def release_memory_requested() -> bool:
    """Whether :data:`RELEASE_MEMORY_ENV` asks for :func:`heap_for_large_arrays`."""
    return os.environ.get(RELEASE_MEMORY_ENV, "").strip().lower() in ("1", "true", "yes", "on")


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
    whole process (glibc ``mallopt(M_MMAP_THRESHOLD)``), so that a freed tile goes back to the
    OS at once. This fixes the threshold (glibc otherwise raises it as large blocks are freed)
    for good; small allocations are unaffected. Library code calls it only when asked
    (:data:`RELEASE_MEMORY_ENV`). True when the setting took effect."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, LARGE_ARRAY_BYTES) == 1)


def release_memory() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim(0)``, all arenas). True when
    some memory was released."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)
