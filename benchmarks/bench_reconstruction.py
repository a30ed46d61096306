"""Reconstruction of held-out data: the default encoder against PCA and mean baselines.

    python benchmarks/bench_reconstruction.py                 # the shipped default encoder
    python benchmarks/bench_reconstruction.py --model s2-10m  # the shipped 10 m encoder
    python benchmarks/bench_reconstruction.py --per-channel   # and R2 / MAE of every channel
    python benchmarks/bench_reconstruction.py --cube build/default-encoder/training.zarr

Held-out data: the ``test`` split of the default model's training cube (whole split blocks of
35 dates x 25 x 25 px of the demo cube that neither training nor early stopping saw). Unless
``--cube`` is given, the cube is made again with the very command of
``scripts/make_default_encoder.py`` and its content sha256 is compared with the one recorded in
the model's contract.

Methods, all in the contract's normalised units (robust q02..q98 scaling, clipped to +-4):

- ``dense encoder``: the shipped ONNX encoder (onnxruntime) on each test tile, then the decoder
  of the same training run (``benchmarks/default_encoder/decoder.onnx``, onnxruntime; its
  metadata names the encoder's sha256). k features per pixel-date.
- ``PCA-k``: principal components fitted on the train split's pixel-dates (same k; also 2k for
  scale), applied to each test pixel-date (missing channels as the encoder sees them: 0).
- ``per-pixel temporal mean``: each test pixel's mean over the tile's clear dates (it uses the
  test values themselves: C numbers per pixel instead of k per pixel-date).
- ``global train mean``: the train split's mean of each channel.

Scores use every finite test entry: per channel the MAE and R2 = 1 - SSE / SST (SST about the
channel's test mean); the table gives their mean over channels, the median and the worst R2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DECODER = ROOT / "benchmarks" / "default_encoder" / "decoder.onnx"
#: The decoder of each shipped model (same training run as the encoder).
DECODERS = {
    None: DECODER,
    "default": DECODER,
    "s2-10m": ROOT / "benchmarks" / "s2_10m_encoder" / "decoder.onnx",
}
MAKER = ROOT / "scripts" / "make_default_encoder.py"


def _maker():
    spec = importlib.util.spec_from_file_location("make_default_encoder", MAKER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@dataclass
class Split:
    raw: np.ndarray  # (n, T, C, H, W) float32, NaN where missing
    x_n: np.ndarray  # normalised, NaN -> 0
    valid: np.ndarray  # (n, T, 1, H, W)
    finite: np.ndarray  # (n, T, C, H, W) bool
    day: np.ndarray
    doy: np.ndarray


def load_split(ds, contract, name: str) -> Split:
    from openeo_deepfeatures.encoder import time_inputs

    channels = [str(c) for c in ds["channel"].values.tolist()]
    order = [channels.index(c) for c in contract.channels]
    mine = np.array([str(s) for s in ds["split"].values.tolist()]) == name
    raw = np.asarray(ds["x"].values[mine], dtype=np.float32)[:, :, order]
    x_n, valid = contract.normalise(raw, axis=2)
    day, doy = time_inputs(np.asarray(ds["day"].values[mine]))
    return Split(raw, x_n, valid, np.isfinite(raw), day, doy)


def scores(rec: np.ndarray, part: Split) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (MAE, R2) over the finite entries of ``part``."""
    c = part.raw.shape[2]
    target = np.moveaxis(part.x_n, 2, 0).reshape(c, -1).astype(np.float64)
    pred = np.moveaxis(rec, 2, 0).reshape(c, -1).astype(np.float64)
    mask = np.moveaxis(part.finite, 2, 0).reshape(c, -1)
    mae, r2 = np.empty(c), np.empty(c)
    for i in range(c):
        t, p = target[i, mask[i]], pred[i, mask[i]]
        mae[i] = np.abs(p - t).mean()
        sst = ((t - t.mean()) ** 2).sum()
        r2[i] = 1.0 - ((p - t) ** 2).sum() / sst if sst > 0 else np.nan
    return mae, r2


def dense(encoder, decoder, part: Split) -> np.ndarray:
    out = np.empty_like(part.x_n)
    for i in range(part.x_n.shape[0]):
        s = slice(i, i + 1)
        z = encoder.run(part.x_n[s], part.valid[s], part.day[s], part.doy[s])
        out[s] = decoder.run(["reconstruction"], {"features": z})[0]
    return out


