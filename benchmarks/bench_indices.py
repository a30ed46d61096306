"""Spectral-index benchmark: openeo-deepfeatures engines against spyndex, interleaved.

Workload: every index computable from the 11 Sentinel-2 L2A bands B01..B12 (no B09) on a
float32 reflectance cube (t, bands=11, y=256, x=256) of seeded uniform random values in
0.005..0.8, at t=10 and t=50.

1. **In memory, interleaved.** Each repeat is one fresh process that runs every engine in
   turn (the order rotates from repeat to repeat): first each engine once (``cold``: its first
   call in the process: imports, numba's kernel from its disk cache, fresh memory), then
   ``--warm`` further rounds over all engines (``warm``: the best of them). Over the repeats
   (>= 5) the table gives min and median; ratios are to spyndex-numpy of the same repeat
   (median of the per-repeat ratios) and to the write floor (allocating and filling the
   float32 output array, ``np.empty`` + ``fill``, the least any engine must do).
2. **Streaming zarr -> zarr** (``open_zarr`` + ``compute_indices`` + ``write_zarr``) per codec
   at t=50, and with the default codec at t=200, each in a fresh process; its peak memory is
   the process's ``VmHWM``. Floors in the same run: reading + computing with nothing written,
   the same plus lz4 compression of every output chunk (nothing written), and the output's
   bytes written as plain files (nothing computed); on random and on real reflectance. Each
   row gives the user and system CPU seconds of its best run.

    python benchmarks/bench_indices.py            # full run (about 15 minutes on 2 cores)
    python benchmarks/bench_indices.py --quick    # smoke test: t=10, 2 repeats, no streaming
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
NY = NX = 256
CHUNK_T = 5
SEED = 20240611
LOW, HIGH = 0.005, 0.8
RESULT_MARK = "BENCH-RESULT "

#: In-memory engines, interleaved in one process per repeat.
ENGINES = {
    "ours-numba": "ours, numba engine, float64 (default)",
    "ours-numba-f32": "ours, numba engine, precision=float32",
    "ours-numpy": "ours, numpy engine, float64",
    "ours-numpy-f32": "ours, numpy engine, precision=float32",
    "ours-numba-out": "ours, numba engine, float64, into a reused output (run_program out=)",
    "spyndex-numpy": "spyndex 0.12 numpy",
    "write-floor": "write floor: np.empty + fill of the float32 output",
    "write-floor-reused": "write floor, reused output: fill of an existing float32 array",
}
BASELINE = "spyndex-numpy"
FLOOR = "write-floor"
FLOOR_REUSED = "write-floor-reused"
DEFAULT_ENGINE = "ours-numba"
CODECS = ("lz4", "zstd", "none")
#: Indices per zarr chunk of ``write_zarr`` (its default ``chunks={"bands": 32}``).
OUT_CHUNK_BANDS = 32


# --------------------------------------------------------------------------- input cube


def slabs(t: int):
    """The cube as consecutive (<=CHUNK_T, 11, NY, NX) float32 slabs; same values for any t."""
    rng = np.random.default_rng(SEED)
    for t0 in range(0, t, CHUNK_T):
        n = min(CHUNK_T, t - t0)
        slab = rng.random((n, len(BANDS), NY, NX), dtype=np.float32)
        slab *= np.float32(HIGH - LOW)
        slab += np.float32(LOW)
        yield slab


def make_cube(t: int) -> np.ndarray:
    cube = np.empty((t, len(BANDS), NY, NX), np.float32)
    t0 = 0
    for slab in slabs(t):
        cube[t0 : t0 + len(slab)] = slab
        t0 += len(slab)
    return cube


def as_dataarray(data: Any):
    import xarray as xr

    return xr.DataArray(
        data, dims=("t", "bands", "y", "x"), coords={"bands": list(BANDS)}, name="reflectance"
    )


def write_input_zarr(path: str, t: int) -> None:
    """Write the cube slab by slab (the writer never holds the whole cube)."""
    for i, slab in enumerate(slabs(t)):
        ds = as_dataarray(slab).to_dataset()
        if i == 0:
            enc = {"reflectance": {"chunks": (CHUNK_T, len(BANDS), NY, NX)}}
            ds.to_zarr(path, mode="w", encoding=enc, consolidated=True)
        else:
            ds.to_zarr(path, append_dim="t", consolidated=True)


#: Real Sentinel-2 L2A for the codec rows: random values do not compress, real cubes do.
REAL_CUBE = (
    os.path.dirname(os.path.abspath(__file__))
    + "/../../shared/data/nrt_romania/sentinel2_cube_subset_romania_10m.nc"
)


def write_real_input_zarr(path: str) -> tuple[str, ...]:
    """The real 10 m cube (140 dates, B02 B03 B04 B08, 100 x 100 px) as cloud-masked
    reflectance, chunks of ``CHUNK_T`` dates; returns its bands."""
    from openeo_deepfeatures.io import open_cube
    from openeo_deepfeatures.sentinel2 import preprocess_s2

    refl = preprocess_s2(open_cube(REAL_CUBE, chunks=None)).astype(np.float32)
    refl = refl.rename("reflectance").drop_vars("spatial_ref", errors="ignore")
    enc = {"reflectance": {"chunks": (CHUNK_T, refl.sizes["bands"], *refl.shape[2:])}}
    refl.to_dataset().to_zarr(path, mode="w", encoding=enc, consolidated=True)
    return tuple(str(b) for b in refl["bands"].values)


# --------------------------------------------------------------------------- spyndex harness


@dataclass
class SpyndexGroup:
    """Indices that can share one ``params`` dict (no symbol bound to two different values)."""

    specs: dict[str, tuple] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)


def _index_specs(index) -> dict[str, tuple]:
    """symbol -> ("band", label) | ("const", value) | ("kernel", spec_a, spec_b)."""
    specs: dict[str, tuple] = {s: ("band", label) for s, label in index.bands.items()}
    specs.update({s: ("const", float(v)) for s, v in index.constants.items()})
    for s, (a, b) in index.kernels.items():
        specs[s] = ("kernel", specs[a], specs[b])
    return specs


def spyndex_groups(resolved) -> list[SpyndexGroup]:
    """Split the indices into groups with consistent constants, largest group first.

    One ``spyndex.computeIndex(names, params)`` call takes a single value per symbol, but the
    catalogue defaults differ between indices (``L`` is 0.5 for SAVI and 1 for EVI,
    ``epsilon`` 1e-10 or 1), so a single call would compute some indices with wrong constants.
    """
    groups: list[SpyndexGroup] = []
    for index in resolved:
        specs = _index_specs(index)
        for g in groups:
            if all(g.specs.get(s, v) == v for s, v in specs.items()):
                break
        else:
            g = SpyndexGroup()
            groups.append(g)
        g.specs.update(specs)
        g.names.append(index.name)
    return sorted(groups, key=lambda g: -len(g.names))


def spyndex_compute(groups: list[SpyndexGroup], bands: dict[str, Any], concatenate) -> Any:
    """Kernels (RBF, sigma = 0.5 (a + b)) + one computeIndex per group; stacked (index, ...)."""
    import spyndex

    kernels: dict[tuple, Any] = {}

    def value(spec: tuple) -> Any:
        kind = spec[0]
        if kind == "band":
            return bands[spec[1]]
        if kind == "const":
            return spec[1]
        if spec not in kernels:
            a, b = value(spec[1]), value(spec[2])
            kernels[spec] = spyndex.computeKernel(
                "RBF", params={"a": a, "b": b, "sigma": 0.5 * (a + b)}
            )
        return kernels[spec]

    parts = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for g in groups:
            params = {s: value(spec) for s, spec in g.specs.items()}
            out = spyndex.computeIndex(list(g.names), params=params)
            if len(g.names) == 1:  # spyndex returns a single index unstacked
                out = out[None]
            parts.append(out)
        return parts[0] if len(parts) == 1 else concatenate(parts)


# --------------------------------------------------------------------------- children


def _resolved():
    from openeo_deepfeatures.indices.resolve import resolve_indices

    return resolve_indices(None, BANDS)


def peak_rss_bytes() -> int:
    """This process's peak resident memory: ``VmHWM`` (unlike ``ru_maxrss`` it does not carry
    the parent's memory over fork + exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def engine_calls(t: int) -> tuple[dict[str, Any], int]:
    """One callable per engine (returning its output) and the number of indices."""
    from openeo_deepfeatures.udf.spectral_indices import run_program

    from openeo_deepfeatures.indices.compute import compute_indices
    from openeo_deepfeatures.indices.resolve import compile_indices

    raw = make_cube(t)
    cube = as_dataarray(raw)
    groups = spyndex_groups(_resolved())
    bands = {b: np.ascontiguousarray(raw[:, i]) for i, b in enumerate(BANDS)}
    n_indices = len(_resolved())
    program = compile_indices(None, BANDS).to_dict()
    x = np.ascontiguousarray(raw[:, [BANDS.index(b) for b in program["inputs"]]])
    x = x.reshape(t, len(BANDS), NY * NX)
    reused = np.empty((t, n_indices, NY * NX), np.float32)
    reused.fill(0.0)  # touched once, before any timing

    def floor() -> np.ndarray:
        out = np.empty((t, n_indices, NY, NX), np.float32)
        out.fill(0.5)
        return out

    def floor_reused() -> np.ndarray:
        reused.fill(0.5)
        return reused

    calls = {
        "ours-numba": lambda: compute_indices(cube, engine="numba"),
        "ours-numba-f32": lambda: compute_indices(cube, engine="numba", precision="float32"),
        "ours-numpy": lambda: compute_indices(cube, engine="numpy"),
        "ours-numpy-f32": lambda: compute_indices(cube, engine="numpy", precision="float32"),
        "ours-numba-out": lambda: run_program(program, x, reused, threads=None, engine="numba"),
        "spyndex-numpy": lambda: spyndex_compute(groups, bands, np.concatenate),
        "write-floor": floor,
        "write-floor-reused": floor_reused,
    }
    return calls, n_indices


