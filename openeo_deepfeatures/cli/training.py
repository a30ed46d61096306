"""``deepfeatures training-cube``, ``train`` and ``export``: making an encoder.

The library code (:mod:`openeo_deepfeatures.training`) is imported when a command runs, so
building the parser imports neither it nor torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parsers"]

#: ``openeo_deepfeatures.training.sampling.KINDS`` (tests/cli check they agree), not imported:
#: see above.
KINDS = ("tile", "patch")


def _number_list(kind: type, lengths: tuple[int, ...]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) not in lengths:
            want = " or ".join(str(n) for n in lengths)
            raise argparse.ArgumentTypeError(
                f"expected {want} comma-separated {kind.__name__}s, got {text!r}"
            )
        return values

    return parse


def _cmd_training_cube(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import BandMissing
    from ..indices import compute_indices
    from ..io import open_cube
    from ..sentinel2 import BAND_BY_LABEL, canonical_cube, preprocess_s2
    from ..training import make_training_cube, open_training_cube, training_cube_provenance

    process = "deepfeatures training-cube"
    cube = canonical_cube(open_cube(args.input, variable=args.variable), process)
    labels = [str(b) for b in cube["bands"].values.tolist()]
    channels = None
    steps: list[str] = []
    if "SCL" in labels or np.issubdtype(cube.dtype, np.integer):
        cube = compute_indices(preprocess_s2(cube, mask="SCL" in labels), args.indices)
        steps = ["preprocess_s2", f"compute_indices({args.indices or 'all computable'})"]
    elif args.indices and not set(args.indices) <= set(labels):
        if not all(label in BAND_BY_LABEL for label in labels):
            raise BandMissing(
                process=process,
                reason=f"--indices {sorted(set(args.indices) - set(labels))} are not channels "
                f"of {args.input}, which has {labels}.",
            )
        cube = compute_indices(cube, args.indices)  # a reflectance cube
        steps = [f"compute_indices({args.indices})"]
    else:
        channels = args.indices
    out = make_training_cube(
        cube,
        args.output,
        kind=args.kind,
        size=args.size,
        n_samples=args.samples,
        seed=args.seed,
        min_clear_fraction=args.min_clear,
        max_gap_days=args.max_gap_days,
        split=args.split,
        block=args.block,
        stride=args.stride,
        channels=channels,
        provenance={"path": str(Path(args.input).resolve()), "steps": steps},
        overwrite=args.overwrite,
    )
    if not args.quiet:
        info = training_cube_provenance(open_training_cube(out))
        counts = info["counts"]
        per_split = ", ".join(f"{k} {v}" for k, v in counts["samples"].items())
        removed = ", ".join(f"{k} {v}" for k, v in counts["removed"].items())
        print(
            f"wrote {out}: {info['n_samples']} {info['kind']}s ({per_split}) of "
            f"{tuple(info['size'].values())} (t, y, x) x {len(info['channels'])} channels; "
            f"{counts['candidates']} candidates, removed: {removed}",
            file=sys.stderr,
        )
    return 0


def add_training_cube(subparsers: Any) -> argparse.ArgumentParser:
    """``deepfeatures training-cube INPUT -o TRAIN.zarr``."""
    p = subparsers.add_parser(
        "training-cube",
        help="sample tiles or patches from an SI cube into a zarr training cube",
        description=(
            "Sample training tiles or DeepFeatures patches from a spectral-index cube, with "
            "validity rules and a block-wise train/validation/test split. INPUT is an SI cube "
            "or a raw Sentinel-2 L2A cube (DN with SCL: preprocessed and --indices computed)."
        ),
    )
    p.add_argument("input", help="SI cube or raw S2 L2A cube (.zarr, .nc)")
    p.add_argument("-o", "--output", required=True, help="output training cube (.zarr)")
    p.add_argument("--kind", choices=KINDS, default="tile", help="tile (dense) or patch")
    p.add_argument(
        "--size",
        type=_number_list(int, (3,)),
        metavar="T,H,W",
        help="dates and pixels per sample (tile 16,32,32; patch 11,15,15)",
    )
    p.add_argument("--samples", type=int, default=512, help="number of samples (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--min-clear", type=float, default=0.5, help="least clear fraction per sample (0.5)"
    )
    p.add_argument("--max-gap-days", type=float, help="largest gap between consecutive dates")
    p.add_argument(
        "--split",
        type=_number_list(float, (3,)),
        default=(0.7, 0.15, 0.15),
        metavar="TRAIN,VAL,TEST",
        help="split fractions (0.7,0.15,0.15)",
    )
    p.add_argument(
        "--block",
        type=_number_list(int, (2, 3)),
        metavar="[T,]H,W",
        help="split blocks in pixels (and dates); default twice the sample size",
    )
    p.add_argument(
        "--stride", type=_number_list(int, (3,)), metavar="T,Y,X", help="candidate step (1,1,1)"
    )
    p.add_argument(
        "--indices",
        nargs="+",
        help="indices to compute from a raw cube, or channels to keep from an SI cube",
    )
    p.add_argument("--variable", help="variable holding the cube (netCDF/zarr)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_training_cube)
    return p


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training import train

    result = train(
        args.config,
        output=args.output,
        resume=False if args.restart else None,
        progress=False if args.quiet else None,
    )
    if not args.quiet:
        print(
            f"trained {result.contract.family} encoder {result.contract.name!r}: "
            f"{result.epochs} epochs, best {result.best_epoch} "
            f"(validation loss {result.best_validation_loss:.4f})"
            f"{', stopped early' if result.stopped_early else ''} -> {result.checkpoint}",
            file=sys.stderr,
        )
    return 0


def add_train(subparsers: Any) -> argparse.ArgumentParser:
    """``deepfeatures train CONFIG.toml``."""
    p = subparsers.add_parser(
        "train",
        help="train an encoder from a training cube (needs the `train` extra: torch)",
        description=(
            "Training an encoder from a training cube: ``deepfeatures train CONFIG.toml`` "
            "(``train`` extra)."
        ),
    )
    p.add_argument("config", help="training config (TOML)")
    p.add_argument("-o", "--output", help="output folder (overrides [output] dir)")
    p.add_argument("--restart", action="store_true", help="start again even if a checkpoint exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return p


def _cmd_export(args: argparse.Namespace) -> int:
    from ..training import export

    result = export(args.checkpoint, args.output, overwrite=args.overwrite, weights=args.weights)
    if not args.quiet:
        size = result.path.stat().st_size
        print(
            f"wrote {result.path} ({size / 1024:.0f} KiB, sha256 {result.sha256}; "
            f"onnxruntime vs torch max |diff| {result.max_abs_diff:.2e}) and {result.stac_item}",
            file=sys.stderr,
        )
    return 0


def add_export(subparsers: Any) -> argparse.ArgumentParser:
    """``deepfeatures export CHECKPOINT -o model.onnx``."""
    p = subparsers.add_parser(
        "export",
        help="export a trained encoder to ONNX with its contract and a STAC MLM item",
        description=(
            "Export a trained encoder to ONNX with its contract: "
            "``deepfeatures export CHECKPOINT -o model.onnx``."
        ),
    )
    p.add_argument("checkpoint", help="checkpoint.pt written by `deepfeatures train`")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.add_argument(
        "--weights", choices=("best", "last"), default="best", help="which weights (default best)"
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_export)
    return p


def add_parsers(subparsers: Any) -> None:
    """``deepfeatures training-cube``, ``train`` and ``export``."""
    add_training_cube(subparsers)
    add_train(subparsers)
    add_export(subparsers)
