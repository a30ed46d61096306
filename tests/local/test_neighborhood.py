"""apply_neighborhood: windows with overlap give exactly the whole-cube result."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.ndimage import uniform_filter

import openeo_deepfeatures as odf
from openeo_deepfeatures.errors import (
    DataCubePropertiesImmutable,
    DimensionNotAvailable,
    ProcessParameterInvalid,
)
from openeo_deepfeatures.local import run_process_graph
from openeo_deepfeatures.local.neighborhood import SPEC, duration_windows

BANDS = ["B04", "B08"]
SPRING = ["2017-04-01", "2017-08-01"]

# A 3x3 mean that ignores no-data: with an overlap of at least one pixel, windows must
# reproduce the whole-cube result exactly, borders of the cube included.
MEAN3X3 = """
import numpy as np
import xarray
from scipy.ndimage import uniform_filter


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    v = cube.values.astype("float64")
    ok = ~np.isnan(v)
    size = (1,) * (v.ndim - 2) + (3, 3)
    s = uniform_filter(np.where(ok, v, 0.0), size=size, mode="constant")
    n = uniform_filter(ok.astype("float64"), size=size, mode="constant")
    return cube.copy(data=(s / np.where(n > 0, n, np.nan)).astype("float32"))
"""


def mean3x3(values: np.ndarray) -> np.ndarray:
    v = values.astype("float64")
    ok = ~np.isnan(v)
    size = (1,) * (v.ndim - 2) + (3, 3)
    s = uniform_filter(np.where(ok, v, 0.0), size=size, mode="constant")
    n = uniform_filter(ok.astype("float64"), size=size, mode="constant")
    return (s / np.where(n > 0, n, np.nan)).astype("float32")


def udf_callback(code: str, **extra) -> dict:
    args = {"data": {"from_parameter": "data"}, "udf": code, "runtime": "Python"} | extra
    return {"process_graph": {"u": {"process_id": "run_udf", "arguments": args, "result": True}}}


def graph(process: dict, size: list, overlap: list | None = None, context=None) -> dict:
    load = {"id": "DEMO_S2", "bands": BANDS, "spatial_extent": None, "temporal_extent": SPRING}
    return {
        "load": {"process_id": "load_collection", "arguments": load},
        "nb": {
            "process_id": "apply_neighborhood",
            "arguments": {
                "data": {"from_node": "load"},
                "process": process,
                "size": size,
                "overlap": overlap,
                "context": context,
            },
            "result": True,
        },
    }


def xy(value, unit="px"):
    return [{"dimension": d, "value": value, "unit": unit} for d in ("x", "y")]


@pytest.fixture(scope="module")
def demo():
    return odf.load_demo_cube().sel(bands=BANDS).sel(t=slice(*SPRING)).astype("float32")


@pytest.mark.parametrize(
    ("size", "overlap"),
    [
        (xy(16), xy(1)),  # 50 px: windows of 16, 16, 16 and 2
        (xy(7), xy(3)),
        (xy(320, "m"), xy(40, "m")),  # 20 m pixels: 16 px and 2 px
        ([*xy(32), {"dimension": "t", "value": "P1D"}], xy(2)),
    ],
)
def test_halo_windows_equal_whole_cube(demo, size, overlap):
    got = run_process_graph(graph(udf_callback(MEAN3X3), size, overlap))
    assert got.dims == demo.dims
    assert got.rio.crs == demo.rio.crs
    xr.testing.assert_equal(got["x"], demo["x"])
    np.testing.assert_array_equal(got.values, mean3x3(demo.values))


def test_without_overlap_window_borders_differ(demo):
    # the halo matters: without it the 3x3 mean at inner window edges sees no neighbours
    got = run_process_graph(graph(udf_callback(MEAN3X3), xy(16)))
    differs = np.any(got.values != mean3x3(demo.values), axis=(0, 1))
    assert differs[15, 3] and differs[16, 3] and not differs[8, 8]


def test_process_graph_callback_with_context(demo):
    times = {
        "process_graph": {
            "m": {
                "process_id": "multiply",
                "arguments": {"x": {"from_parameter": "data"}, "y": {"from_parameter": "context"}},
                "result": True,
            }
        }
    }
    got = run_process_graph(graph(times, xy(20), xy(4), context=3))
    np.testing.assert_allclose(got.values, demo.values * 3, rtol=1e-6)


COORDS = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    # real coordinates, continued beyond the border: x + y in every cell
    return (cube * 0 + cube["x"] + cube["y"]).fillna(0).transpose(*cube.dims)
"""