def interleaved_child(t: int, rotate: int, warm: int) -> dict[str, Any]:
    """Every engine cold once, then ``warm`` rounds over all of them; seconds per call."""
    calls, n_indices = engine_calls(t)
    names = list(calls)
    k = rotate % len(names)
    order = names[k:] + names[:k]
    seconds: dict[str, list[float]] = {n: [] for n in names}
    shapes: dict[str, list[int]] = {}
    for _ in range(1 + warm):
        for name in order:
            start = time.perf_counter()
            out = calls[name]()
            seconds[name].append(time.perf_counter() - start)
            shapes[name] = [int(v) for v in np.shape(out)]
            del out
    for name, shape in shapes.items():
        if int(np.prod(shape)) != t * n_indices * NY * NX:
            raise RuntimeError(f"{name} returned shape {shape}")
    return {"order": order, "seconds": seconds, "n_indices": n_indices}


def _stream_input(kind: str, t: int, path: str) -> tuple[str, ...]:
    """Write the input zarr (not timed); returns its bands."""
    if kind == "random":
        write_input_zarr(path, t)
        return BANDS
    return write_real_input_zarr(path)


def streaming_child(t: int, codec: str, repeat: int, kind: str = "random") -> dict[str, Any]:
    """zarr -> zarr with ``codec`` (or a floor: ``compute-only``, ``compute-encode``,
    ``plain-files``): seconds, user and system CPU seconds per run; the input zarr is written
    beforehand (not timed)."""
    import xarray as xr

    from openeo_deepfeatures.indices.compute import compute_indices
    from openeo_deepfeatures.io import write_zarr

    tmp = tempfile.mkdtemp(prefix="bench_indices_")
    try:
        src, dst = os.path.join(tmp, "in.zarr"), os.path.join(tmp, "out.zarr")
        _stream_input(kind, t, src)
        in_memory = None
        if kind == "real":  # in-memory reference of the same cube, same process, warm
            loaded = xr.open_zarr(src)["reflectance"].load()
            in_memory = []
            for _ in range(3):
                start = time.perf_counter()
                compute_indices(loaded)
                in_memory.append(time.perf_counter() - start)
            del loaded
        base = peak_rss_bytes()
        seconds, user, system = [], [], []
        n_indices, nbytes = 0, 0
        for _ in range(repeat):
            shutil.rmtree(dst, ignore_errors=True)
            r0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            cube = xr.open_zarr(src, chunks={"t": CHUNK_T})["reflectance"]
            si = compute_indices(cube)
            n_indices = int(si.sizes["bands"])
            if codec == "compute-only":  # every chunk computed, nothing written
                si.data.map_blocks(_discard, dtype=np.float32, chunks=(1,) * si.ndim).compute()
            elif codec == "compute-encode":  # ... and compressed as write_zarr's lz4, not written
                chunks = si.data.rechunk({1: OUT_CHUNK_BANDS})
                chunks.map_blocks(_encode, dtype=np.float32, chunks=(1,) * si.ndim).compute()
            elif codec == "plain-files":  # the output's bytes as files, no compute, no zarr
                nbytes = _write_plain_files(dst, si.shape)
            else:
                write_zarr(si, dst, overwrite=True, codec=codec)
            seconds.append(time.perf_counter() - start)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            user.append(r1.ru_utime - r0.ru_utime)
            system.append(r1.ru_stime - r0.ru_stime)
        if codec not in FLOORS:
            written = xr.open_zarr(dst, consolidated=False)["spectral_indices"]
            if not np.isfinite(written.isel(t=-1).values).any():
                raise RuntimeError("output store holds no finite value")
            nbytes = int(written.size) * 4
        return {
            "seconds": seconds,
            "user_seconds": user,
            "system_seconds": system,
            "n_indices": n_indices,
            "shape": [int(v) for v in si.shape],
            "out_bytes": nbytes,
            "out_bytes_on_disk": _du(dst) if os.path.exists(dst) else 0,
            "peak_rss_bytes": peak_rss_bytes(),
            "peak_rss_before_bytes": base,
            "in_memory_warm_seconds": None if in_memory is None else min(in_memory[1:]),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(block: np.ndarray) -> np.ndarray:
    return np.zeros((1,) * block.ndim, np.float32)


def _encode(block: np.ndarray) -> np.ndarray:
    """Compress ``block`` (one zarr chunk) with the blosc settings of ``write_zarr(codec=
    "lz4")`` (:func:`openeo_deepfeatures.io.zarr_compressors`) and drop it."""
    from numcodecs import Blosc

    from openeo_deepfeatures.io import zarr_compressors

    (codec,) = zarr_compressors("lz4")
    shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE}[codec.shuffle.value]
    blosc = Blosc(codec.cname.value, codec.clevel, shuffle, codec.blocksize)
    blosc.encode(np.ascontiguousarray(block))
    return np.zeros((1,) * block.ndim, np.float32)


