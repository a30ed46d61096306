"""``deepfeatures evaluate``: files from a feature zarr + S2 cube + target file; errors; extra."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401

from openeo_deepfeatures.cli.evaluate import add_parsers
from openeo_deepfeatures.data import demo_path, load_demo_cube
from openeo_deepfeatures.downstream.report import FILES
from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.io import write_zarr
from tests.downstream import YEAR, demo_2018

QUICK = ["--models", "ridge", "--statistics", "mean", "q50", "--folds", "3", "--threads", "1", "-q"]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="deepfeatures")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", *argv])
    return args.func(args)


def test_feature_zarr_s2_file_and_target_variable(tmp_path, capsys):
    features = tmp_path / "features.zarr"
    write_zarr(demo_2018()["features"].rename("features"), features)
    out = tmp_path / "eval"
    argv = [str(features), "--s2", str(demo_path()), "--target", str(demo_path())]
    argv += ["--target-variable", "tree_cover_density", "--time-range", *YEAR, "-o", str(out)]
    assert _run([*argv, *QUICK]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("| input set | model |")
    for label in ("features (k=6) | ridge | 12", "indices (146) | ridge | 292", "PCA-6 of"):
        assert label in printed
    assert "features (k=6), 12 inputs: R²" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES.values())
    table = pd.read_csv(out / "evaluation.csv")
    assert table.input_set.tolist() == ["features", "indices", "pca", "bands"]
    assert (table.r2 > 0.5).all()
    settings = json.loads((out / "evaluation.json").read_text())["settings"]
    assert settings["dates"] == {"features": 34, "indices": 34, "bands": 34}
    assert settings["features"]["model_name"]  # provenance travels from the zarr
    # the output is not overwritten by accident
    with pytest.raises(ProcessParameterInvalid, match="exist"):
        _run([*argv, *QUICK])


def test_features_computed_and_target_reprojected(tmp_path, capsys):
    s2 = tmp_path / "s2.nc"
    load_demo_cube().sel(t=slice(YEAR[0], "2018-12-31")).to_dataset(name="s2").to_netcdf(s2)
    target = demo_2018()["target"].rio.write_nodata(np.nan, encoded=False)
    tif = tmp_path / "target_utm.tif"
    target.rio.reproject("EPSG:32635").rio.to_raster(tif)
    argv = ["--s2", str(s2), "--target", str(tif), "-o", str(tmp_path / "o"), *QUICK]
    with pytest.raises(ProcessParameterInvalid, match=r"EPSG:32635.*--reproject"):
        _run(argv)
    assert _run([*argv, "--reproject"]) == 0
    assert "features (k=6) | ridge" in capsys.readouterr().out
    settings = json.loads((tmp_path / "o" / "evaluation.json").read_text())["settings"]
    assert settings["target"]["reprojected_from"] == "EPSG:32635"


def test_bad_arguments(tmp_path):
    with pytest.raises(ProcessParameterInvalid, match="not both"):
        _run(["f.zarr", "--model", "m.onnx", *QUICK])
    with pytest.raises(ProcessParameterInvalid, match="does not exist"):
        _run(["--target", str(tmp_path / "nothing.tif"), *QUICK])


def test_command_line_without_scikit_learn():
    """The parser is built without scikit-learn; running says which extra to install."""
    code = textwrap.dedent(
        """
        import argparse, sys
        sys.modules["sklearn"] = None  # as if it were not installed
        from openeo_deepfeatures.cli.evaluate import add_parsers
        from openeo_deepfeatures.errors import FeatureUnsupported
        parser = argparse.ArgumentParser()
        add_parsers(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["evaluate"])
        try:
            args.func(args)
        except FeatureUnsupported as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "[FeatureUnsupported]" in done.stdout
    assert "openeo-deepfeatures[downstream]" in done.stdout
