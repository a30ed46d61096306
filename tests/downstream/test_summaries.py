"""Temporal summaries against numpy's NaN functions (the oracle), labels, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from openeo_deepfeatures.downstream.options import SEASONS
from openeo_deepfeatures.downstream.summaries import parse_statistic, temporal_summaries
from openeo_deepfeatures.errors import DimensionNotAvailable, ProcessParameterInvalid


def _cube(seed: int = 0, t: int = 37) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(t, 3, 4, 5)).astype(np.float32)
    values[rng.random(values.shape) < 0.3] = np.nan  # clouds
    values[:, :, 0, 0] = np.nan  # a pixel never seen
    values[3, 1, 1, 1] = np.inf  # an index's division by zero
    values[5, 2, 2, 2] = -np.inf
    times = pd.date_range("2018-01-03", periods=t, freq="10D")
    return xr.DataArray(
        values,
        dims=("t", "bands", "y", "x"),
        coords={
            "t": times,
            "bands": ["A", "B", "C"],
            "y": 100.0 - 20 * np.arange(4),
            "x": 20.0 * np.arange(5),
        },
    )


def _oracle(values: np.ndarray, months: np.ndarray, stat: str) -> np.ndarray:
    v = np.where(np.isfinite(values), values, np.nan).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if stat == "mean":
            return np.nanmean(v, axis=0)
        if stat == "std":
            return np.nanstd(v, axis=0)
        if stat in SEASONS:
            return np.nanmedian(v[np.isin(months, SEASONS[stat])], axis=0)
        q = {"min": 0.0, "max": 1.0}.get(stat)
        q = float(stat[1:]) / 100 if q is None else q
        return np.nanquantile(v, q, axis=0)


@pytest.mark.parametrize(
    "stat", ["mean", "std", "min", "max", "q10", "q50", "q90", "q2.5", "DJF", "MAM", "JJA", "SON"]
)
def test_each_statistic_equals_numpy(stat):
    cube = _cube()
    months = pd.DatetimeIndex(cube["t"].values).month.to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice" from our code
        out = temporal_summaries(cube, [stat])
    expected = _oracle(cube.values, months, stat)
    np.testing.assert_allclose(out.values, expected, rtol=2e-6, atol=2e-6, equal_nan=True)
    assert np.isnan(out.values[:, 0, 0]).all()  # never seen -> NaN
    assert np.isfinite(out.values[:, 1:, 1:]).all()


def test_labels_coords_and_order():
    cube = _cube()
    out = temporal_summaries(cube, ["mean", "q90", "JJA"])
    assert out.dims == ("inputs", "y", "x")
    assert out["inputs"].values.tolist() == [
        f"{c}:{s}" for c in ("A", "B", "C") for s in ("mean", "q90", "JJA")
    ]
    assert out["channel"].values.tolist() == ["A"] * 3 + ["B"] * 3 + ["C"] * 3
    assert out.sel(inputs="B:q90").values == pytest.approx(
        temporal_summaries(cube.sel(bands=["B"]), ["q90"]).values[0], nan_ok=True
    )
    np.testing.assert_array_equal(out["x"].values, cube["x"].values)
    assert out.dtype == np.float32
    assert out.attrs["dates"] == cube.sizes["t"]


def test_dask_and_renamed_dimensions_give_the_same():
    cube = _cube(seed=1)
    lazy = (
        cube.rename(t="time", bands="band").transpose("band", "time", "y", "x").chunk({"time": 8})
    )
    np.testing.assert_array_equal(temporal_summaries(lazy).values, temporal_summaries(cube).values)


def test_season_without_dates_is_nan():
    cube = _cube().isel(t=slice(0, 5))  # January to mid-February only
    out = temporal_summaries(cube, ["JJA", "DJF"])
    assert np.isnan(out.values[::2]).all()
    assert np.isfinite(out.values[1::2][:, 1:, 1:]).any()


@pytest.mark.parametrize("bad", ["median", "q101", "q", "winter", "Q10"])
def test_unknown_statistic(bad):
    with pytest.raises(ProcessParameterInvalid, match="unknown statistic"):
        parse_statistic(bad)


def test_missing_dimension():
    with pytest.raises(DimensionNotAvailable, match="missing"):
        temporal_summaries(_cube().isel(t=0))


def test_no_statistics():
    with pytest.raises(ProcessParameterInvalid, match="at least one"):
        temporal_summaries(_cube(), [])