def _write_plain_files(path: str, shape: tuple[int, ...]) -> int:
    """The bytes of a float32 cube of ``shape`` written as one file per zarr chunk (t=5, 32
    indices), from one reused buffer: what any writer pays for the page cache and disk."""
    os.makedirs(path)
    t, n, ny, nx = shape
    buffer = np.full((CHUNK_T, OUT_CHUNK_BANDS, ny, nx), 0.5, np.float32)
    total = 0
    for t0 in range(0, t, CHUNK_T):
        for b0 in range(0, n, OUT_CHUNK_BANDS):
            part = buffer[: min(CHUNK_T, t - t0), : min(OUT_CHUNK_BANDS, n - b0)]
            with open(os.path.join(path, f"c{t0}.{b0}"), "wb") as f:
                f.write(np.ascontiguousarray(part))
            total += part.nbytes
    return total


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


# --------------------------------------------------------------------------- parent


def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def check_agreement() -> str:
    """Small sample: both our engines against the spyndex harness in float64."""
    from openeo_deepfeatures.indices.compute import compute_indices

    cube = make_cube(2)[:, :, :64, :64].copy()
    groups = spyndex_groups(_resolved())
    bands = {b: cube[:, i].astype(np.float64) for i, b in enumerate(BANDS)}
    ref = spyndex_compute(groups, bands, np.concatenate)
    names = [n for g in groups for n in g.names]
    parts = []
    for engine in ("numba", "numpy"):
        ours = compute_indices(as_dataarray(cube), threads=1, engine=engine)
        if set(names) != {str(b) for b in ours["bands"].values}:
            return "index lists differ between the engines!"
        bad = []
        for k, name in enumerate(names):
            expected = np.where(np.isfinite(ref[k]), ref[k], np.nan)
            got = ours.sel(bands=name).values.astype(np.float64)
            if not np.allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True):
                bad.append(name)
        parts.append(
            f"{engine}: {len(names) - len(bad)}/{len(names)}"
            + (f" (MISMATCH: {', '.join(bad)})" if bad else "")
        )
    return (
        f"agreement with spyndex (float64) within rtol 1e-5 on a 2x11x64x64 sample: "
        f"{'; '.join(parts)}; spyndex needs {len(groups)} computeIndex calls (constant sets)"
    )


