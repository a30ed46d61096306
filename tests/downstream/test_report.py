"""Reporting: printed table, the note, the files (CSV, JSON, valid small PNGs), all or nothing."""

from __future__ import annotations

import functools
import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from openeo_deepfeatures.downstream.evaluation import TABLE_COLUMNS, Evaluation, evaluate
from openeo_deepfeatures.downstream.report import (
    FILES,
    format_table,
    summary_note,
    write_evaluation,
)
from openeo_deepfeatures.errors import ProcessParameterInvalid

from . import demo_2018

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@functools.lru_cache(maxsize=1)
def _result() -> Evaluation:
    return evaluate(
        **demo_2018(), models=("ridge",), statistics=("mean", "q50"), n_splits=3, threads=1
    )


def _synthetic(r2: dict[tuple[str, str], float]) -> Evaluation:
    rows = [
        {
            "input_set": s,
            "model": m,
            "channels": {"features": 6, "indices": 140, "pca": 6, "bands": 6}[s],
            "n_inputs": {"features": 54, "indices": 1260, "pca": 54, "bands": 54}[s],
            "r2": v,
            "r2_se": 0.01,
            "mae": 5.0,
            "rmse": 7.0,
            "fit_time_s": 1.0,
        }
        for (s, m), v in r2.items()
    ]
    sets = list(dict.fromkeys(s for s, _ in r2))
    models = list(dict.fromkeys(m for _, m in r2))
    noise = np.random.default_rng(0).normal(scale=0.01, size=(len(sets), len(models), 50))
    base = np.array([[r2.get((s, m), np.nan) for m in models] for s in sets])
    return Evaluation(
        table=pd.DataFrame(rows, columns=list(TABLE_COLUMNS)),
        fold_scores=pd.DataFrame(),
        r2_replicates=xr.DataArray(
            base[..., None] + noise,
            dims=("input_set", "model", "replicate"),
            coords={"input_set": sets, "model": models},
        ),
        predictions=xr.DataArray(np.zeros((len(sets), len(models), 2, 2))),
        target=xr.DataArray(np.zeros((2, 2)), dims=("y", "x")),
        fold=xr.DataArray(np.zeros((2, 2), dtype=int), dims=("y", "x")),
    )


def test_note_says_who_wins_and_by_how_much():
    note = summary_note(
        _synthetic(
            {
                ("features", "ridge"): 0.80,
                ("features", "rf"): 0.82,
                ("indices", "ridge"): 0.87,
                ("pca", "rf"): 0.70,
                ("bands", "ridge"): 0.815,
            }
        )
    )
    assert note.startswith("features (k=6), 54 inputs: R² 0.820 (rf, MAE 5.00).")
    assert "indices (140), 1260 inputs: R² 0.870 (ridge): the features are worse by 0.050" in note
    assert "with 23x fewer inputs" in note
    assert "PCA-6 of indices, 54 inputs: R² 0.700 (rf): the features are better by 0.120" in note
    assert "bands (6), 54 inputs: R² 0.815 (ridge): the features match it (+0.005 ± 0.01" in note
    assert "within 2 standard errors)" in note


def test_format_table():
    text = format_table(_result().table)
    lines = text.splitlines()
    assert lines[0].startswith("| input set | model | inputs | R² |")
    assert len(lines) == 2 + len(_result().table)
    assert lines[2].startswith("| features (k=6) | ridge | 12 |")


def test_write_evaluation_files(tmp_path):
    result = _result()
    paths = write_evaluation(result, tmp_path / "out")
    assert {p.name for p in paths.values()} == set(FILES.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILES.values())
    table = pd.read_csv(paths["csv"])
    assert tuple(table.columns) == TABLE_COLUMNS
    np.testing.assert_allclose(table.r2, result.table.r2, rtol=1e-5)
    payload = json.loads(paths["json"].read_text(), parse_constant=pytest.fail)
    assert payload["table"][0]["input_set"] == "features"
    assert payload["note"] == summary_note(result)
    assert payload["settings"]["n_splits"] == 3
    assert {r["fold"] for r in payload["fold_scores"]} == {0, 1, 2}
    assert "scikit-learn" in payload["software"]
    for role in ("scores", "maps"):
        data = paths[role].read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) < 200_000
        image = matplotlib.image.imread(paths[role])
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # not blank


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "evaluation.csv").write_text("mine")
    with pytest.raises(ProcessParameterInvalid, match=r"evaluation\.csv exist"):
        write_evaluation(_result(), out)
    assert [p.name for p in out.iterdir()] == ["evaluation.csv"]
    assert (out / "evaluation.csv").read_text() == "mine"
    write_evaluation(_result(), out, overwrite=True)
    assert (out / "evaluation.csv").read_text().startswith("input_set,")


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    from openeo_deepfeatures.downstream import figures

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(figures, "plot_maps", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_evaluation(_result(), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
