"""Feature cubes: dense inference against a sliding-window run, and streaming memory.

Two tables, measured in one run:

1. **Dense vs sliding window, same receptive field.** The default (dense) model computes every
   output pixel-date of a tile in one pass. A sliding-window run, as the DeepFeatures seed
   project does it, runs the same model once per output pixel-date on a window of exactly its
   receptive field (``2 spatial_radius + 1`` px squared, ``2 temporal_radius + 1`` dates) and
   keeps the centre. Both give the same features (checked on the sampled pixel-dates); the
   table gives output pixel-dates per second, CPU seconds and multiply-accumulates (MACs,
   counted from the ONNX graph with onnx shape inference) per output pixel-date.
2. **Streaming.** ``feature_cube`` + ``write_feature_cube`` from a zarr of Sentinel-2 DN to a
   zarr of features, for the demo cube and for cubes 10 times its size (the demo mirrored to
   5 x 2 tiles of it; or repeated 10 times in time), each in a fresh process with the same
   tile size, once with the default allocator settings and once with
   ``DEEPFEATURES_RELEASE_MEMORY=1`` (glibc's mmap threshold fixed at 1 MiB, as the CLI's
   ``--release-memory`` does); peak RSS is the process's ``VmHWM``. The default tile (20 px) cuts the demo's
   50 x 50 px into 20 + 20 + 10, so that the demo, too, has a tile with a halo on all four
   sides: the largest task of any cube. With ``--tile 32`` the demo has none (32 + 18) and
   the larger cubes' tiles hold (32 + 16)^2 / (32 + 8)^2 = 1.44x the demo's largest.

    python benchmarks/bench_feature_cube.py             # both tables (about 7 minutes)
    python benchmarks/bench_feature_cube.py --windows 300 --dates 32 --tile 32
    python benchmarks/bench_feature_cube.py --skip-dense  # the streaming table only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.encoder import load_encoder
from openeo_deepfeatures.encoder.inference import _chunks as tile_chunks
from openeo_deepfeatures.encoder.inference import dense_features, embed
from openeo_deepfeatures.encoder.loader import get_session
from openeo_deepfeatures.io import open_cube, write_zarr
from openeo_deepfeatures.memory import RELEASE_MEMORY_ENV

#: Tile of the streaming rows (``y`` and ``x``: ``--tile``).
STREAM_TILE = {"t": 64, "y": 20, "x": 20}


# --------------------------------------------------------------------------- MACs


def conv_macs(model_path: Path, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of the Conv/ConvTranspose/MatMul/Gemm nodes for input ``shapes``."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(model_path))
    for inp in model.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, n in zip(dims, shapes[inp.name], strict=True):
                d.ClearField("dim_param")
                d.dim_value = int(n)
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    known = {}
    for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = [
            d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim
        ]
        known[v.name] = dims
    weights = {w.name: list(w.dims) for w in inferred.graph.initializer}
    total = 0
    for node in inferred.graph.node:
        out = known.get(node.output[0])
        if not out or None in out:
            if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
                raise RuntimeError(f"no shape for {node.op_type} output {node.output[0]}")
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            w = weights.get(node.input[1]) or known.get(node.input[1])
            total += int(np.prod(out)) * int(np.prod(w[1:]))  # (C_in / groups) x kernel
        elif node.op_type in ("MatMul", "Gemm"):
            a = known.get(node.input[0]) or weights.get(node.input[0])
            total += int(np.prod(out)) * int(a[-1])
    return total


# --------------------------------------------------------------------------- table 1


def si_cube(channels, dates: int) -> xr.DataArray:
    cube = odf.preprocess_s2(odf.load_demo_cube().isel(t=slice(0, dates)))
    return odf.compute_indices(cube, list(channels)).load()


def dense_vs_windows(dates: int, n_windows: int, seed: int) -> list[dict]:
    enc = load_encoder()
    c = enc.contract
    si = si_cube(c.channels, dates)
    nt, _, ny, nx = si.shape
    rs, rt = c.spatial_radius, c.temporal_radius
    side, tw = 2 * rs + 1, 2 * rt + 1
    session = get_session(enc.path, enc.sha256, None, None)
    x = si.sel(bands=list(c.channels)).values.astype(np.float32)
    days = (si["t"].values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")

    # dense: the whole (t, y, x) block in one pass, as embed runs a tile
    embed(si.isel(t=slice(0, tw), y=slice(0, side), x=slice(0, side)), enc)  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    dense = embed(si, enc, tile={"t": None, "y": 64, "x": 64})
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    dense = dense.values
    n_out = nt * ny * nx
    macs_dense = conv_macs(enc.path, _shapes(c, nt, ny, nx)) / n_out

    # sliding windows: one pass per output pixel-date over its receptive field (interior
    # pixel-dates, so each window is whole), centre output kept
    rng = np.random.default_rng(seed)
    picks = np.stack(
        [
            rng.integers(rt, nt - rt, n_windows),
            rng.integers(rs, ny - rs, n_windows),
            rng.integers(rs, nx - rs, n_windows),
        ],
        axis=1,
    )
    dense_features(c, session, x[:tw, :, :side, :side], days[:tw])  # warm-up
    got = np.empty((n_windows, c.k), dtype=np.float32)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    for i, (t, yy, xx) in enumerate(picks):
        window = x[t - rt : t + rt + 1, :, yy - rs : yy + rs + 1, xx - rs : xx + rs + 1]
        out = dense_features(c, session, window, days[t - rt : t + rt + 1])
        got[i] = out[rt, :, rs, rs]
    wall_w, cpu_w = time.perf_counter() - wall1, time.process_time() - cpu1
    expected = dense[picks[:, 0], :, picks[:, 1], picks[:, 2]]
    diff = float(np.abs(got - expected).max())
    macs_window = conv_macs(enc.path, _shapes(c, tw, side, side))
    return [
        {
            "run": f"dense, one pass over ({nt} dates, {ny} x {nx} px)",
            "outputs": n_out,
            "seconds": wall,
            "per_s": n_out / wall,
            "cpu_us": cpu / n_out * 1e6,
            "macs": macs_dense,
            "diff": None,
        },
        {
            "run": f"sliding window ({tw} dates, {side} x {side} px) per output, {n_windows} sampled",
            "outputs": n_windows,
            "seconds": wall_w,
            "per_s": n_windows / wall_w,
            "cpu_us": cpu_w / n_windows * 1e6,
            "macs": macs_window,
            "diff": diff,
        },
    ]


def _shapes(c, t: int, y: int, x: int) -> dict[str, tuple[int, ...]]:
    return {
        "x": (1, t, len(c.channels), y, x),
        "valid": (1, t, 1, y, x),
        "day": (1, t),
        "doy": (1, t),
    }


# --------------------------------------------------------------------------- table 2


def write_input(path: Path, reps_y: int, reps_x: int, reps_t: int = 1) -> tuple[int, ...]:
    """The demo DN cube mirrored to ``reps_y`` x ``reps_x`` tiles of it, and repeated
    ``reps_t`` times in time (each copy after the previous one), as zarr."""
    demo = odf.load_demo_cube()
    values = demo.values
    for axis, reps in ((0, reps_t), (2, reps_y), (3, reps_x)):
        parts = [values if k % 2 == 0 else np.flip(values, axis) for k in range(reps)]
        values = np.concatenate(parts, axis=axis)
    t = demo.t.values
    span = t[-1] - t[0] + np.timedelta64(5, "D")
    if reps_t > 1:  # mirrored copies keep the dates ascending
        t = np.concatenate([t + k * span for k in range(reps_t)])
    step_y = float(demo.y[1] - demo.y[0])
    step_x = float(demo.x[1] - demo.x[0])
    cube = xr.DataArray(
        values,
        dims=demo.dims,
        coords={
            "t": t,
            "bands": demo.bands,
            "y": float(demo.y[0]) + step_y * np.arange(values.shape[2]),
            "x": float(demo.x[0]) + step_x * np.arange(values.shape[3]),
            "spatial_ref": demo.spatial_ref,
        },
        name="s2",
        attrs=dict(demo.attrs),
    )
    write_zarr(cube.chunk({"t": 64, "y": 50, "x": 50}), path, overwrite=True)
    return tuple(values.shape)


def peak_rss_kb() -> int:
    """This process's peak resident memory (kB): ``VmHWM``, which, unlike ``ru_maxrss``,
    does not carry over the parent's memory through fork + exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def stream_child(source: str, target: str, tile: int) -> None:
    """Child process: zarr of DN -> feature cube zarr; prints a JSON line."""
    from openeo_deepfeatures.features import feature_cube, write_feature_cube

    base = peak_rss_kb()
    cube = open_cube(source, chunks={})
    start = time.perf_counter()
    features = feature_cube(cube, tile={"t": STREAM_TILE["t"], "y": tile, "x": tile}, threads=1)
    write_feature_cube(features, target, quicklook_png=False)
    seconds = time.perf_counter() - start
    peak = peak_rss_kb()
    nt, _, ny, nx = features.shape
    print(json.dumps({"peak_kb": peak, "base_kb": base, "seconds": seconds, "out": nt * ny * nx}))


