"""The ``deepfeatures`` command: :func:`main` and its parser, one module per command group.

- :mod:`.cubes`: ``demo``, ``feature-cube``, ``embed``, ``indices list|compute``;
- :mod:`.run`: ``run`` (a process graph on the local executor);
- :mod:`.training`: ``training-cube``, ``train``, ``export``;
- :mod:`.evaluate`: ``evaluate`` (downstream evaluation);
- :mod:`.processes`: ``processes``, ``udps``;
- :mod:`.serve`: ``serve`` (the local openEO backend).

Each module adds its commands to the parser (``add_parsers``) and runs them (``_cmd_*``); the
library code, torch, scikit-learn and fastapi are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import OpenEOError
from . import cubes, evaluate, processes, run, serve, training

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfeatures",
        description="DeepFeatures for openEO: spectral-index and feature data cubes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cubes.add_feature_parsers(sub)
    run.add_parsers(sub)
    cubes.add_indices_parsers(sub)
    training.add_parsers(sub)
    evaluate.add_parsers(sub)
    processes.add_processes_parser(sub)
    serve.add_parsers(sub)
    processes.add_udps_parser(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which tests and pipes may replace)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_stderr(quiet: bool) -> None:
    """The package's INFO/WARNING lines (model chosen, bands dropped, no cloud mask) on stderr."""
    logger = logging.getLogger("openeo_deepfeatures")
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("deepfeatures: %(levelname)s: %(message)s"))
        logger.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr(bool(getattr(args, "quiet", False)))
    if getattr(args, "release_memory", False):
        from .. import memory

        memory.heap_for_large_arrays()  # the command owns its process: the library does not
    try:
        return args.func(args)
    except OpenEOError as exc:
        print(f"deepfeatures: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `deepfeatures indices list | head`
        sys.stderr.close()
        return 0
