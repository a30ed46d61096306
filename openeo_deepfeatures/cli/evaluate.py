"""``deepfeatures evaluate``: the downstream evaluation from the command line.

With no arguments it evaluates the shipped encoder on the embedded demo (tree-cover density
2018); ``FEATURES`` (a feature cube zarr), ``--s2`` (the Sentinel-2 cube the baselines are
computed from) and ``--target`` evaluate other data. The table is printed (markdown), the
files of :func:`~.report.write_evaluation` go to ``--output``.

:func:`add_parsers` adds the command to the ``deepfeatures`` parser without importing
scikit-learn (:mod:`openeo_deepfeatures.downstream`); running it does.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..downstream.options import DEFAULT_MODELS, DEFAULT_STATISTICS, MODELS, PROCESS
from ..errors import ProcessParameterInvalid

__all__ = ["add_parsers"]


def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """``deepfeatures evaluate [FEATURES]``."""
    p = subparsers.add_parser(
        "evaluate",
        help="do the features predict a per-pixel target as well as the indices? "
        "(needs the `downstream` extra: scikit-learn)",
        description=(
            "Fit small models (ridge, random forest) on per-pixel temporal summaries of the "
            "features, all spectral indices, their PCA and the raw bands, in a spatially blocked "
            "cross-validation; print R2, MAE, inputs and fit time; write evaluation.csv/.json "
            "and PNG figures. Without arguments: the shipped encoder on the embedded demo, "
            "target tree-cover density 2018."
        ),
    )
    p.add_argument(
        "features",
        nargs="?",
        help="feature cube (.zarr from `deepfeatures feature-cube`); default: the features of "
        "--model computed from the --s2 cube",
    )
    p.add_argument(
        "--s2",
        help="Sentinel-2 L2A cube the features come from (.nc, .zarr; DN with SCL or "
        "reflectance), for the index and band baselines; default: the embedded demo cube",
    )
    p.add_argument("--variable", help="variable holding the --s2 cube (netCDF/zarr)")
    p.add_argument("--model", help="ONNX encoder when no FEATURES are given (default: shipped)")
    p.add_argument(
        "--target",
        help="per-pixel target on the features' grid (.tif, .nc, .zarr; NaN/nodata = unknown); "
        "default: the demo's tree-cover density 2018",
    )
    p.add_argument("--target-variable", help="variable holding the target (netCDF/zarr)")
    p.add_argument(
        "--reproject",
        action="store_true",
        help="resample a target on another grid or CRS onto the features' grid (average)",
    )
    p.add_argument(
        "--time-range",
        nargs=2,
        metavar=("START", "END"),
        help="summarise the dates in [START, END) only, e.g. 2018-01-01 2019-01-01",
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(DEFAULT_MODELS),
        help=f"models (default: {' '.join(DEFAULT_MODELS)})",
    )
    p.add_argument(
        "--statistics",
        nargs="+",
        default=list(DEFAULT_STATISTICS),
        metavar="STAT",
        help=f"temporal summaries (default: {' '.join(DEFAULT_STATISTICS)}; also min, max, qNN)",
    )
    p.add_argument("--block", type=int, default=10, help="CV block size in pixels (default 10)")
    p.add_argument("--folds", type=int, default=5, help="number of CV folds (default 5)")
    p.add_argument(
        "--buffer", type=int, default=0, help="drop training pixels this close to a test pixel"
    )
    p.add_argument(
        "--pca-components", type=int, help="PCA components (default: as many as features)"
    )
    p.add_argument(
        "--trees", type=int, default=200, help="random-forest trees / boosting iterations (200)"
    )
    p.add_argument("--threads", type=int, help="threads for linear algebra and the random forest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", default="deepfeatures-evaluation", help="output folder")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)
    return p


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Run ``deepfeatures evaluate`` for parsed ``args``; prints the table, writes the files."""
    from ..downstream import require_sklearn

    require_sklearn()
    from ..data import load_demo_cube, load_demo_tree_cover
    from ..downstream.evaluation import evaluate
    from ..downstream.inputs import inputs_from_s2
    from ..downstream.report import format_table, summary_note, write_evaluation
    from ..downstream.target import load_target
    from ..io import open_cube

    started = time.perf_counter()

    def say(line: str) -> None:
        if not args.quiet:
            print(f"  {time.perf_counter() - started:6.1f} s  {line}", file=sys.stderr, flush=True)

    if args.features and args.model:
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="model",
            reason="give a feature cube or --model to compute one, not both.",
        )
    features = open_cube(args.features) if args.features else None
    demo = args.s2 is None
    s2 = load_demo_cube(chunks={"t": 20}) if demo else open_cube(args.s2, variable=args.variable)
    inputs = inputs_from_s2(s2, features=features, model=args.model)
    if args.target:
        target = load_target(args.target, variable=args.target_variable)
    else:
        target = load_demo_tree_cover()
    say(
        f"features {args.features or 'computed with ' + (args.model or 'the shipped encoder')}; "
        f"Sentinel-2 {args.s2 or 'demo cube'}; target {args.target or 'demo tree cover 2018'}"
    )
    result = evaluate(
        **inputs,
        target=target,
        models=args.models,
        statistics=args.statistics,
        time_range=args.time_range,
        block=args.block,
        n_splits=args.folds,
        buffer=args.buffer,
        pca_components=args.pca_components,
        reproject=args.reproject,
        seed=args.seed,
        trees=args.trees,
        threads=args.threads,
        progress=say,
    )
    paths = write_evaluation(result, args.output, overwrite=args.overwrite)
    print(format_table(result.table))
    print()
    print(summary_note(result))
    for path in paths.values():
        print(f"  {path}")
    say("done")
    return 0
