"""run_udf: labelled cubes inside apply_dimension / reduce_dimension, runtimes, bad UDFs."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.errors import (
    DimensionNotAvailable,
    InvalidRuntime,
    InvalidVersion,
    ProcessParameterInvalid,
    ProcessUnsupported,
)
from openeo_deepfeatures.local import run_process_graph
from openeo_deepfeatures.local.udf import udf_runtimes
from openeo_deepfeatures.policy import ExecutionPolicy

BANDS = ["B04", "B08"]

# Uses labels: a UDF that got an unlabelled array with the dimension on the wrong axis (as
# upstream hands it over) would fail here or, worse, compute something else.
ANOMALY = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    assert cube.dims == ("t", "bands", "y", "x"), cube.dims
    return (cube - cube.mean("t")) * context.get("scale", 1)
"""

MEDIAN_NDVI = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    nir, red = cube.sel(bands="B08"), cube.sel(bands="B04")
    ndvi = (nir - red) / (nir + red)
    return ndvi.median("t").expand_dims(bands=["NDVI_median"])
"""

TO_NDVI = """
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    nir, red = cube.sel(bands="B08"), cube.sel(bands="B04")
    return ((nir - red) / (nir + red)).expand_dims(bands=["NDVI"]).transpose(*cube.dims)
"""


@pytest.fixture(scope="module")
def cube():
    demo = odf.load_demo_cube().sel(bands=BANDS).isel(t=slice(0, 12)).astype("float32")
    return demo.chunk({"t": 5, "y": 20, "x": 30})  # windows follow the spatial chunks


def udf_node(code, **extra):
    args = {"data": {"from_parameter": "data"}, "udf": code, "runtime": "Python"} | extra
    return {"process_graph": {"u": {"process_id": "run_udf", "arguments": args, "result": True}}}


def run(process_id, cube, policy=None, **arguments):
    nodes = {
        "p": {
            "process_id": process_id,
            "arguments": {"data": {"from_parameter": "cube"}} | arguments,
            "result": True,
        }
    }
    return run_process_graph(nodes, parameters={"cube": cube}, policy=policy)


def test_apply_dimension_t_gets_labelled_cube(cube):
    got = run(
        "apply_dimension",
        cube,
        process=udf_node(ANOMALY, context={"from_parameter": "context"}),
        dimension="t",
        context={"scale": 2},
    )
    expected = (cube - cube.mean("t")) * 2
    assert got.dims == cube.dims
    assert got.rio.crs == cube.rio.crs
    np.testing.assert_allclose(got.values, expected.values, rtol=1e-5, atol=1e-3)


def test_apply_dimension_bands_may_relabel(cube):
    got = run("apply_dimension", cube, process=udf_node(TO_NDVI), dimension="bands")
    assert list(got["bands"].values) == ["NDVI"]
    nir, red = cube.sel(bands="B08"), cube.sel(bands="B04")
    np.testing.assert_allclose(got.isel(bands=0).values, ((nir - red) / (nir + red)).values)


def test_reduce_dimension_t_with_udf(cube):
    got = run("reduce_dimension", cube, reducer=udf_node(MEDIAN_NDVI), dimension="t")
    assert got.dims == ("bands", "y", "x")
    nir, red = cube.sel(bands="B08").values, cube.sel(bands="B04").values
    expected = np.median((nir - red) / (nir + red), axis=0)
    np.testing.assert_allclose(got.sel(bands="NDVI_median").values, expected, rtol=1e-6)


def test_plain_callbacks_still_use_upstream(cube):
    got = run(
        "reduce_dimension",
        cube,
        reducer={
            "process_graph": {
                "m": {
                    "process_id": "max",
                    "arguments": {"data": {"from_parameter": "data"}},
                    "result": True,
                }
            }
        },
        dimension="t",
    )
    np.testing.assert_array_equal(got.values, cube.max("t").values)


def test_run_udf_on_the_whole_cube_from_a_file(cube, tmp_path):
    path = tmp_path / "anomaly.py"
    path.write_text(ANOMALY)
    policy = ExecutionPolicy(read_roots=[tmp_path])  # the UDF file is readable
    got = run("run_udf", cube, policy, udf=str(path), runtime="python", version="3")
    np.testing.assert_allclose(got.values, (cube - cube.mean("t")).values, rtol=1e-5, atol=1e-3)


def test_client_udf_graph(cube):
    """The graph the openEO Python client builds for a UDF in apply_dimension."""
    import openeo
    from openeo.rest.datacube import DataCube

    dc = DataCube.load_collection("MY_CUBE", connection=None, bands=BANDS)
    udf = openeo.UDF(ANOMALY, runtime="Python", context={"scale": 3})
    dc = dc.apply_dimension(process=udf, dimension="t")
    got = run_process_graph(dc.flat_graph(), collections={"MY_CUBE": cube})
    np.testing.assert_allclose(got.values, ((cube - cube.mean("t")) * 3).values, atol=1e-3)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"runtime": "R"}, InvalidRuntime, "'R'"),
        ({"version": "2.7"}, InvalidVersion, "2.7"),
        (
            {"udf": "def apply_datacube(cube, context):\n  return cube +\n"},
            ProcessParameterInvalid,
            "syntax error at line 2",
        ),
        (
            {"udf": "import xarray\n\ndef helper(x):\n    return x\n"},
            ProcessParameterInvalid,
            "no entry function",
        ),
        ({"udf": "does/not/exist.py"}, Exception, "does not exist"),
    ],
)
def test_bad_udfs(cube, arguments, error, match):
    process = udf_node(ANOMALY, **arguments)
    with pytest.raises(error, match=match) as info:
        run("apply_dimension", cube, process=process, dimension="t")
    assert info.value.node_id in ("p", "u")


def test_failing_udf_says_so(cube):
    boom = "import xarray\n\ndef apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:\n    raise ValueError('boom')\n"
    with pytest.raises(Exception, match="the UDF failed: ValueError: boom"):
        run("apply_dimension", cube, process=udf_node(boom), dimension="t")


def test_unknown_dimension(cube):
    with pytest.raises(DimensionNotAvailable, match="'time'"):
        run("apply_dimension", cube, process=udf_node(ANOMALY), dimension="time")


def test_udf_can_be_disabled(cube):
    nodes = {
        "p": {
            "process_id": "apply_dimension",
            "arguments": {
                "data": {"from_parameter": "cube"},
                "process": udf_node(ANOMALY),
                "dimension": "t",
            },
            "result": True,
        }
    }
    with pytest.raises(ProcessUnsupported, match="allow_udf=False"):
        run_process_graph(nodes, parameters={"cube": cube}, allow_udf=False)


def test_udf_runtimes_lists_this_python():
    runtimes = udf_runtimes()
    assert runtimes["Python"]["type"] == "language"
    assert "3" in runtimes["Python"]["versions"]
    libs = runtimes["Python"]["versions"]["3"]["libraries"]
    assert {"numpy", "xarray", "openeo"} <= set(libs)
    assert xr.__version__ == libs["xarray"]["version"]
