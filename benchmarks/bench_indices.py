"""Spectral-index benchmark: openeo-deepfeatures (numpy, dask, zarr streaming) against spyndex.

Workload: every index computable from the 11 Sentinel-2 L2A bands B01..B12 (no B09) on a
float32 reflectance cube (t, bands=11, y=256, x=256) of seeded uniform random values in
0.005..0.8. Each engine runs in a fresh subprocess, which reports its wall time for the
compute only (input creation is not timed) and its own peak RSS (``ru_maxrss``).

    python benchmarks/bench_indices.py            # full run: t=50 (+ streaming at t=200)
    python benchmarks/bench_indices.py --quick    # smoke test: t=10, no t=200 row
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
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

ENGINES = {
    "ours-numpy": "openeo-deepfeatures numpy",
    "ours-numpy-f32": "openeo-deepfeatures numpy, precision=float32",
    "ours-dask": "openeo-deepfeatures dask",
    "ours-zarr": "openeo-deepfeatures streaming zarr->zarr",
    "spyndex-numpy": "spyndex numpy",
    "spyndex-dask": "spyndex dask",
}
BASELINE = "spyndex-numpy"


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


# --------------------------------------------------------------------------- engines (child)


def _resolved():
    from openeo_deepfeatures.indices.resolve import resolve_indices

    return resolve_indices(None, BANDS)


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def timed(run, describe, repeat: int, before=None) -> dict[str, Any]:
    """Time ``run()`` ``repeat`` times (first: cold); each result is described, then dropped."""
    seconds, cpu, info = [], [], {}
    for _ in range(repeat):
        if before is not None:
            before()
        c0, t0 = _cpu(), time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - t0)
        c1 = _cpu()
        cpu.append((c1[0] - c0[0], c1[1] - c0[1]))
        info = describe(out)
        del out
    return {**info, "seconds": seconds, "cpu_user_sys": cpu}


def _describe_xr(out) -> dict[str, Any]:
    return {"n_indices": out.sizes["bands"], "out_shape": out.shape}


def _describe_np(out) -> dict[str, Any]:
    return {"n_indices": out.shape[0], "out_shape": out.shape, "out_dtype": str(out.dtype)}


def run_engine(engine: str, t: int, repeat: int) -> dict[str, Any]:
    """Run one engine; seconds cover the compute only, input creation is not timed."""
    import xarray as xr

    from openeo_deepfeatures.indices.compute import compute_indices
    from openeo_deepfeatures.io import write_zarr

    if engine == "ours-numpy":
        cube = as_dataarray(make_cube(t))
        return timed(lambda: compute_indices(cube), _describe_xr, repeat)

    if engine == "ours-numpy-f32":
        cube = as_dataarray(make_cube(t))
        return timed(lambda: compute_indices(cube, precision="float32"), _describe_xr, repeat)

    if engine == "ours-dask":
        cube = as_dataarray(make_cube(t)).chunk({"t": CHUNK_T, "bands": -1, "y": NY, "x": NX})
        return timed(lambda: compute_indices(cube).compute(), _describe_xr, repeat)

    if engine == "ours-zarr":
        tmp = tempfile.mkdtemp(prefix="bench_indices_")
        try:
            src, dst = os.path.join(tmp, "in.zarr"), os.path.join(tmp, "out.zarr")
            write_input_zarr(src, t)

            def run() -> str:
                # the package's streaming path: lazy input, bounded compute chunks, zarr v3
                # written atomically by write_zarr (default output chunks: 32 indices)
                cube = xr.open_zarr(src, chunks={"t": CHUNK_T})["reflectance"]
                write_zarr(compute_indices(cube), dst, overwrite=True)
                return dst

            def describe(path: str) -> dict[str, Any]:
                written = xr.open_zarr(path, consolidated=False)["spectral_indices"]
                if not np.isfinite(written.isel(t=-1, bands=0).values).any():
                    raise RuntimeError("output store holds no finite value")
                return {**_describe_xr(written), "out_bytes_on_disk": _du(path)}

            return timed(run, describe, repeat, before=lambda: shutil.rmtree(dst, True))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    if engine in ("spyndex-numpy", "spyndex-dask"):
        import dask.array as da

        groups = spyndex_groups(_resolved())
        cube = make_cube(t)
        if engine == "spyndex-numpy":
            bands = {b: np.ascontiguousarray(cube[:, i]) for i, b in enumerate(BANDS)}
            del cube
            result = timed(
                lambda: spyndex_compute(groups, bands, np.concatenate), _describe_np, repeat
            )
        else:
            bands = {
                b: da.from_array(np.ascontiguousarray(cube[:, i]), chunks=(CHUNK_T, NY, NX))
                for i, b in enumerate(BANDS)
            }
            del cube

            def run() -> np.ndarray:
                lazy = spyndex_compute(groups, bands, da.concatenate)
                with np.errstate(all="ignore"):
                    return lazy.compute()

            result = timed(run, _describe_np, repeat)
        return {**result, "spyndex_calls": len(groups)}

    raise ValueError(f"unknown engine {engine!r}")


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def child_main(engine: str, t: int, repeat: int) -> None:
    result = run_engine(engine, t, repeat)
    result["out_shape"] = list(result["out_shape"])
    # Linux reports ru_maxrss in KiB
    result["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(RESULT_MARK + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent


def run_child(engine: str, t: int, repeat: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", engine]
    cmd += ["--t", str(t), "--repeat", str(repeat)]
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
    """Small sample: our numpy engine against the spyndex harness in float64."""
    from openeo_deepfeatures.indices.compute import compute_indices

    cube = make_cube(2)[:, :, :64, :64].copy()
    ours = compute_indices(as_dataarray(cube), threads=1)
    groups = spyndex_groups(_resolved())
    bands = {b: cube[:, i].astype(np.float64) for i, b in enumerate(BANDS)}
    ref = spyndex_compute(groups, bands, np.concatenate)
    names = [n for g in groups for n in g.names]
    bad = []
    for k, name in enumerate(names):
        expected = np.where(np.isfinite(ref[k]), ref[k], np.nan)
        got = ours.sel(bands=name).values.astype(np.float64)
        if not np.allclose(got, expected, rtol=1e-4, atol=1e-6, equal_nan=True):
            bad.append(name)
    if set(names) != {str(b) for b in ours["bands"].values}:
        return "index lists differ between the engines!"
    msg = (
        f"{len(names) - len(bad)}/{len(names)} indices agree with spyndex (float64) within "
        f"rtol 1e-4 on a 2x11x64x64 sample; spyndex needs {len(groups)} computeIndex calls "
        "(constant sets)"
    )
    return msg + (f"; MISMATCH: {', '.join(bad)}" if bad else "")


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
        f"spyndex {spyndex.__version__}, openeo_deepfeatures {openeo_deepfeatures.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="t=10 and no t=200 row (smoke test)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="timed runs per engine in its process: the first (cold) gives the main columns, "
        "the best of the others the 'warm' columns; 1 disables them (default 2)",
    )
    parser.add_argument(
        "--numpy-hugepage",
        action="store_true",
        help="keep numpy's transparent-huge-page hint for large arrays; by default every row "
        "runs with NUMPY_MADVISE_HUGEPAGE=0, because on VMs the hint can make first writes to "
        "fresh memory several times slower and swamps the compute being compared",
    )
    parser.add_argument("--child", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--t", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.child:
        child_main(args.child, args.t, args.repeat)
        return
    if not args.numpy_hugepage:
        os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"  # inherited by every row's process

    t = 10 if args.quick else 50
    runs = [(e, t, args.repeat) for e in ENGINES]
    if not args.quick:
        # 4x the cube, to show that streaming memory does not grow; one run (the slowest row)
        runs.insert(3, ("ours-zarr", 200, 1))
    timeout = 300 if args.quick else 900

    start = time.perf_counter()
    print(machine_line())
    print(versions_line())
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (1 min)")
    print(check_agreement())
    print(flush=True)
    cpu0 = _machine_cpu()

    results = []
    for engine, tt, repeat in runs:
        print(f"running {ENGINES[engine]} t={tt} ...", file=sys.stderr, flush=True)
        res = run_child(engine, tt, repeat, timeout)
        results.append((engine, tt, res))
        if "error" in res:
            print(f"  FAILED: {res['error']}", file=sys.stderr, flush=True)
            continue
        if "out_bytes_on_disk" in res:
            gb = res["out_bytes_on_disk"] / 1e9
            print(f"  output store: {gb:.2f} GB on disk", file=sys.stderr, flush=True)
        for k, (sec, (user, system)) in enumerate(
            zip(res["seconds"], res["cpu_user_sys"], strict=True)
        ):
            label = "cold" if k == 0 else "warm"
            print(
                f"  {label}: {sec:.2f} s wall, CPU {user:.2f} s user + {system:.2f} s sys",
                file=sys.stderr,
                flush=True,
            )

    def throughput(res: dict, tt: int, seconds: float) -> float:
        return res["n_indices"] * tt * NY * NX / seconds / 1e6

    def cold(res: dict, tt: int) -> float:
        return throughput(res, tt, res["seconds"][0])

    def warm(res: dict, tt: int) -> float:
        return throughput(res, tt, min(res["seconds"][1:]))

    ok = [(e, tt, r) for e, tt, r in results if "error" not in r]
    base = next(((r, tt) for e, tt, r in ok if e == BASELINE), None)
    header = [
        "engine",
        "indices",
        "cube shape",
        "seconds",
        "M index-px/s",
        "peak RSS (GB)",
        "CPU user / sys s",
        "x spyndex-numpy",
    ]
    if args.repeat > 1:
        header += ["warm seconds", "warm M index-px/s", "warm x spyndex-numpy"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for engine, tt, res in results:
        shape = f"{tt}x{len(BANDS)}x{NY}x{NX}"
        if "error" in res:
            cells = [ENGINES[engine], "-", shape, "failed: " + res["error"][:80]]
            cells += ["-"] * (len(header) - len(cells))
        else:
            tp = cold(res, tt)
            cells = [
                ENGINES[engine],
                str(res["n_indices"]),
                shape,
                f"{res['seconds'][0]:.2f}",
                f"{tp:,.0f}",
                f"{res['max_rss_bytes'] / 1e9:.2f}",
                "{:.1f} / {:.1f}".format(*res["cpu_user_sys"][0]),
                f"{tp / cold(*base):.1f}" if base else "-",
            ]
            if args.repeat > 1 and len(res["seconds"]) == 1:
                cells += ["-"] * 3
            elif args.repeat > 1:
                wtp = warm(res, tt)
                cells += [
                    f"{min(res['seconds'][1:]):.2f}",
                    f"{wtp:,.0f}",
                    f"{wtp / warm(*base):.1f}" if base else "-",
                ]
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        "seconds: wall time of the compute only (input creation not timed), first run in a "
        f"fresh process; zarr rows: lazy open_zarr (chunks t={CHUNK_T}) + compute_indices + "
        "openeo_deepfeatures.io.write_zarr (zarr v3, 32 indices per chunk, default codecs). "
        "CPU: user and system seconds of the cold run (system time is mostly page faults "
        "on fresh memory, which are expensive on VMs)."
    )
    print(
        "NUMPY_MADVISE_HUGEPAGE="
        + os.environ.get("NUMPY_MADVISE_HUGEPAGE", "<unset: numpy default, huge pages on>")
        + " for every row (--numpy-hugepage keeps numpy's default)."
    )
    if args.repeat > 1:
        print(
            f"warm: best of {args.repeat - 1} further run(s) in the same process (imports, "
            "caches and recently freed memory warm). Peak RSS: ru_maxrss of the row's process "
            "(input cube included)."
        )
    else:
        print("Peak RSS: ru_maxrss of the row's process (input cube included).")
    print(_other_load(cpu0))
    print(f"total benchmark time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
