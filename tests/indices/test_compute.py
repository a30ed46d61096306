"""compute_indices against spyndex (independent oracle), numpy and dask, plus bad input."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.errors import (
    BandMissing,
    DimensionNotAvailable,
    FormulaInvalid,
    IndexUnknown,
    ProcessParameterInvalid,
)
from openeo_deepfeatures.indices.resolve import resolve_indices

from ..conftest import ALL_BANDS, make_cube
from .spyndex_oracle import spyndex_index

PAR = 1500.0
ALL_S2 = odf.list_indices()
DEMO_BANDS = ["B02", "B03", "B04", "B08", "B8A", "B11"]
DEMO_INDICES = odf.list_indices(bands=[*DEMO_BANDS, "PAR"])  # PAR given as a constant
CASES = [("synthetic", i) for i in ALL_S2] + [("demo", i) for i in DEMO_INDICES]


def _synthetic() -> xr.DataArray:
    cube = make_cube(shape=(4, 16, 16), seed=42)
    data = cube.values
    data[0, ALL_BANDS.index("B04"), 0, :4] = np.nan  # NaN in -> NaN out
    data[1, :, 2, 2] = 0.0  # all bands zero: 0/0 everywhere
    data[2, ALL_BANDS.index("B08"), 3, 3] = data[2, ALL_BANDS.index("B04"), 3, 3]  # N == R
    return cube.copy(data=data)


@pytest.fixture(scope="module")
def cases(demo_reflectance):
    synthetic = _synthetic()
    out = {}
    for name, cube in {
        "synthetic": synthetic,
        "demo": demo_reflectance.isel(t=slice(0, 40)),
    }.items():
        labels = [str(b) for b in cube["bands"].values]
        resolved = {r.name: r for r in resolve_indices(None, labels, {"PAR": PAR})}
        band_arrays = {b: cube.sel(bands=b).values for b in labels}
        for backend in ("numpy", "dask"):
            source = cube.chunk({"t": 3, "y": 7}) if backend == "dask" else cube
            result = odf.compute_indices(source, constants={"PAR": PAR})
            if backend == "dask":
                assert isinstance(result.data, da.Array)
            out[(name, backend)] = (resolved, band_arrays, result.compute())
    return out


@pytest.mark.parametrize("backend", ["numpy", "dask"])
@pytest.mark.parametrize(("case", "index"), CASES)
def test_matches_spyndex(cases, case, backend, index):
    resolved, band_arrays, result = cases[(case, backend)]
    expected = spyndex_index(resolved[index], band_arrays)
    got = result.sel(bands=index).values
    assert got.dtype == np.float32
    np.testing.assert_array_equal(
        np.isnan(got), np.isnan(expected), err_msg=f"NaN pattern of {index}"
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_every_synthetic_index_is_computed(cases):
    _, _, result = cases[("synthetic", "numpy")]
    assert sorted(result["bands"].values.tolist()) == sorted(ALL_S2)
    assert len(ALL_S2) >= 240


def test_demo_bands_give_many_indices(cases):
    _, _, result = cases[("demo", "numpy")]
    assert sorted(result["bands"].values.tolist()) == DEMO_INDICES
    assert len(DEMO_INDICES) >= 130


def test_numpy_and_dask_identical(cases):
    for case in ("synthetic", "demo"):
        a = cases[(case, "numpy")][2]
        b = cases[(case, "dask")][2]
        xr.testing.assert_identical(a, b)


def test_known_values_by_hand():
    cube = make_cube({"B04": 0.1, "B08": 0.5, "B02": 0.05}, shape=(1, 1, 2))
    out = odf.compute_indices(cube, ["NDVI", "SAVI", "EVI", "kNDVI"])
    ndvi = (0.5 - 0.1) / (0.5 + 0.1)
    savi = 1.5 * (0.5 - 0.1) / (0.5 + 0.1 + 0.5)  # L = 0.5
    evi = 2.5 * (0.5 - 0.1) / (0.5 + 6 * 0.1 - 7.5 * 0.05 + 1.0)  # L = 1
    knr = np.exp(-((0.5 - 0.1) ** 2) / (2 * (0.5 * (0.5 + 0.1)) ** 2))
    kndvi = (1 - knr) / (1 + knr)
    np.testing.assert_allclose(out.sel(bands="NDVI").values, ndvi, rtol=1e-6)
    np.testing.assert_allclose(out.sel(bands="SAVI").values, savi, rtol=1e-6)
    np.testing.assert_allclose(out.sel(bands="EVI").values, evi, rtol=1e-6)
    np.testing.assert_allclose(out.sel(bands="kNDVI").values, kndvi, rtol=1e-6)


def test_output_layout_and_coords(demo_reflectance):
    out = odf.compute_indices(demo_reflectance, ["NDVI", "NDWI"])
    assert out.dims == ("t", "bands", "y", "x")
    assert out["bands"].values.tolist() == ["NDVI", "NDWI"]
    np.testing.assert_array_equal(out["t"].values, demo_reflectance["t"].values)
    assert out.rio.crs.to_epsg() == 3035


def test_accepts_band_and_time_spellings_and_other_dim_orders():
    cube = make_cube(band_dim="band", time_dim="time", bands=["B4", "B8"])
    out = odf.compute_indices(cube.transpose("y", "band", "x", "time"), "NDVI")
    assert out.dims == ("y", "bands", "x", "t")
    ref = (cube.sel(band="B8") - cube.sel(band="B4")) / (cube.sel(band="B8") + cube.sel(band="B4"))
    np.testing.assert_allclose(
        out.sel(bands="NDVI").transpose("t", "y", "x").values,
        ref.transpose("time", "y", "x").values,
        rtol=1e-6,
    )


def test_dask_is_lazy_and_chunkwise():
    cube = make_cube(shape=(6, 8, 8)).chunk({"t": 2, "y": 4, "bands": 3})
    out = odf.compute_indices(cube, ["NDVI", "NDWI", "EVI"])
    assert isinstance(out.data, da.Array)
    assert out.data.chunks[0] == (2, 2, 2)
    assert out.data.chunks[1] == (3,)
    np.testing.assert_allclose(
        out.values, odf.compute_indices(cube.compute(), ["NDVI", "NDWI", "EVI"]).values
    )


def test_division_by_zero_gives_nan_without_warnings():
    cube = make_cube({"B04": 0.0, "B08": 0.0, "B03": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = odf.compute_indices(cube, ["NDVI", "GRVI", "SR"])
    assert np.isnan(out.values).all()
    assert not np.isinf(out.values).any()


def test_negative_base_of_fractional_power_is_nan():
    # TVI = ((N - R)/(N + R) + 0.5) ** 0.5 : negative base when NDVI < -0.5
    cube = make_cube({"B04": 0.9, "B08": 0.1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = odf.compute_indices(cube, "TVI")
    assert np.isnan(out.values).all()


def test_custom_formulas_and_constants():
    cube = make_cube({"B04": 0.2, "B08": 0.6})
    out = odf.compute_indices(
        cube,
        ["MYNDVI", "SAVI"],
        formulas={"MYNDVI": "(B08 - R) / (N + B04) * k2"},
        constants={"k2": 2.0, "SAVI": {"L": 0.25}},
    )
    np.testing.assert_allclose(out.sel(bands="MYNDVI").values, 2 * 0.4 / 0.8, rtol=1e-6)
    np.testing.assert_allclose(out.sel(bands="SAVI").values, 1.25 * 0.4 / (0.8 + 0.25), rtol=1e-6)


def test_par_as_band_for_nirvp():
    cube = make_cube({"B04": 0.1, "B08": 0.5}, bands=["B04", "B08", "PAR"])
    cube.loc[{"bands": "PAR"}] = 1200.0
    assert "NIRvP" in odf.compute_indices(cube)["bands"].values
    out = odf.compute_indices(cube, "NIRvP")
    np.testing.assert_allclose(out.values, (0.4 / 0.6) * 0.5 * 1200.0, rtol=1e-6)


def test_unknown_index_suggests_close_names():
    with pytest.raises(IndexUnknown, match=r"NDVI") as info:
        odf.compute_indices(make_cube(), ["NVDI"])
    assert info.value.code == "IndexUnknown"
    with pytest.raises(IndexUnknown, match="did you mean NDVI"):
        odf.compute_indices(make_cube(), ["ndvi"])


def test_missing_bands_named():
    cube = make_cube(bands=["B04", "B08"])
    with pytest.raises(BandMissing, match=r"NDWI needs \['B03'\]"):
        odf.compute_indices(cube, ["NDVI", "NDWI"])


def test_no_computable_index():
    with pytest.raises(BandMissing, match="no spectral index"):
        odf.compute_indices(make_cube(bands=["B09"]))


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32])
def test_integer_input_refused_as_dn(dtype):
    cube = (make_cube(bands=["B04", "B08"]) * 10000).astype(dtype)
    with pytest.raises(ProcessParameterInvalid, match="digital numbers"):
        odf.compute_indices(cube, "NDVI")


@pytest.mark.parametrize("chunked", [False, True])
def test_float_dn_refused(chunked):
    cube = make_cube(bands=["B04", "B08"]) * 10000
    if chunked:
        cube = cube.chunk({"t": 1})
    with pytest.raises(ProcessParameterInvalid, match="digital numbers"):
        odf.compute_indices(cube, "NDVI").compute()


def test_cube_without_bands_dimension():
    cube = make_cube().isel(bands=0, drop=True)
    with pytest.raises(DimensionNotAvailable, match="'bands'"):
        odf.compute_indices(cube, "NDVI")


def test_not_a_dataarray():
    with pytest.raises(ProcessParameterInvalid, match="DataArray"):
        odf.compute_indices(np.zeros((2, 3)), "NDVI")


@pytest.mark.parametrize(
    "constants",
    [
        {"L": "0.5"},
        {"L": True},
        {"L": [0.5]},
        {"SAVI": {"L": None}},
        {"EVI": {"L": 1}},
        [("L", 0.5)],
    ],
)
def test_bad_constants(constants):
    with pytest.raises(ProcessParameterInvalid, match="constants"):
        odf.compute_indices(make_cube(), ["SAVI"], constants=constants)


def test_formula_outside_whitelist():
    with pytest.raises(FormulaInvalid, match="not allowed"):
        odf.compute_indices(make_cube(), ["X"], formulas={"X": "__import__('os').system('true')"})


def test_dataset_on_different_grids_refused():
    ds = xr.Dataset(
        {
            "B04": (("y", "x"), np.full((2, 2), 0.1, np.float32)),
            "B08": (("y2", "x2"), np.full((1, 1), 0.5, np.float32)),
        }
    )
    with pytest.raises(ProcessParameterInvalid, match="B08 are on another grid"):
        odf.compute_indices(ds, "NDVI")


def test_dataset_of_bands_accepted():
    ds = make_cube(bands=["B04", "B08"]).to_dataset(dim="bands")
    out = odf.compute_indices(ds, "NDVI")
    assert out.sizes["bands"] == 1


def test_dask_output_chunks_are_bounded():
    from openeo_deepfeatures.indices.compute import MAX_OUTPUT_CHUNK_BYTES

    data = da.full((20, 12, 512, 512), 0.3, dtype=np.float32, chunks=(20, 6, 512, 512))
    cube = make_cube(shape=(20, 512, 512)).copy(data=data)
    out = odf.compute_indices(cube)
    assert out.data.chunks[1] == (out.sizes["bands"],)
    biggest = np.prod([max(c) for c in out.data.chunks]) * 4
    assert biggest <= MAX_OUTPUT_CHUNK_BYTES
    np.testing.assert_allclose(out.isel(t=0, y=0, x=slice(0, 3)).sel(bands="NDVI").values, 0.0)


def test_precision_option():
    cube = make_cube(shape=(2, 8, 8))
    fast = odf.compute_indices(cube, ["NDVI", "EVI"], precision="float32")
    exact = odf.compute_indices(cube, ["NDVI", "EVI"])
    assert fast.dtype == np.float32
    np.testing.assert_allclose(fast.values, exact.values, rtol=1e-3)
    with pytest.raises(ProcessParameterInvalid, match="precision"):
        odf.compute_indices(cube, "NDVI", precision="half")


def test_stray_constants_refused():
    with pytest.raises(
        ProcessParameterInvalid, match=r"no requested index uses the constants \['LL'\]"
    ):
        odf.compute_indices(make_cube(), ["SAVI"], constants={"LL": 0.5})
    with pytest.raises(ProcessParameterInvalid, match=r"NDVI has no constant \['L'\]"):
        odf.compute_indices(make_cube(), ["NDVI"], constants={"NDVI": {"L": 0.5}})


def test_par_band_is_not_mistaken_for_dn():
    cube = make_cube({"B04": 0.1, "B08": 0.5}, bands=["B04", "B08", "PAR"])
    cube.loc[{"bands": "PAR"}] = 1200.0
    cube = cube.sel(bands=["PAR", "B04", "B08"])
    assert np.isfinite(odf.compute_indices(cube, "NIRvP").values).all()
