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


def _stream(tmp_path, monkeypatch) -> list[str]:
    """Stream a 12-region cube with ``write_zarr``; the allocator calls it made, in order."""
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
    assert len(io._regions(cube)) == 12
    return calls


def test_zarr_streaming_leaves_the_allocator_settings_alone(tmp_path, monkeypatch):
    """By default only memory already freed is handed back (``malloc_trim``), per region."""
    monkeypatch.delenv(memory.RELEASE_MEMORY_ENV, raising=False)
    assert _stream(tmp_path, monkeypatch) == ["trim"] * 12


def test_zarr_streaming_sets_the_mmap_threshold_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv(memory.RELEASE_MEMORY_ENV, "1")
    assert _stream(tmp_path, monkeypatch) == ["mmap"] + ["trim"] * 12


@pytest.mark.parametrize(
    ("value", "asked"),
    [("1", True), ("true", True), (" Yes ", True), ("on", True), ("0", False), ("", False)],
)
def test_release_memory_environment_variable(monkeypatch, value, asked):
    monkeypatch.setenv(memory.RELEASE_MEMORY_ENV, value)
    assert memory.release_memory_requested() is asked


@pytest.mark.parametrize(
    "command",
    [
        ["demo"],
        ["feature-cube", "in.nc", "-o", "out.zarr"],
        ["embed", "in.nc", "-o", "out.zarr"],
        ["indices", "compute", "in.nc", "-o", "out.zarr"],
        ["run", "graph.json"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_commands_that_write_cubes_take_the_flag(command):
    from openeo_deepfeatures.cli import build_parser

    assert build_parser().parse_args([*command, "--release-memory"]).release_memory
    assert not build_parser().parse_args(command).release_memory


@pytest.mark.parametrize("flag", [False, True])
def test_release_memory_flag(tmp_path, monkeypatch, flag):
    import openeo_deepfeatures as odf
    from openeo_deepfeatures.cli import main

    monkeypatch.delenv(memory.RELEASE_MEMORY_ENV, raising=False)
    calls = []
    monkeypatch.setattr(memory, "heap_for_large_arrays", lambda: calls.append("mmap"))
    source = tmp_path / "in.nc"
    demo = odf.load_demo_cube().isel(t=[0, 1], y=slice(0, 4), x=slice(0, 4))
    demo.to_dataset(dim="bands").to_netcdf(source)
    argv = ["indices", "compute", str(source), "-o", str(tmp_path / "si.zarr"), "--indices"]
    assert main([*argv, "NDVI", "-q", *(["--release-memory"] if flag else [])]) == 0
    assert calls == (["mmap"] if flag else [])