def _machine_cpu() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = sum(fields[:3]) + sum(fields[5:7])  # user nice system + irq softirq
    steal = fields[7] if len(fields) > 7 else 0.0
    return busy / hz, steal / hz


def _other_load(before: tuple[float, float] | None) -> str:
    """CPU time that processes other than this benchmark used while the rows ran."""
    after = _machine_cpu()
    if before is None or after is None:
        return "machine load during the rows: unknown (no /proc/stat)"
    mine = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = mine.ru_utime + mine.ru_stime
    other = max(0.0, after[0] - before[0] - own)
    note = " (timings disturbed)" if other > 10 else ""
    return (
        f"CPU used by other processes while the rows ran: {other:.0f} core-s{note}; "
        f"VM steal: {after[1] - before[1]:.0f} s"
    )


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"machine: {os.cpu_count()} cores ({cpu}), {ram:.1f} GiB RAM, {platform.system()}"


def versions_line() -> str:
    import dask
    import spyndex
    import xarray
    import zarr

    import openeo_deepfeatures

    return (
        f"versions: python {platform.python_version()}, numpy {np.__version__}, "
        f"dask {dask.__version__}, xarray {xarray.__version__}, zarr {zarr.__version__}, "
        f"spyndex {spyndex.__version__}, numba {_numba_version()}, "
        f"openeo_deepfeatures {openeo_deepfeatures.__version__}"
    )