def test_windows_see_real_coordinates(demo):
    got = run_process_graph(graph(udf_callback(COORDS), xy(16), xy(4)))
    expected = (demo["x"] + demo["y"]).transpose("y", "x").values
    np.testing.assert_array_equal(got.isel(t=0, bands=0).values, expected)


TIME_ANOMALY = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube - cube.mean("t")
"""


def test_temporal_windows(demo):
    whole = run_process_graph(graph(udf_callback(TIME_ANOMALY), xy(25)))
    np.testing.assert_allclose(whole.values, (demo - demo.mean("t")).values, atol=1e-3)
    daily = run_process_graph(graph(udf_callback(TIME_ANOMALY), [*xy(25), _t("P1D")]))
    assert np.all(daily.values == 0)
    monthly = run_process_graph(graph(udf_callback(TIME_ANOMALY), [*xy(50), _t("P1M")]))
    month = demo["t"].dt.month
    expected = demo.groupby(month) - demo.groupby(month).mean("t")
    np.testing.assert_allclose(monthly.values, expected.values, atol=1e-3)


ROLLING = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube.rolling(t=3, center=True, min_periods=1).mean()
"""


def test_temporal_overlap_in_acquisitions(demo):
    size = [*xy(50), {"dimension": "t", "value": 2, "unit": "px"}]
    overlap = [{"dimension": "t", "value": 1, "unit": "px"}]
    got = run_process_graph(graph(udf_callback(ROLLING), size, overlap))
    expected = demo.rolling(t=3, center=True, min_periods=1).mean()
    np.testing.assert_allclose(got.values, expected.values, rtol=1e-6)


NDVI_BAND = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    nir, red = cube.sel(bands="B08"), cube.sel(bands="B04")
    return ((nir - red) / (nir + red)).expand_dims(bands=["NDVI"]).transpose(*cube.dims)
"""


def test_callback_may_rename_bands(demo):
    got = run_process_graph(graph(udf_callback(NDVI_BAND), xy(16), xy(2)))
    assert list(got["bands"].values) == ["NDVI"]
    nir, red = demo.sel(bands="B08"), demo.sel(bands="B04")
    np.testing.assert_allclose(got.isel(bands=0).values, ((nir - red) / (nir + red)).values)


SHRINK = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube.isel(y=slice(1, None))
"""


@pytest.mark.parametrize(
    ("size", "overlap", "process", "error", "match"),
    [
        (xy(16), None, udf_callback(SHRINK), DataCubePropertiesImmutable, "size of dimension 'y'"),
        (xy(7.5), None, udf_callback(MEAN3X3), ProcessParameterInvalid, "whole number"),
        (xy(30, "m"), None, udf_callback(MEAN3X3), ProcessParameterInvalid, "whole number"),
        (xy(0), None, udf_callback(MEAN3X3), ProcessParameterInvalid, "zero pixels"),
        (
            [{"dimension": "z", "value": 3}],
            None,
            udf_callback(MEAN3X3),
            DimensionNotAvailable,
            "'z'",
        ),
        (
            [{"dimension": "x", "value": "P1D"}],
            None,
            udf_callback(MEAN3X3),
            ProcessParameterInvalid,
            "temporal",
        ),
    ],
)
def test_bad_windows(size, overlap, process, error, match):
    with pytest.raises(error, match=match) as info:
        run_process_graph(graph(process, size, overlap))
    assert info.value.node_id == "nb"


def _t(value):
    return {"dimension": "t", "value": value}


def test_duration_windows():
    times = pd.DatetimeIndex(
        ["2021-01-01T10:00", "2021-01-01T10:05", "2021-01-03", "2021-01-09", "2021-02-01"]
    )
    assert duration_windows(times, "P1D") == ((0, 2), (2, 3), (3, 4), (4, 5))
    assert duration_windows(times, "P1W") == ((0, 3), (3, 4), (4, 5))
    assert duration_windows(times, "P1M") == ((0, 4), (4, 5))
    assert duration_windows(times, "P1Y") == ((0, 5),)
    with pytest.raises(ProcessParameterInvalid, match="ISO 8601"):
        duration_windows(times, "1 day")


def test_spec_matches_official_parameters(shared_dir):
    official = json.loads((shared_dir / "openeo-processes" / "apply_neighborhood.json").read_text())
    ours = {p["name"]: p for p in SPEC["parameters"]}
    theirs = {p["name"]: p for p in official["parameters"]}
    assert list(ours) == list(theirs)
    for name, param in theirs.items():
        assert ours[name].get("optional", False) == param.get("optional", False), name
        assert ours[name].get("default") == param.get("default"), name
    assert set(SPEC["exceptions"]) == set(official["exceptions"])
