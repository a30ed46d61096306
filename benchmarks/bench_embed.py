"""Dense-encoder throughput on CPU: output pixel-dates per second by tile size and threads.

Workload: the embedded demo cube (Romania, 20 m) -> preprocess -> the model's spectral indices,
its first ``--dates`` dates, mirrored in y and x to ``--size`` px (the demo is 50 x 50 px, so
that tiles of 64 and 128 px differ). ``embed`` runs with the synchronous dask scheduler, one
tile at a time, so ``threads`` (onnxruntime intra-op threads) is the only parallelism.

    python benchmarks/bench_embed.py                   # default model, else a throwaway one
    python benchmarks/bench_embed.py --model model.onnx

Without ``--model`` and without a default model shipped, a dense model of the default
architecture is trained for two batches and exported to a temporary folder (needs the
``train`` extra); its weights do not change the speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.encoder import load_encoder
from openeo_deepfeatures.encoder.inference import embed
from openeo_deepfeatures.errors import ProcessParameterMissing

TILES = (32, 64, 128)
THREADS = (1, 2)


def throwaway_model(folder: Path) -> Path:
    """Two training batches of the default dense architecture on the demo cube, exported."""
    from openeo_deepfeatures.training import export, make_training_cube, train

    channels = ["NDVI", "NDMI", "NDWI", "EVI", "kNDVI"]
    si = odf.compute_indices(odf.preprocess_s2(odf.load_demo_cube()), indices=channels).load()
    cube = folder / "tiles.zarr"
    make_training_cube(
        si, cube, kind="tile", size=(12, 16, 16), n_samples=16, seed=0, block=(16, 16)
    )
    run = train(
        {
            "data": {"cube": str(cube)},
            "model": {"family": "dense"},
            "train": {"epochs": 1, "batch_size": 2, "max_batches_per_epoch": 2, "progress": False},
            "output": {"dir": str(folder / "run"), "name": "bench-dense"},
        }
    )
    return export(run.checkpoint, folder / "bench-dense.onnx").path


def workload(channels, dates: int, size: int):
    """The demo SI cube's first ``dates`` dates, mirrored (symmetric) to ``size`` x ``size`` px."""
    si = odf.compute_indices(odf.preprocess_s2(odf.load_demo_cube()), indices=list(channels))
    si = si.isel(t=slice(0, dates), y=slice(0, size), x=slice(0, size)).load()
    pad = ((0, 0), (0, 0), (0, size - si.sizes["y"]), (0, size - si.sizes["x"]))
    values = np.pad(si.values, pad, mode="symmetric")
    step_y, step_x = float(si.y[1] - si.y[0]), float(si.x[1] - si.x[0])
    coords = {
        "t": si.t,
        "bands": si.bands,
        "y": float(si.y[0]) + step_y * np.arange(size),
        "x": float(si.x[0]) + step_x * np.arange(size),
        "spatial_ref": si.spatial_ref,
    }
    return xr.DataArray(values, dims=si.dims, coords=coords, name=si.name, attrs=si.attrs)


def tile_chunks(n: int, tile: int, halo: int) -> list[int]:
    """Tile sizes along one axis as ``embed`` cuts them (a remainder < halo joins the last)."""
    chunks = [tile] * (n // tile) + ([n % tile] if n % tile else [])
    if len(chunks) > 1 and chunks[-1] < halo:
        chunks[-2] += chunks.pop()
    return chunks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="dense ONNX encoder (default: the shipped model)")
    parser.add_argument("--dates", type=int, default=48, help="dates of the demo cube (48)")
    parser.add_argument("--size", type=int, default=128, help="pixels in y and x (128)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            try:
                path = load_encoder().path
            except ProcessParameterMissing:
                print("no default model shipped: training a throwaway one...", file=sys.stderr)
                path = throwaway_model(Path(tmp))
        encoder = load_encoder(path)
        c = encoder.contract
        if c.family != "dense":
            parser.error(f"{path} is a {c.family} model; this benchmark measures dense models")
        cube = workload(c.channels, args.dates, args.size)
        nt, _, ny, nx = cube.shape
        out_px = nt * ny * nx

        import onnxruntime

        print(
            f"# bench_embed: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"onnxruntime {onnxruntime.__version__}"
        )
        print(
            f"model {Path(path).name} ({c.name}, {len(c.channels)} channels -> {c.k} "
            f"features, halo {c.spatial_radius} px / {c.temporal_radius} dates), "
            f"sha256 {encoder.sha256[:12]}"
        )
        print(
            f"cube (t, bands, y, x) = {tuple(cube.shape)}: demo SI cube, first {nt} dates, "
            f"mirrored to {ny} x {nx} px; {out_px:,} output pixel-dates; t in one tile\n"
        )
        print("| tile px | threads | tiles | computed / output px-dates | seconds | k px-dates/s |")
        print("|---:|---:|---:|---:|---:|---:|")
        warm = cube.isel(t=slice(0, c.temporal_window), y=slice(0, 24), x=slice(0, 24))
        for threads in THREADS:
            embed(warm, encoder, threads=threads, tile=24)  # session + first-run setup
            for tile in TILES:
                start = time.perf_counter()
                embed(cube, encoder, threads=threads, tile={"t": None, "y": tile, "x": tile})
                seconds = time.perf_counter() - start
                cy, cx = (tile_chunks(n, tile, c.spatial_radius) for n in (ny, nx))
                tiles = len(cy) * len(cx)
                computed = (ny + 2 * c.spatial_radius * (len(cy) - 1)) * (
                    nx + 2 * c.spatial_radius * (len(cx) - 1)
                )
                ratio = computed / (ny * nx)
                print(
                    f"| {tile} | {threads} | {tiles} | {ratio:.2f} | {seconds:.2f} | "
                    f"{out_px / seconds / 1e3:.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
