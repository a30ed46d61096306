"""The ``deepfeatures`` parser: every command in one package, built without the heavy imports."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from openeo_deepfeatures import cli
from openeo_deepfeatures.cli import build_parser
from openeo_deepfeatures.cli import training as training_cli
from openeo_deepfeatures.training.sampling import KINDS

PACKAGE = Path(cli.__file__).resolve().parents[1]
COMMANDS = [
    "demo",
    "feature-cube",
    "embed",
    "run",
    "indices",
    "training-cube",
    "train",
    "export",
    "evaluate",
    "processes",
    "serve",
    "udps",
]


def test_every_command_is_there():
    (sub,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == COMMANDS


def test_help_imports_no_optional_or_heavy_library():
    """Building the parser (``deepfeatures --help``) imports neither torch, fastapi nor
    scikit-learn, nor the library modules the commands run."""
    code = (
        "import sys\n"
        "from openeo_deepfeatures.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = ['torch', 'onnx', 'fastapi', 'uvicorn', 'sklearn', 'openeo_deepfeatures.training',"
        " 'openeo_deepfeatures.server', 'openeo_deepfeatures.local', 'openeo_deepfeatures.plugin']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_library_modules_hold_no_argparse():
    """Commands live in openeo_deepfeatures/cli/ only."""
    holders = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "argparse" in path.read_text("utf-8") and path.parent.name != "cli"
    )
    assert holders == []


def test_training_cube_kinds_are_the_library_kinds():
    """The CLI lists the kinds without importing the training package."""
    assert training_cli.KINDS == KINDS


def test_python_dash_m(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openeo_deepfeatures.cli",
            "indices",
            "list",
            "--bands",
            "B04",
            "B08",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] and "NDVI" in done.stdout.split()