def fit_pca(train: Split, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-k principal axes of the train pixel-dates whose channels are all finite."""
    c = train.raw.shape[2]
    rows = np.moveaxis(train.x_n, 2, -1).reshape(-1, c).astype(np.float64)
    rows = rows[np.moveaxis(train.finite, 2, -1).reshape(-1, c).all(axis=1)]
    mean = rows.mean(axis=0)
    centred = rows - mean
    cov = centred.T @ centred / (len(rows) - 1)
    _, vectors = np.linalg.eigh(cov)  # ascending eigenvalues
    return mean, vectors[:, ::-1][:, :k]


def pca(model: tuple[np.ndarray, np.ndarray], part: Split) -> np.ndarray:
    mean, axes = model
    x = np.moveaxis(part.x_n, 2, -1).astype(np.float64)
    rec = (x - mean) @ axes @ axes.T + mean
    return np.moveaxis(rec, -1, 2).astype(np.float32)


def per_pixel_mean(train_mean: np.ndarray, part: Split) -> np.ndarray:
    values = np.where(part.finite, part.x_n, 0.0)
    count = part.finite.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = values.sum(axis=1, keepdims=True) / count
    mean = np.where(count > 0, mean, train_mean[None, None, :, None, None])
    return np.broadcast_to(mean, part.x_n.shape).astype(np.float32)


def channel_means(train: Split) -> np.ndarray:
    c = train.raw.shape[2]
    values = np.moveaxis(train.x_n, 2, 0).reshape(c, -1)
    mask = np.moveaxis(train.finite, 2, 0).reshape(c, -1)
    return np.array([values[i, mask[i]].mean() for i in range(c)])


def training_cube(contract, cube: str | None, workdir: str) -> Path:
    from openeo_deepfeatures.cli import main as cli

    if cube is not None:
        return Path(cube)
    maker = _maker()
    path = Path(workdir) / "training.zarr"
    argv = [*maker.training_cube_args(list(contract.channels), path), "--quiet"]
    print("training cube: deepfeatures " + " ".join(argv[:14]) + " ...", file=sys.stderr)
    cwd = os.getcwd()
    os.chdir(ROOT)  # the command names the demo cube relative to the repository root
    try:
        if cli(argv) != 0:
            raise SystemExit("deepfeatures training-cube failed")
    finally:
        os.chdir(cwd)
    return path


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    import openeo_deepfeatures
    from openeo_deepfeatures.encoder import load_encoder
    from openeo_deepfeatures.training import open_training_cube, training_cube_provenance

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", help="ONNX encoder or shipped model name (default: the shipped default encoder)"
    )
    parser.add_argument("--decoder", help="its decoder (ONNX; default: the shipped model's)")
    parser.add_argument("--cube", help="training cube to take the held-out split from")
    parser.add_argument("--split", default="test", choices=("test", "validation"))
    parser.add_argument("--per-channel", action="store_true", help="also a per-channel table")
    args = parser.parse_args(argv)

    encoder = load_encoder(args.model)
    contract = encoder.contract
    if args.decoder is None:
        if args.model not in DECODERS:
            raise SystemExit(f"--decoder is needed for the model {args.model}")
        args.decoder = str(DECODERS[args.model])
    decoder = ort.InferenceSession(args.decoder, providers=["CPUExecutionProvider"])
    meta = decoder.get_modelmeta().custom_metadata_map
    if json.loads(meta.get("decoder_of_sha256", "null")) != encoder.sha256:
        raise SystemExit(f"{args.decoder} is not the decoder of {encoder.path}")

    with tempfile.TemporaryDirectory() as tmp:
        path = training_cube(contract, args.cube, tmp)
        ds = open_training_cube(path)
        info = training_cube_provenance(ds)
        same_cube = info["content_sha256"] == contract.training["data_sha256"]
        train, held_out = load_split(ds, contract, "train"), load_split(ds, contract, args.split)

    k = contract.k
    rows: list[tuple[str, str, float, np.ndarray, np.ndarray]] = []

    def measure(name: str, latent: str, fn) -> None:
        t0 = time.perf_counter()
        rec = fn()
        seconds = time.perf_counter() - t0
        mae, r2 = scores(rec, held_out)
        rows.append((name, latent, seconds, mae, r2))
        print(f"  {name}: {seconds:.1f} s", file=sys.stderr)

    measure(
        f"dense encoder ({encoder.path.name})",
        f"{k} per pixel-date",
        lambda: dense(encoder, decoder, held_out),
    )
    for n in (k, 2 * k):
        measure(
            f"PCA-{n} (fit on train)",
            f"{n} per pixel-date",
            lambda n=n: pca(fit_pca(train, n), held_out),
        )
    means = channel_means(train)
    measure(
        "per-pixel temporal mean",
        f"{len(contract.channels)} per pixel",
        lambda: per_pixel_mean(means, held_out),
    )
    measure(
        "global train mean",
        "0",
        lambda: np.broadcast_to(means[None, None, :, None, None], held_out.x_n.shape),
    )

    n_tiles, n_t, n_c, n_y, n_x = held_out.raw.shape
    print(f"# Reconstruction of held-out data ({args.split} split)\n")
    print(
        f"openeo-deepfeatures {openeo_deepfeatures.__version__}, onnxruntime {ort.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"model {encoder.path.name} ({encoder.path.stat().st_size / 1024:.0f} KiB, sha256 "
        f"{encoder.sha256[:12]}...), {n_c} channels -> {k} features; "
        f"best epoch {contract.training.get('best_epoch')} of {contract.training.get('epochs')}"
    )
    print(
        f"held-out: {n_tiles} {args.split} tiles of {n_t} dates x {n_y} x {n_x} px "
        f"({int(held_out.finite.sum()):,} finite values); training cube sha256 "
        f"{'matches' if same_cube else 'DIFFERS FROM'} the model's training provenance; "
        f"PCA fitted on {train.raw.shape[0]} train tiles\n"
    )
    print(
        "| method | latent values | mean R2 | median R2 | worst R2 (channel) "
        "| normalised MAE | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, latent, seconds, mae, r2 in rows:
        worst = int(np.nanargmin(r2))
        print(
            f"| {name} | {latent} | {np.nanmean(r2):.3f} | {np.nanmedian(r2):.3f} | "
            f"{r2[worst]:.3f} ({contract.channels[worst]}) | {mae.mean():.4f} | {seconds:.1f} |"
        )
    _, _, _, dense_mae, dense_r2 = rows[0]
    _, _, _, pca_mae, pca_r2 = rows[1]
    print(
        f"\n{rows[0][0]} vs PCA-{k}: higher R2 on {int((dense_r2 > pca_r2).sum())} and lower "
        f"MAE on {int((dense_mae < pca_mae).sum())} of {n_c} channels."
    )
    if args.per_channel:
        print("\n| channel | " + " | ".join(f"R2 {r[0].split(' (')[0]}" for r in rows) + " |")
        print("|---|" + "---|" * len(rows))
        for i, name in enumerate(contract.channels):
            print(f"| {name} | " + " | ".join(f"{r[4][i]:.3f}" for r in rows) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