def _numba_version() -> str:
    try:
        import numba
    except ImportError:
        return "absent"
    return numba.__version__


def _stats(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def _fmt_range(values: list[float], digits: int = 1) -> str:
    """min / median (max) of positive ratios or figures."""
    lo, med = min(values), statistics.median(values)
    return f"{med:.{digits}f} ({lo:.{digits}f}-{max(values):.{digits}f})"


def interleaved_table(t: int, runs: list[dict[str, Any]]) -> list[str]:
    """Markdown rows for one cube size: throughput min/median, ratios with their spread."""
    n_indices = runs[0]["n_indices"]
    work = n_indices * t * NY * NX / 1e6  # M index-px per call
    lines = [
        f"t={t}: {n_indices} indices, cube {t}x{len(BANDS)}x{NY}x{NX} float32, "
        f"{len(runs)} repeats (one process each)",
        "",
        "| engine | cold s min / median | warm s min / median | warm M index-px/s (best) "
        "| warm x spyndex-numpy, median (min-max) | cold x spyndex-numpy, median (min-max) "
        "| warm % of write floor, median (min-max) | warm % of reused-output floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for engine, label in ENGINES.items():
        cold = [r["seconds"][engine][0] for r in runs]
        warm = [min(r["seconds"][engine][1:]) for r in runs]
        warm_ratio = [min(r["seconds"][BASELINE][1:]) / min(r["seconds"][engine][1:]) for r in runs]
        cold_ratio = [r["seconds"][BASELINE][0] / r["seconds"][engine][0] for r in runs]
        floor_pct = [
            100 * min(r["seconds"][FLOOR][1:]) / min(r["seconds"][engine][1:]) for r in runs
        ]
        reused_pct = [
            100 * min(r["seconds"][FLOOR_REUSED][1:]) / min(r["seconds"][engine][1:]) for r in runs
        ]
        cells = [
            label,
            "{:.3f} / {:.3f}".format(*_stats(cold)),
            "{:.3f} / {:.3f}".format(*_stats(warm)),
            f"{work / min(warm):,.0f}",
            _fmt_range(warm_ratio),
            _fmt_range(cold_ratio),
            _fmt_range(floor_pct, 0),
            _fmt_range(reused_pct, 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


FLOORS = {
    "compute-only": "floor: read + compute, nothing written",
    "compute-encode": "floor: read + compute + lz4 compression, nothing written",
    "plain-files": "floor: the output's bytes as plain files (no compute, no zarr)",
}


def streaming_table(args, base: list[dict[str, Any]] | None, default_codec: str) -> None:
    """Streaming rows: random cube per codec + floors, the large cube, the real cube per codec."""
    rows = [("random", args.stream_t, c, 2) for c in (*CODECS, *FLOORS)]
    rows.append(("random", args.big_t, default_codec, 1))
    if os.path.exists(REAL_CUBE):
        rows += [("real", 140, c, 5) for c in (*CODECS, *FLOORS)]
    else:
        print(f"(real-data rows skipped: {REAL_CUBE} not found)")
    reference = None
    if base:
        reference = statistics.median(min(r["seconds"][DEFAULT_ENGINE][1:]) for r in base)
    print(
        "| streaming zarr -> zarr | data | codec | cube (t, indices, y, x) | seconds min "
        "| M index-px/s | x in-memory default (warm median) | GB written (uncompressed) "
        "| compression ratio | CPU s user / system (best run) | peak memory (VmHWM) GB |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, t, codec, repeat in rows:
        print(f"streaming {kind} t={t} codec={codec} ...", file=sys.stderr, flush=True)
        cmd = ["--child", "streaming", "--t", str(t), "--codec", codec, "--data", kind]
        res = run_child([*cmd, "--child-repeat", str(repeat)], timeout=1800)
        label = FLOORS.get(codec, "ours" + (" (CLI default)" if codec == default_codec else ""))
        codec_cell = codec if codec in CODECS else "-"
        if "error" in res:
            print(f"| {label} | {kind} | {codec_cell} | t={t} | failed: {res['error'][:80]} |")
            continue
        best = min(res["seconds"])
        fastest = res["seconds"].index(best)
        cpu = f"{res['user_seconds'][fastest]:.2f} / {res['system_seconds'][fastest]:.2f}"
        shape = "x".join(str(v) for v in res["shape"])
        work = float(np.prod(res["shape"])) / 1e6
        ratio = "-"
        if reference is not None and kind == "random":
            ratio = f"{best / (reference * t / args.stream_t):.2f}"
        elif res.get("in_memory_warm_seconds"):
            ratio = f"{best / res['in_memory_warm_seconds']:.2f}"
        written = res["out_bytes"] / 1e9
        comp = "-"
        if codec in CODECS and res["out_bytes_on_disk"]:
            comp = f"{res['out_bytes'] / res['out_bytes_on_disk']:.2f}"
        print(
            f"| {label} | {kind} | {codec_cell} | {shape} | {best:.2f} | {work / best:,.0f} "
            f"| {ratio} | {written:.2f} | {comp} | {cpu} | {res['peak_rss_bytes'] / 1e9:.2f} |",
            flush=True,
        )
    print()
    print(
        "streaming: lazy open_zarr (chunks t=5) + compute_indices (default engine) + "
        "openeo_deepfeatures.io.write_zarr (zarr v3, 32 indices per chunk) with the codec "
        "(lz4: blosc lz4 + byte shuffle, level 5; zstd: level 3; none), fresh process per "
        "row, best of the runs in it; the input zarr is written beforehand (not timed). "
        "random: uniform reflectance (incompressible); real: the nrt_romania 10 m cube "
        "(../shared/data), cloud-masked reflectance of B02 B03 B04 B08. "
        "x in-memory: seconds over the in-memory default's warm median at the same t "
        "(scaled by t for other sizes); for the real cube, over the warm best of its in-memory "
        "compute_indices in the row's process. Peak memory: VmHWM of the row's process."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="t=10, 2 repeats, no streaming")
    parser.add_argument("--repeat", type=int, default=5, help="processes per cube size (>= 5)")
    parser.add_argument("--warm", type=int, default=2, help="warm rounds per process (>= 1)")
    parser.add_argument("--t", type=int, nargs="+", default=[10, 50], help="dates per cube")
    parser.add_argument(
        "--stream-t", type=int, default=50, help="dates of the per-codec streaming rows"
    )
    parser.add_argument(
        "--big-t", type=int, default=200, help="dates of the default-codec streaming row"
    )
    parser.add_argument("--no-streaming", action="store_true", help="skip the streaming rows")
    parser.add_argument(
        "--numpy-hugepage",
        action="store_true",
        help="keep numpy's transparent-huge-page hint for large arrays; by default every "
        "process runs with NUMPY_MADVISE_HUGEPAGE=0 (on VMs the hint can make first writes to "
        "fresh memory several times slower)",
    )
    parser.add_argument("--child", choices=["interleaved", "streaming"], help=argparse.SUPPRESS)
    parser.add_argument("--rotate", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--codec", default="lz4", help=argparse.SUPPRESS)
    parser.add_argument("--child-repeat", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--data", default="random", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "interleaved":
        result = interleaved_child(args.t[0], args.rotate, args.warm)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return
    if args.child == "streaming":
        result = streaming_child(args.t[0], args.codec, args.child_repeat, args.data)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return
    if args.quick:
        args.t, args.repeat, args.no_streaming = [10], min(args.repeat, 2), True
    elif args.repeat < 5:
        parser.error("--repeat must be >= 5 (use --quick for a smoke test)")
    if args.warm < 1:
        parser.error("--warm must be >= 1")
    if not args.numpy_hugepage:
        os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"  # inherited by every process

    from openeo_deepfeatures.io import INDICES_CODEC

    start = time.perf_counter()
    print(machine_line())
    print(versions_line())
    print(f"load average before the run: {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(check_agreement())
    print(flush=True)
    cpu0 = _machine_cpu()

    in_memory: dict[int, list[dict[str, Any]]] = {}
    for t in args.t:
        runs = []
        for k in range(args.repeat):
            print(f"interleaved t={t} repeat {k + 1}/{args.repeat} ...", file=sys.stderr)
            cmd = ["--child", "interleaved", "--t", str(t), "--rotate", str(k)]
            res = run_child([*cmd, "--warm", str(args.warm)], timeout=1800)
            if "error" in res:
                print(f"  FAILED: {res['error']}", file=sys.stderr)
                continue
            print(
                "  "
                + ", ".join(
                    f"{e} {res['seconds'][e][0]:.2f}/{min(res['seconds'][e][1:]):.2f} s"
                    for e in ENGINES
                ),
                file=sys.stderr,
                flush=True,
            )
            runs.append(res)
        if runs:
            in_memory[t] = runs
            print("\n".join(interleaved_table(t, runs)))
            print(flush=True)
        else:
            print(f"t={t}: every repeat failed\n")

    if not args.no_streaming:
        streaming_table(args, in_memory.get(args.stream_t), INDICES_CODEC)
    print(
        "cold: an engine's first call in its process; warm: the best of the next "
        f"{args.warm}. Ratios are per repeat (same process, interleaved), then median and "
        "range over the repeats. NUMPY_MADVISE_HUGEPAGE="
        + os.environ.get("NUMPY_MADVISE_HUGEPAGE", "<unset: numpy default>")
        + f". ours: compute_indices on a numpy-backed DataArray, default threads "
        f"({os.cpu_count()}); spyndex: computeKernel + computeIndex per constant set, "
        "one float32 array per band."
    )
    print(_other_load(cpu0))
    print(f"load average after the run: {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"total benchmark time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