def stream_once(src: Path, dst: Path, tile: int, release_memory: bool) -> dict:
    """One streaming run in a fresh process: default allocator settings, or the opt-in."""
    env = {k: v for k, v in os.environ.items() if k != RELEASE_MEMORY_ENV}
    if release_memory:
        env[RELEASE_MEMORY_ENV] = "1"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(src), str(dst), str(tile)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def streaming(folder: Path, tile: int) -> list[dict]:
    rows = []
    cubes = (
        ("demo", (1, 1, 1)),
        ("10x demo: 10x the area", (2, 5, 1)),
        ("10x demo: 10x the dates", (1, 1, 10)),
    )
    for label, reps in cubes:
        tag = "x".join(map(str, reps))
        src = folder / f"in-{tag}.zarr"
        shape = write_input(src, *reps)
        default = stream_once(src, folder / f"features-{tag}.zarr", tile, release_memory=False)
        opt_in = stream_once(src, folder / f"features-{tag}-r.zarr", tile, release_memory=True)
        nbytes = int(np.prod(shape)) * 2
        rows.append(
            {
                "cube": label,
                "shape": shape,
                "nbytes": nbytes,
                **default,
                "peak_release_kb": opt_in["peak_kb"],
                "seconds_release": opt_in["seconds"],
            }
        )
    return rows


