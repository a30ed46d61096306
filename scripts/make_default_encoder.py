"""Make the encoders shipped in ``openeo_deepfeatures/data/encoder/`` (seeded, CPU).

Two models, one recipe (``--model``):

- ``default``: the six bands of the demo cube, B02, B03, B04, B08, B8A, B11 -> ``default.onnx``;
- ``s2-10m``: the four 10 m bands every openEO Sentinel-2 cube has, B02, B03, B04, B08 ->
  ``s2_10m.onnx`` (for cubes without B8A/B11).

Runs the project's own commands on the embedded demo cube and prints each one before it runs:

1. choose the channels: every index computable from the model's reflectance bands
   (``odf.list_indices(bands=...)``) that is numerically sane on the demo, i.e. finite on
   at least ``MIN_FINITE`` of the clear pixel-dates and not constant (its q02..q98 range is not
   empty); the dropped ones are printed with the reason;
2. ``deepfeatures training-cube`` (tiles of 16 dates x 24 x 24 px, split blocks of
   35 dates x 25 x 25 px: held-out blocks are other places *and* other dates);
3. ``deepfeatures train configs/default_dense.toml``;
4. ``deepfeatures export ... -o openeo_deepfeatures/data/encoder/default.onnx`` (writes
   ``default.stac.json`` beside it);
5. the decoder of the same checkpoint to ``benchmarks/default_encoder/decoder.onnx`` (it is not
   part of the package: ``benchmarks/bench_reconstruction.py`` uses it to measure reconstruction
   of held-out data), checked end to end against torch on real test tiles.

    nice -n 10 python scripts/make_default_encoder.py          # everything (~10-15 min, 2 cores)
    nice -n 10 python scripts/make_default_encoder.py --model s2-10m
    python scripts/make_default_encoder.py --channels-only     # step 1 only

Intermediate files go to ``build/<model>-encoder/`` (git-ignored). Torch, onnx and onnxscript
are needed (``pip install -e '.[train]'``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path("openeo_deepfeatures/data/demo_s2_romania.nc")
DEMO_BANDS = ("B02", "B03", "B04", "B08", "B8A", "B11")


@dataclass(frozen=True)
class Recipe:
    """What one shipped model is made from and where its files go."""

    bands: tuple[str, ...]
    work: Path  # intermediate files (git-ignored)
    config: Path  # `deepfeatures train` config; its [data] cube is `work / training.zarr`
    model: Path
    decoder: Path

    @property
    def cube(self) -> Path:
        return self.work / "training.zarr"

    @property
    def checkpoint(self) -> Path:
        return self.work / "run" / "checkpoint.pt"


RECIPES = {
    "default": Recipe(
        DEMO_BANDS,
        Path("build/default-encoder"),
        Path("configs/default_dense.toml"),
        Path("openeo_deepfeatures/data/encoder/default.onnx"),
        Path("benchmarks/default_encoder/decoder.onnx"),
    ),
    "s2-10m": Recipe(
        ("B02", "B03", "B04", "B08"),
        Path("build/s2-10m-encoder"),
        Path("configs/s2_10m_dense.toml"),
        Path("openeo_deepfeatures/data/encoder/s2_10m.onnx"),
        Path("benchmarks/s2_10m_encoder/decoder.onnx"),
    ),
}
MIN_FINITE = 0.95
SEED = 0
#: ``deepfeatures training-cube`` options (without input, output and indices).
CUBE_OPTIONS = (
    "--kind", "tile",
    "--size", "16,24,24",
    "--block", "35,25,25",
    "--split", "0.6,0.2,0.2",
    "--samples", "200",
    "--min-clear", "0.5",
    "--seed", str(SEED),
)  # fmt: skip


def select_channels(
    bands: tuple[str, ...] = DEMO_BANDS, verbose: bool = True
) -> tuple[list[str], dict[str, str]]:
    """Indices computable from ``bands`` that are numerically sane on the demo cube."""
    import openeo_deepfeatures as odf

    candidates = odf.list_indices(bands=list(bands))
    reflectance = odf.preprocess_s2(odf.load_demo_cube()).sel(bands=list(bands))
    clear = np.isfinite(reflectance.values).all(axis=1)  # (t, y, x): no cloud, all bands
    values = odf.compute_indices(reflectance, indices=candidates).values  # (t, c, y, x)
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for i, name in enumerate(candidates):
        v = values[:, i][clear]
        finite = np.isfinite(v)
        if finite.mean() < MIN_FINITE:
            dropped[name] = f"finite on {finite.mean():.1%} of the clear pixel-dates"
            continue
        q02, q98 = np.quantile(v[finite].astype(np.float64), [0.02, 0.98])
        if not q98 > q02:
            dropped[name] = f"constant (q02 = q98 = {q02:g})"
            continue
        kept.append(name)
    if verbose:
        print(
            f"channels: {len(kept)} of {len(candidates)} indices computable from "
            f"{', '.join(bands)} kept ({int(clear.sum())} clear pixel-dates)",
            file=sys.stderr,
        )
        for name, why in dropped.items():
            print(f"  dropped {name}: {why}", file=sys.stderr)
    return kept, dropped


def _cli() -> list[str]:
    exe = shutil.which("deepfeatures")
    return [exe] if exe else [sys.executable, "-m", "openeo_deepfeatures.cli"]


def run(args: list[str]) -> None:
    """Run a ``deepfeatures`` command from the repository root, printing it first."""
    cmd = _cli() + args
    shown = ["deepfeatures", *args] if len(_cli()) == 1 else cmd
    print("$ " + shlex.join(shown), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def training_cube_args(channels: list[str], output: str | Path) -> list[str]:
    """The ``deepfeatures training-cube`` arguments that make the default training cube."""
    return ["training-cube", str(DEMO), "-o", str(output), *CUBE_OPTIONS, "--indices", *channels]


def export_decoder(checkpoint: Path, encoder_path: Path, out: Path, cube: Path) -> float:
    """Export the checkpoint's decoder to ONNX; returns the end-to-end parity on test tiles."""
    import onnx
    import onnxruntime as ort
    import torch

    from openeo_deepfeatures.encoder import load_encoder, time_inputs
    from openeo_deepfeatures.io import atomic_path
    from openeo_deepfeatures.training import load_checkpoint, open_training_cube
    from openeo_deepfeatures.training.models import build_model
    from openeo_deepfeatures.training.onnx_export import OPSET, _quiet_exporter

    payload = load_checkpoint(checkpoint)
    model = build_model(payload["family"], payload["n_channels"], payload["hyper"])
    model.load_state_dict(payload["best_model"])
    model.eval()
    encoder = load_encoder(encoder_path)
    contract = encoder.contract
    if contract.training["data_sha256"] != payload["data_sha256"]:
        raise SystemExit(f"{checkpoint} and {encoder_path} come from other training cubes")

    class Decoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, features):
            return self.inner.decode(features)

    dim = torch.export.Dim
    shapes = {"features": {0: dim("batch", min=1), 1: dim("T", min=1), 3: dim("H"), 4: dim("W")}}
    example = torch.zeros(1, 5, contract.k, 7, 9)
    with _quiet_exporter():
        program = torch.onnx.export(
            Decoder(model).eval(),
            (example,),
            input_names=["features"],
            output_names=["reconstruction"],
            dynamic_shapes=shapes,
            opset_version=OPSET,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto

    # end to end on real held-out tiles: shipped encoder (onnxruntime) -> decoder (onnxruntime)
    # against the checkpoint's reconstruct() in torch
    ds = open_training_cube(cube)
    test = np.array([str(s) for s in ds["split"].values.tolist()]) == "test"
    raw = np.asarray(ds["x"].values[test][:4], dtype=np.float32)
    day, doy = time_inputs(np.asarray(ds["day"].values[test][:4]))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for i in range(raw.shape[0]):
        x_n, valid = contract.normalise(raw[i : i + 1], axis=2)
        z = encoder.run(x_n, valid, day[i : i + 1], doy[i : i + 1])
        onnx_rec = session.run(["reconstruction"], {"features": z})[0]
        with torch.no_grad():
            feeds = [torch.from_numpy(a) for a in (x_n, valid, day[i : i + 1], doy[i : i + 1])]
            torch_rec = model.reconstruct(*feeds).numpy()
        worst = max(worst, float(np.abs(onnx_rec - torch_rec).max()))
    if not worst <= 1e-4:
        raise SystemExit(f"decoder: onnxruntime and torch differ by {worst:.3g} (> 1e-4)")
    onnx.helper.set_model_props(
        proto,
        {
            "decoder_of_sha256": json.dumps(encoder.sha256),
            "channels": json.dumps(list(contract.channels)),
            "features": json.dumps(list(contract.features)),
            "training_data_sha256": json.dumps(payload["data_sha256"]),
            "parity_max_abs_diff": json.dumps(worst),
            "description": json.dumps(
                "Pointwise decoder of the default dense encoder: features (N, T, k, H, W) -> "
                "normalised channels (N, T, C, H, W), in the encoder contract's normalised units."
            ),
        },
    )
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite=True) as tmp:
        onnx.save_model(proto, tmp)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(RECIPES), default="default")
    parser.add_argument("--channels-only", action="store_true", help="only choose the channels")
    args = parser.parse_args(argv)
    recipe = RECIPES[args.model]
    cube, config, checkpoint = recipe.cube, recipe.config, recipe.checkpoint
    model, decoder, work = recipe.model, recipe.decoder, recipe.work

    channels, _ = select_channels(recipe.bands)
    if args.channels_only:
        print(" ".join(channels))
        return 0
    started = time.perf_counter()
    (ROOT / work).mkdir(parents=True, exist_ok=True)
    (ROOT / model).parent.mkdir(parents=True, exist_ok=True)
    run([*training_cube_args(channels, cube), "--overwrite"])
    t_cube = time.perf_counter()
    run(["train", str(config), "--restart"])
    t_train = time.perf_counter()
    run(["export", str(checkpoint), "-o", str(model), "--overwrite"])
    print(f"$ # decoder of {checkpoint} -> {decoder}", file=sys.stderr, flush=True)
    parity = export_decoder(ROOT / checkpoint, ROOT / model, ROOT / decoder, ROOT / cube)
    done = time.perf_counter()
    print(
        f"done in {done - started:.0f} s (training cube {t_cube - started:.0f} s, training "
        f"{t_train - t_cube:.0f} s, export {done - t_train:.0f} s); {model} "
        f"{(ROOT / model).stat().st_size / 1024:.0f} KiB; decoder parity {parity:.1e}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
