"""Process memory helpers: freed tiles go back to the OS (glibc)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from openeo_deepfeatures import memory

glibc = pytest.mark.skipif(memory._libc() is None, reason="needs glibc (Linux)")

# A worker thread allocates 50 arrays of 3 MiB after a 16 MiB free has raised glibc's dynamic
# mmap threshold, pins the top of its heap with a small array and frees the 50: the RSS that
# stays behind is what a streaming run would accumulate tile after tile.
_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import numpy as np
    from openeo_deepfeatures import memory

    def rss_mb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    if sys.argv[1] == "mmap":
        assert memory.heap_for_large_arrays()
    keep = []

    def work():
        big = np.ones(2 << 20)
        del big
        arrays = [np.ones(3 << 17) for _ in range(50)]
        keep.append(np.ones(100))
        del arrays

    before = rss_mb()
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if sys.argv[1] == "trim":
        assert memory.release_memory()
    print(rss_mb() - before)
    """
)


def _retained_mb(mode: str) -> float:
    # glibc's defaults: dask.distributed's nanny puts MALLOC_TRIM_THRESHOLD_ into os.environ
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout.strip())


@glibc
def test_freed_tiles_stay_resident_without_the_helpers():
    """The effect the helpers exist for (150 MiB allocated and freed)."""
    assert _retained_mb("none") > 100


@glibc
@pytest.mark.parametrize("mode", ["mmap", "trim"])
def test_freed_tiles_go_back_to_the_os(mode):
    assert _retained_mb(mode) < 20


def test_no_glibc_means_no_op(monkeypatch):
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert memory.heap_for_large_arrays() is False
    assert memory.release_memory() is False


def test_zarr_streaming_uses_the_helpers(tmp_path, monkeypatch):
    import dask.array as da
    import numpy as np
    import xarray as xr

    import openeo_deepfeatures.io as io

    calls = []
    monkeypatch.setattr(io, "heap_for_large_arrays", lambda: calls.append("mmap"))
    monkeypatch.setattr(io, "release_memory", lambda: calls.append("trim"))
    monkeypatch.setattr(io, "REGION_CHUNKS", 2)
    values = np.arange(2 * 12 * 12, dtype=np.float32).reshape(2, 1, 12, 12)
    cube = xr.DataArray(
        da.from_array(values, chunks=(1, 1, 4, 4)),
        dims=("t", "bands", "y", "x"),
        coords={"bands": ["a"], "y": np.arange(12.0), "x": np.arange(12.0)},
        name="cube",
    )
    io.write_zarr(cube, tmp_path / "c.zarr")
    regions = io._regions(cube)
    assert len(regions) == 12
    assert calls == ["mmap"] + ["trim"] * len(regions)
