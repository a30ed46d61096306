"""evaluate() on the 2018 demo subset: table, no leakage, PCA per fold, determinism, bad input."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from openeo_deepfeatures.downstream import pca as pca_module
from openeo_deepfeatures.downstream.evaluation import (
    TABLE_COLUMNS,
    block_bootstrap_r2,
    evaluate,
)
from openeo_deepfeatures.downstream.folds import block_ids, spatial_folds
from openeo_deepfeatures.downstream.options import DEFAULT_STATISTICS
from openeo_deepfeatures.downstream.target import align_target
from openeo_deepfeatures.errors import (
    DimensionNotAvailable,
    NoDataAvailable,
    ProcessParameterInvalid,
    TemporalExtentEmpty,
)

from . import INDICES, demo_2018

FAST = {"models": ("ridge",), "statistics": ("mean", "q50"), "n_splits": 3, "threads": 1}


@functools.lru_cache(maxsize=1)
def _full():
    """All four input sets, ridge and a small forest (computed once for this module)."""
    return evaluate(**demo_2018(), models=("ridge", "rf"), trees=10, threads=1)


def test_table_columns_rows_and_scores():
    result = _full()
    table = result.table
    assert tuple(table.columns) == TABLE_COLUMNS
    assert list(zip(table.input_set, table.model, strict=True)) == [
        (s, m) for s in ("features", "indices", "pca", "bands") for m in ("ridge", "rf")
    ]
    n_stats = len(DEFAULT_STATISTICS)
    expected = {"features": 6, "indices": len(INDICES), "pca": 6, "bands": 6}
    for row in table.itertuples():
        assert row.channels == expected[row.input_set]
        assert row.n_inputs == expected[row.input_set] * n_stats
        assert row.fit_time_s > 0
        assert 0 < row.r2_se < 0.2
        # the demo's tree cover is predictable from one year of Sentinel-2 by every input set
        assert row.r2 > 0.5, row
        assert 0 < row.mae < row.rmse
    # scores are those of the out-of-fold predictions
    obs = result.target.values.ravel()
    pred = result.predictions.sel(input_set="features", model="ridge").values.ravel()
    r2 = 1 - np.sum((obs - pred) ** 2) / np.sum((obs - obs.mean()) ** 2)
    assert table.r2[0] == pytest.approx(r2)
    assert np.isfinite(result.predictions.values).all()
    assert result.best()["r2"] == table.r2.max()
    times = pd.DatetimeIndex(demo_2018()["features"]["t"].values)
    assert times.year.unique().tolist() == [2018]
    assert result.settings["time_range"] == [f"{times[0]:%Y-%m-%d}", f"{times[-1]:%Y-%m-%d}"]
    assert result.settings["dates"] == {"features": 34, "indices": 34, "bands": 34}


def test_folds_leave_no_block_on_both_sides():
    result = _full()
    fold = result.fold.values
    blocks = block_ids(fold.shape, 10)
    for b in np.unique(blocks):
        assert np.unique(fold[blocks == b]).size == 1  # a block is tested in one fold only
    scores = result.fold_scores
    assert set(scores.fold) == set(range(5))
    assert (scores.n_train + scores.n_test == 2500).all()
    assert scores[scores.model == "ridge"].alpha.notna().all()


def test_deterministic():
    again = evaluate(**demo_2018(), models=("ridge", "rf"), trees=10, threads=1)
    np.testing.assert_array_equal(again.predictions.values, _full().predictions.values)
    pd.testing.assert_frame_equal(
        again.table.drop(columns="fit_time_s"), _full().table.drop(columns="fit_time_s")
    )


def test_pca_is_fitted_inside_each_training_fold(monkeypatch):
    calls = []
    original = pca_module.fit_index_pca

    def spy(values, train, n_components, **kwargs):
        fitted = original(values, train, n_components, **kwargs)
        calls.append((np.array(train), values, fitted))
        return fitted

    monkeypatch.setattr(pca_module, "fit_index_pca", spy)
    inputs = demo_2018()
    result = evaluate(**inputs, **FAST)
    valid = np.isfinite(result.target.values)
    folds = spatial_folds(valid, block=10, n_splits=3, seed=0)
    assert len(calls) == 3
    for fold, (train, values, fitted) in zip(folds, calls, strict=True):
        np.testing.assert_array_equal(train, fold.train)
        assert not set(train) & set(fold.test)
        # the same PCA, computed by hand from the training pixels' clear pixel-dates
        t, c = values.shape[:2]
        rows = np.moveaxis(values.reshape(t, c, -1)[:, :, train], 1, 2).reshape(-1, c)
        rows = np.where(np.isfinite(rows), rows, np.nan)
        rows = rows[np.isfinite(rows).any(axis=1)]
        x = rows.astype(np.float64)
        for _, step in fitted.steps[:-1]:
            x = step.transform(x)
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        np.testing.assert_allclose(
            np.abs(fitted.named_steps["pca"].components_), np.abs(vt[:6]), atol=1e-6
        )
    # the folds' PCAs differ from each other: each saw other pixels
    first, second = (np.abs(c[2].named_steps["pca"].components_) for c in calls[:2])
    assert not np.allclose(first, second, atol=1e-4)


def test_block_bootstrap_matches_direct_resampling():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=60)
    pred = obs + rng.normal(scale=0.5, size=60)
    blocks = np.repeat(np.arange(6), 10)
    fast = block_bootstrap_r2(obs, pred, blocks, replicates=20, seed=3)[0]
    draws = np.random.default_rng(3).integers(0, 6, size=(20, 6))
    for i, draw in enumerate(draws):
        idx = np.concatenate([np.flatnonzero(blocks == b) for b in draw])
        o, p = obs[idx], pred[idx]
        direct = 1 - np.sum((o - p) ** 2) / np.sum((o - o.mean()) ** 2)
        assert fast[i] == pytest.approx(direct)


def test_target_on_another_crs_is_refused_then_reprojected():
    inputs = demo_2018()
    utm = inputs["target"].rio.write_nodata(np.nan, encoded=False).rio.reproject("EPSG:32635")
    with pytest.raises(ProcessParameterInvalid, match=r"CRS is EPSG:32635.*reproject=True"):
        evaluate(**{**inputs, "target": utm}, **FAST)
    back = align_target(utm, inputs["features"], reproject=True)
    assert back.shape == (50, 50)
    np.testing.assert_array_equal(back["x"].values, inputs["features"]["x"].values)
    original = inputs["target"].values
    both = np.isfinite(back.values)
    assert both.mean() > 0.8
    assert np.corrcoef(back.values[both], original[both])[0, 1] > 0.8
    result = evaluate(**{**inputs, "target": utm}, reproject=True, **FAST)
    assert result.target.attrs["reprojected_from"] == "EPSG:32635"
    assert result.settings["valid_pixels"] == int(both.sum())


def test_target_grid_without_crs_cannot_be_reprojected():
    inputs = demo_2018()
    shifted = inputs["target"].drop_vars("spatial_ref").assign_coords(x=lambda d: d.x + 10.0)
    with pytest.raises(ProcessParameterInvalid, match=r"x coordinates differ.*CRS is unknown"):
        evaluate(**{**inputs, "target": shifted}, **FAST)
    with pytest.raises(ProcessParameterInvalid, match="target has no CRS"):
        evaluate(**{**inputs, "target": shifted}, reproject=True, **FAST)


def test_too_few_valid_target_pixels():
    inputs = demo_2018()
    target = inputs["target"].copy()
    target.values[:, 20:] = np.nan  # valid pixels in two block columns: 10 blocks
    target.values[10:, :] = np.nan  # ... and one block row: 2 blocks
    with pytest.raises(ProcessParameterInvalid, match=r"200 valid target pixels in 2 blocks"):
        evaluate(**{**inputs, "target": target}, **FAST)


def test_non_overlapping_time_ranges():
    inputs = demo_2018()
    earlier = inputs["si_cube"].assign_coords(t=inputs["si_cube"]["t"] - np.timedelta64(800, "D"))
    with pytest.raises(ProcessParameterInvalid, match=r"si_cube.*do not overlap"):
        evaluate(**{**inputs, "si_cube": earlier}, **FAST)


def test_time_range_and_partial_overlap():
    inputs = demo_2018()
    later = inputs["bands_cube"].sel(t=slice("2018-06-01", None))
    result = evaluate(
        **{**inputs, "bands_cube": later}, time_range=["2018-01-01", "2018-10-01"], **FAST
    )
    first, last = result.settings["time_range"]
    assert first >= "2018-06-01" and last < "2018-10-01"
    assert len(set(result.settings["dates"].values())) == 1
    with pytest.raises(TemporalExtentEmpty):
        evaluate(**inputs, time_range=["2018-05-01", "2018-04-01"], **FAST)
    with pytest.raises(NoDataAvailable, match="no date in time_range"):
        evaluate(**inputs, time_range=["2020-01-01", "2021-01-01"], **FAST)


def test_target_must_be_2d():
    inputs = demo_2018()
    stack = xr.concat([inputs["target"]] * 3, dim="band")
    with pytest.raises(ProcessParameterInvalid, match=r"must be 2-D.*'band': 3"):
        evaluate(**{**inputs, "target": stack}, **FAST)
    one_band = stack.isel(band=[0])  # a single-band raster is fine
    assert evaluate(**{**inputs, "target": one_band}, **FAST).settings["valid_pixels"] == 2500
    with pytest.raises(DimensionNotAvailable, match="y and x"):
        evaluate(**{**inputs, "target": inputs["target"].rename(y="lat")}, **FAST)


def test_baseline_on_another_grid():
    inputs = demo_2018()
    with pytest.raises(ProcessParameterInvalid, match=r"indices cube is not on the features"):
        evaluate(**{**inputs, "si_cube": inputs["si_cube"].isel(x=slice(0, 40))}, **FAST)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"models": ("ridge", "svm")}, "model names"),
        ({"pca_components": 99}, "99 components of 24 indices"),
        ({"statistics": ("mean", "mode")}, "unknown statistic 'mode'"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ProcessParameterInvalid, match=match):
        evaluate(**demo_2018(), **{**FAST, **options})


def test_features_only():
    inputs = demo_2018()
    result = evaluate(inputs["features"], inputs["target"], **FAST)
    assert result.table.input_set.tolist() == ["features"]
    assert result.predictions.shape == (1, 1, 50, 50)
    assert "pca" not in result.settings["channels"]
