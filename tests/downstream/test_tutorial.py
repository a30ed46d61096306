"""docs/tutorial.md: its commands parse, its training config is valid, its figures are small PNGs."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from openeo_deepfeatures.cli import build_parser
from openeo_deepfeatures.training import load_config

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial.md"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _commands() -> list[list[str]]:
    """``$ deepfeatures ...`` lines of the console blocks, continuation lines joined."""
    text = TUTORIAL.read_text("utf-8").replace("\\\n", " ")
    lines = re.findall(r"^\$ deepfeatures (.+)$", text, flags=re.M)
    return [shlex.split(line.replace('"$DEMO"', "demo.nc")) for line in lines]


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_every_step_is_a_command_that_parses():
    commands = _commands()
    assert [c[0] for c in commands] == [
        "training-cube",
        "train",
        "export",
        "feature-cube",
        "evaluate",
        "evaluate",
    ]
    for argv in commands:
        args = _parse(argv)
        assert callable(args.func)


def test_training_config_is_valid_and_reads_the_training_cube():
    config = load_config(ROOT / "docs" / "tutorial_dense.toml")
    cube = next(c for c in _commands() if c[0] == "training-cube")
    output = cube[cube.index("-o") + 1]
    assert Path(config["data"]["cube"]) == (ROOT / output).resolve()
    train = next(c for c in _commands() if c[0] == "train")
    exported = next(c for c in _commands() if c[0] == "export")
    assert Path(exported[1]).parent == Path(config["output"]["dir"]).relative_to(ROOT)
    assert train[1] == "docs/tutorial_dense.toml"


@pytest.mark.parametrize(
    "name", re.findall(r"\]\((figures/[^)]+\.png)\)", TUTORIAL.read_text("utf-8"))
)
def test_figures_are_small_pngs(name):
    data = (TUTORIAL.parent / name).read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) < 200_000
