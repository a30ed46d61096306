"""Cubes as openEO backends write them: CDSE band names, extra bands, 65535, scale, no SCL.

Every case goes through the Python API (open_cube -> preprocess_s2 / feature_cube); the CLI and
``deepfeatures run`` cases are in tests/test_cli_real_data.py.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.cube_input import VALUES_ATTR, canonical_cube
from openeo_deepfeatures.encoder import load_encoder
from openeo_deepfeatures.encoder.selection import SHIPPED_MODELS, bands_needed
from openeo_deepfeatures.errors import BandMissing, ProcessParameterInvalid
from openeo_deepfeatures.features import feature_cube
from openeo_deepfeatures.io import open_cube

from .cdse_cubes import NODATA_DATE, TEN_M, cdse_dataset, reflectance, write_netcdf

DATES, SIZE = 12, 20
INVALID_SCL = [0, 1, 3, 8, 9, 10]


def _scl() -> np.ndarray:
    demo = odf.load_demo_cube().isel(t=slice(0, DATES), y=slice(0, SIZE), x=slice(0, SIZE))
    return demo.sel(bands="SCL").values


def _check_reflectance(out: xr.DataArray) -> None:
    """``out`` is the demo's DN / 10000, masked where SCL is invalid or the DN was 65535."""
    clear = ~np.isin(_scl(), INVALID_SCL)
    for band in TEN_M:
        got = out.sel(bands=band).values
        want = np.where(clear, reflectance(band), np.nan)
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    first = out.sel(bands="B02").isel(t=NODATA_DATE).values.reshape(-1)
    assert np.isnan(first[np.arange(5) * 7]).all()  # the 65535 pixels
    assert np.isfinite(first[1:7]).all()  # their neighbours are clear


@pytest.mark.parametrize("fill_value", [65535, None], ids=["FillValue", "no-FillValue"])
@pytest.mark.parametrize("names", ["S2-L2A-{}", "{}", "{}_10m"])
def test_cdse_netcdf_to_reflectance(tmp_path, names, fill_value, caplog):
    path = write_netcdf(cdse_dataset(names=names, fill_value=fill_value), tmp_path / "cdse.nc")
    with caplog.at_level(logging.INFO, logger="openeo_deepfeatures"):
        out = odf.preprocess_s2(open_cube(path))
    assert out["bands"].values.tolist() == list(TEN_M)  # AOT and SCL dropped
    assert out.rio.crs.to_epsg() == 3035
    _check_reflectance(out)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == [
        "deepfeatures_preprocess_s2: bands AOT are not Sentinel-2 L2A reflectance bands: dropped."
    ]


def test_cf_scale_factor_decoded_is_not_scaled_again(tmp_path):
    path = write_netcdf(cdse_dataset(scale=1e-4), tmp_path / "scaled.nc")
    cube = canonical_cube(open_cube(path), "test")
    assert cube.attrs[VALUES_ATTR] == "reflectance"
    _check_reflectance(odf.preprocess_s2(cube))


def test_raw_cf_attributes_applied(tmp_path):
    """Opened without decoding (mask_and_scale=False): scale_factor/_FillValue are attributes."""
    path = write_netcdf(cdse_dataset(scale=1e-4), tmp_path / "scaled.nc")
    raw = xr.open_dataset(path, mask_and_scale=False, decode_coords="all")
    assert raw["S2-L2A-B02"].dtype == np.uint16
    assert raw["S2-L2A-B02"].attrs["scale_factor"] == 1e-4
    _check_reflectance(odf.preprocess_s2(raw))


def test_dataarray_with_nodata_attribute():
    dn = odf.load_demo_cube().isel(t=slice(0, DATES), y=slice(0, SIZE), x=slice(0, SIZE))
    dn = dn.sel(bands=[*TEN_M, "SCL"]).astype(np.int32)
    dn[NODATA_DATE, 0, 0, 0] = -9999
    out = odf.preprocess_s2(dn.assign_attrs(nodata=-9999))
    assert np.isnan(out[NODATA_DATE, 0, 0, 0])
    assert np.isfinite(out[NODATA_DATE, 0, 0, 1])


def test_stac_common_names():
    ds = cdse_dataset(names="{}", extra=()).rename(
        {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "SCL": "scl"}
    )
    out = odf.preprocess_s2(ds)
    assert out["bands"].values.tolist() == list(TEN_M)
    _check_reflectance(out)