# --------------------------------------------------------------------------- main


def dense_table(args: argparse.Namespace) -> None:
    rows = dense_vs_windows(args.dates, args.windows, args.seed)
    print(
        "| run | output px-dates | seconds | px-dates/s | CPU µs per px-date | MMAC per px-date |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['run']} | {r['outputs']:,} | {r['seconds']:.2f} | {r['per_s']:,.0f} | "
            f"{r['cpu_us']:,.1f} | {r['macs'] / 1e6:,.3f} |"
        )
    dense, window = rows
    print(
        f"\ndense is {window['cpu_us'] / dense['cpu_us']:,.0f}x cheaper in CPU time and "
        f"{window['macs'] / dense['macs']:,.0f}x in MACs per output pixel-date; "
        f"{dense['per_s'] / window['per_s']:,.0f}x the throughput. Sliding-window features "
        f"equal the dense ones to {window['diff']:.1e} (max abs) on the sampled pixel-dates."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dates", type=int, default=48, help="dates for table 1 (48)")
    parser.add_argument("--windows", type=int, default=500, help="sampled windows (500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-streaming", action="store_true")
    parser.add_argument("--skip-dense", action="store_true", help="the streaming table only")
    parser.add_argument(
        "--tile",
        type=int,
        default=STREAM_TILE["y"],
        help=f"streaming tile in px ({STREAM_TILE['y']})",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        source, target, tile = args.child
        stream_child(source, target, int(tile))
        return 0

    import onnxruntime

    enc = load_encoder()
    c = enc.contract
    print(
        f"# bench_feature_cube: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"onnxruntime {onnxruntime.__version__}, providers {onnxruntime.get_available_providers()}"
    )
    print(
        f"model {enc.path.name} ({c.name}: {len(c.channels)} channels -> {c.k} features, "
        f"receptive field {2 * c.spatial_radius + 1} x {2 * c.spatial_radius + 1} px x "
        f"{2 * c.temporal_radius + 1} dates), sha256 {enc.sha256[:12]}\n"
    )
    if not args.skip_dense:
        dense_table(args)
    if args.skip_streaming:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stream = streaming(Path(tmp), args.tile)
    print(
        f"\nStreaming zarr -> feature_cube -> zarr, tile {args.tile} px x "
        f"{STREAM_TILE['t']} dates, dask threaded "
        "scheduler, one onnxruntime thread per task, fresh process per row:\n"
    )
    print(
        "| cube | (t, bands, y, x) | input DN MB | seconds | px-dates/s | peak RSS MB | "
        "peak RSS MB, --release-memory | RSS at start MB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in stream:
        print(
            f"| {r['cube']} | {r['shape']} | {r['nbytes'] / 2**20:,.0f} | {r['seconds']:.1f} | "
            f"{r['out'] / r['seconds']:,.0f} | {r['peak_kb'] / 1024:,.0f} | "
            f"{r['peak_release_kb'] / 1024:,.0f} | {r['base_kb'] / 1024:,.0f} |"
        )
    print(
        "\n(seconds and px-dates/s: default settings; with --release-memory: "
        + ", ".join(f"{r['seconds_release']:.1f} s" for r in stream)
        + ")"
    )
    for r in stream[1:]:
        ratio = r["peak_kb"] / stream[0]["peak_kb"]
        ratio_r = r["peak_release_kb"] / stream[0]["peak_release_kb"]
        print(
            f"\npeak RSS of the {r['cube']} / the demo's: {ratio:.2f} "
            f"({ratio_r:.2f} with --release-memory)",
            end="",
        )
    side = stream[0]["shape"][2]
    if len(tile_chunks(side, args.tile, c.spatial_radius)) >= 3:
        print(
            f"\n(with {args.tile} px tiles the demo's {side} px hold a tile with a halo on all "
            "four sides, as large as any tile of a larger cube: the peak is set by the tile.)"
        )
    else:
        print(
            f"\n(with {args.tile} px tiles the demo's {side} px have a halo on at most two sides "
            "of each tile, the larger cubes' inner tiles on all four: their largest task is "
            "larger than the demo's.)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
