"""preprocess_s2: scaling by processing baseline, nodata, SCL masking, dilation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.errors import BandMissing, DimensionNotAvailable, ProcessParameterInvalid
from openeo_deepfeatures.sentinel2 import boa_offset_for_baseline, normalize_band_label


def dn_cube(
    dn=1500, scl=4, *, dates=("2021-06-01", "2022-06-01"), dtype=np.uint16, bands=("B04", "B08")
):
    t, y, x = len(dates), 3, 3
    data = np.empty((t, len(bands) + 1, y, x), dtype=dtype)
    data[:, :-1] = dn
    data[:, -1] = scl
    return xr.DataArray(
        data,
        dims=("t", "bands", "y", "x"),
        coords={
            "t": pd.to_datetime(list(dates)),
            "bands": [*bands, "SCL"],
            "y": [2.0, 1.0, 0.0],
            "x": [0.0, 1.0, 2.0],
        },
    )


def test_offset_by_acquisition_date_and_float32():
    out = odf.preprocess_s2(dn_cube(1500))
    assert out.dtype == np.float32
    assert out["bands"].values.tolist() == ["B04", "B08"]  # SCL dropped
    np.testing.assert_allclose(out.isel(t=0).values, 0.15)  # before 2022-01-25: no offset
    np.testing.assert_allclose(out.isel(t=1).values, 0.05)  # baseline >= 04.00: -1000


def test_uint16_does_not_wrap_around():
    out = odf.preprocess_s2(dn_cube(500, dates=("2023-01-01",)))
    np.testing.assert_allclose(out.values, -0.05)  # (500 - 1000) / 10000, not 6.5


@pytest.mark.parametrize(
    ("baseline", "offset"),
    [
        ("04.00", -1000),
        ("N0400", -1000),
        ("N0509", -1000),
        (5.1, -1000),
        ("02.14", 0),
        ("N0301", 0),
    ],
)
def test_offset_for_baseline(baseline, offset):
    assert boa_offset_for_baseline(baseline) == offset


def test_baseline_argument_attribute_and_coordinate():
    cube = dn_cube(1500)
    np.testing.assert_allclose(odf.preprocess_s2(cube, processing_baseline="05.00").values, 0.05)
    np.testing.assert_allclose(odf.preprocess_s2(cube, boa_offset=0).values, 0.15)
    per_date = odf.preprocess_s2(cube, processing_baseline=["05.00", "02.00"])
    np.testing.assert_allclose(per_date.isel(t=0).values, 0.05)
    np.testing.assert_allclose(per_date.isel(t=1).values, 0.15)
    with_attr = cube.assign_attrs(processing_baseline="04.00")
    np.testing.assert_allclose(odf.preprocess_s2(with_attr).values, 0.05)
    coord = cube.assign_coords({"s2:processing_baseline": ("t", ["02.14", "05.09"])})
    out = odf.preprocess_s2(coord)
    np.testing.assert_allclose(out.isel(t=0).values, 0.15)
    np.testing.assert_allclose(out.isel(t=1).values, 0.05)


def test_dn_zero_is_nodata():
    cube = dn_cube(1500)
    cube[0, 0, 1, 1] = 0
    out = odf.preprocess_s2(cube)
    assert np.isnan(out[0, 0, 1, 1])
    assert np.isfinite(out[0, 1, 1, 1])


@pytest.mark.parametrize("scl_class", [0, 1, 3, 8, 9, 10])
def test_default_invalid_classes_masked(scl_class):
    cube = dn_cube(1500)
    cube.loc[{"bands": "SCL"}] = 4
    cube[0, -1, 0, 0] = scl_class
    out = odf.preprocess_s2(cube)
    assert np.isnan(out[0, :, 0, 0]).all()
    assert int(np.isnan(out).sum()) == 2  # one pixel, two bands


@pytest.mark.parametrize("scl_class", [2, 4, 5, 6, 7, 11])
def test_valid_classes_kept(scl_class):
    out = odf.preprocess_s2(dn_cube(1500, scl=scl_class))
    assert not np.isnan(out).any()


def test_configurable_classes_and_no_mask():
    cube = dn_cube(1500, scl=11)  # snow
    assert np.isnan(odf.preprocess_s2(cube, invalid_scl=[11]).values).all()
    assert not np.isnan(odf.preprocess_s2(dn_cube(1500, scl=9), mask=False).values).any()


@pytest.mark.parametrize("chunked", [False, True])
def test_dilation_disk(chunked):
    cube = dn_cube(1500, dates=("2021-06-01",))
    cube = xr.concat([cube] * 1, "t")
    big = xr.DataArray(
        np.full((1, 3, 9, 9), 1500, np.uint16),
        dims=cube.dims,
        coords={"t": cube.t, "bands": cube.bands, "y": np.arange(9.0)[::-1], "x": np.arange(9.0)},
    )
    big.loc[{"bands": "SCL"}] = 4
    big[0, -1, 4, 4] = 9
    if chunked:
        big = big.chunk({"y": 4, "x": 5})
    out = odf.preprocess_s2(big, dilation=2).compute()
    masked = np.isnan(out.isel(t=0, bands=0).values)
    yy, xx = np.mgrid[0:9, 0:9]
    np.testing.assert_array_equal(masked, (yy - 4) ** 2 + (xx - 4) ** 2 <= 4)


def test_dask_stays_lazy(demo_dn):
    lazy = odf.preprocess_s2(demo_dn.chunk({"t": 20}))
    assert lazy.chunks is not None
    xr.testing.assert_identical(lazy.compute(), odf.preprocess_s2(demo_dn))


def test_keep_scl():
    out = odf.preprocess_s2(dn_cube(1500), keep_scl=True)
    assert out["bands"].values.tolist() == ["B04", "B08", "SCL"]
    np.testing.assert_array_equal(out.sel(bands="SCL").values, 4)


def test_missing_scl_with_mask():
    no_scl = dn_cube(1500, scl=9).sel(bands=["B04", "B08"])
    with pytest.raises(BandMissing, match=r"needs the 'SCL' band; the cube has B04, B08\. "):
        odf.preprocess_s2(no_scl, mask=True)


def test_missing_scl_auto_warns_once_and_does_not_mask(caplog):
    no_scl = dn_cube(1500).sel(bands=["B04", "B08"])
    with caplog.at_level("WARNING", logger="openeo_deepfeatures.sentinel2"):
        out = odf.preprocess_s2(no_scl)  # mask="auto" is the default
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "clouds are NOT masked" in warnings[0].getMessage()
    np.testing.assert_allclose(out.isel(t=0).values, 0.15)
    assert "no cloud mask" in out.attrs["processing"]
    with_scl = odf.preprocess_s2(dn_cube(1500, scl=9))  # auto with SCL: masked
    assert np.isnan(with_scl.values).all()


def test_unknown_bands_dropped_with_one_info_line(caplog):
    cube = dn_cube().assign_coords(bands=["B04", "AOT", "SCL"])
    with caplog.at_level("INFO", logger="openeo_deepfeatures.sentinel2"):
        out = odf.preprocess_s2(cube)
    assert out["bands"].values.tolist() == ["B04"]
    infos = [r.getMessage() for r in caplog.records if "not Sentinel-2" in r.getMessage()]
    assert infos == [
        "deepfeatures_preprocess_s2: bands AOT are not Sentinel-2 L2A reflectance bands: dropped."
    ]


@pytest.mark.parametrize("nodata", [0, 65535])
def test_dn_nodata_conventions(nodata):
    cube = dn_cube(1500)
    cube[0, 0, 2, 2] = nodata
    out = odf.preprocess_s2(cube)
    assert int(np.isnan(out).sum()) == 1
    assert np.isnan(out[0, 0, 2, 2])


def test_scl_outside_the_classes_is_invalid():
    cube = dn_cube(1500)
    cube[1, -1, 0, 0] = 255  # SCL no-data of some exports
    out = odf.preprocess_s2(cube)
    assert np.isnan(out[1, :, 0, 0]).all()
    assert int(np.isnan(out).sum()) == 2


def test_bad_parameters():
    with pytest.raises(ProcessParameterInvalid, match="mask"):
        odf.preprocess_s2(dn_cube(), mask="yes")
    with pytest.raises(ProcessParameterInvalid, match="dilation"):
        odf.preprocess_s2(dn_cube(), dilation=-1)
    with pytest.raises(ProcessParameterInvalid, match="SCL classes"):
        odf.preprocess_s2(dn_cube(), invalid_scl=[42])
    with pytest.raises(ProcessParameterInvalid, match="processing baseline"):
        odf.preprocess_s2(dn_cube(), processing_baseline="new")
    with pytest.raises(ProcessParameterInvalid, match="boa_offset"):
        odf.preprocess_s2(dn_cube(), boa_offset="-1000")
    with pytest.raises(ProcessParameterInvalid, match="one entry per date"):
        odf.preprocess_s2(dn_cube(), processing_baseline=["04.00"])


def test_undated_cube_needs_a_baseline():
    cube = dn_cube().isel(t=0, drop=True)
    with pytest.raises(ProcessParameterInvalid, match="no dated 't' dimension"):
        odf.preprocess_s2(cube)
    np.testing.assert_allclose(odf.preprocess_s2(cube, boa_offset=0).values, 0.15)


def test_no_bands_dimension():
    with pytest.raises(DimensionNotAvailable):
        odf.preprocess_s2(dn_cube().isel(bands=0))


@pytest.mark.parametrize(
    ("given", "label"),
    [
        ("B4", "B04"),
        ("b08", "B08"),
        ("B8a", "B8A"),
        ("scl", "SCL"),
        ("B11", "B11"),
        ("S2-L2A-B02", "B02"),
        ("S2-L2A-B8A", "B8A"),
        ("S2-L2A-SCL", "SCL"),
        ("B02_10m", "B02"),
        ("B8A_20m", "B8A"),
        ("SCL_20m", "SCL"),
        ("SENTINEL2_L2A:B11", "B11"),
        ("blue", "B02"),
        ("nir", "B08"),
        ("nir08", "B8A"),
        ("swir16", "B11"),
        ("swir22", "B12"),
        ("rededge071", "B05"),
        ("rededge2", "B06"),
        ("AOT", "AOT"),
        ("S2-L2A-WVP", "S2-L2A-WVP"),
        ("PAR", "PAR"),
        ("my-red", "my-red"),
    ],
)
def test_band_aliases(given, label):
    assert normalize_band_label(given) == label


def test_demo_reflectance(demo_reflectance):
    assert demo_reflectance.dtype == np.float32
    assert "SCL" not in demo_reflectance["bands"].values
    clear = float(demo_reflectance.sel(bands="B04").notnull().mean())
    assert 0.5 < clear < 0.75  # SCL-clear share of the demo: about 63 %
    assert float(demo_reflectance.max()) < 2.0