def test_duplicate_spellings_refused():
    ds = cdse_dataset(names="{}", extra=())
    ds["blue"] = ds["B02"]
    with pytest.raises(ProcessParameterInvalid, match="duplicate bands: B02, blue all mean B02"):
        odf.preprocess_s2(ds)


def test_other_grids(caplog):
    ds = cdse_dataset(names="{}")
    ds["dem"] = xr.DataArray(np.zeros((SIZE, SIZE)), dims=("y", "x"))  # static: no t
    with caplog.at_level(logging.INFO, logger="openeo_deepfeatures"):
        out = odf.preprocess_s2(ds)
    assert out["bands"].values.tolist() == list(TEN_M)
    assert any("dem are not on the bands' grid" in r.getMessage() for r in caplog.records)
    ds["B11"] = xr.DataArray(np.zeros((DATES, SIZE // 2, SIZE // 2)), dims=("t", "y2", "x2"))
    with pytest.raises(ProcessParameterInvalid, match=r"bands B11 are on another grid"):
        odf.preprocess_s2(ds)


def test_shipped_models_and_their_bands():
    assert list(SHIPPED_MODELS) == ["default", "s2-10m"]
    assert bands_needed(load_encoder("default").contract.channels) == (
        "B02",
        "B03",
        "B04",
        "B08",
        "B8A",
        "B11",
    )
    ten_m = load_encoder("s2-10m")
    assert bands_needed(ten_m.contract.channels) == TEN_M
    assert ten_m.contract.name == "deepfeatures-dense-s2-10m"
    assert ten_m.path.name == "s2_10m.onnx"
    with pytest.raises(ProcessParameterInvalid, match="nor a shipped model"):
        load_encoder("s2-20m")


def test_feature_cube_picks_the_10m_model_and_says_so(tmp_path, caplog):
    path = write_netcdf(cdse_dataset(), tmp_path / "cdse.nc")
    cube = open_cube(path)
    with caplog.at_level(logging.INFO, logger="openeo_deepfeatures"):
        features = feature_cube(cube)
    assert features.attrs["model_name"] == "deepfeatures-dense-s2-10m"
    assert any("using the shipped model 's2-10m'" in r.getMessage() for r in caplog.records)
    # independent of the file: the demo's DN with DN 0 (no data) where the file has 65535
    demo = odf.load_demo_cube().isel(t=slice(0, DATES), y=slice(0, SIZE), x=slice(0, SIZE))
    demo = demo.sel(bands=[*TEN_M, "SCL"]).copy(deep=True)
    demo[NODATA_DATE, 0].values.reshape(-1)[np.arange(5) * 7] = 0
    expected = feature_cube(demo, model="s2-10m").compute()
    got = features.compute()
    assert np.isfinite(got.values).all()
    np.testing.assert_allclose(got.values, expected.values, atol=1e-5)
    np.testing.assert_allclose(got["valid_fraction"], expected["valid_fraction"])


def test_explicit_model_needing_absent_bands():
    cube = cdse_dataset()
    with pytest.raises(BandMissing) as info:
        feature_cube(cube, model="default")
    message = info.value.to_dict()["message"]
    assert (
        "the model 'deepfeatures-dense-demo' needs bands B8A, B11; the cube has B02, B03, "
        in message
    )
    assert "'s2-10m' (B02, B03, B04, B08; fits this cube)" in message
    assert "np.str_" not in message and "[" not in message
    assert len(message) < 600


def test_no_model_fits():
    cube = cdse_dataset(bands=("B02", "B04", "SCL"), names="{}")
    with pytest.raises(
        BandMissing, match=r"no shipped model fits the cube's bands B02, B04, SCL, AOT"
    ):
        feature_cube(cube)


def test_only_10m_bands_without_scl_warns_and_runs(caplog):
    cube = cdse_dataset(bands=TEN_M, extra=("AOT", "WVP"))
    with caplog.at_level(logging.INFO, logger="openeo_deepfeatures"):
        features = feature_cube(cube).compute()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [w.getMessage() for w in warnings] == [
        "deepfeatures_preprocess_s2: the cube has no SCL band (B02, B03, B04, B08, AOT, WVP): "
        "clouds are NOT masked. Load SCL to mask them."
    ]
    assert np.isfinite(features.values).all()
    # nothing is masked but the 65535 pixels: every date is (almost) fully valid
    assert float(features["valid_fraction"].min()) > 0.98
