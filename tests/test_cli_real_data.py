"""CDSE-shaped files through the CLI and ``deepfeatures run``; unreadable files; plain zarr reads."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.cli import main
from openeo_deepfeatures.features import feature_cube

from .cdse_cubes import cdse_dataset, write_netcdf


@pytest.fixture(scope="module")
def cdse_nc(tmp_path_factory):
    """``S2-L2A-B02/B03/B04/B08/SCL`` + ``AOT``, uint16, 65535 no-data, ``crs`` grid mapping."""
    return write_netcdf(cdse_dataset(), tmp_path_factory.mktemp("cdse") / "openEO.nc")


def open_plain(path) -> xr.Dataset:
    """``xr.open_zarr(path)`` as a user calls it: no arguments, and no warning allowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(path)


def _check_grid(da: xr.DataArray, reference: xr.Dataset) -> None:
    assert da.rio.crs is not None and da.rio.crs.to_epsg() == 3035
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # affine's own, in rioxarray
        assert tuple(da.rio.transform()) == pytest.approx(tuple(reference.rio.transform()))


def test_feature_cube_of_a_cdse_netcdf(tmp_path, cdse_nc, capsys):
    out = tmp_path / "OUT.zarr"
    assert main(["feature-cube", str(cdse_nc), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "using the shipped model 's2-10m'" in err
    assert "bands AOT are not Sentinel-2 L2A reflectance bands: dropped" in err
    stored = open_plain(out)
    assert "spatial_ref" in stored.coords and list(stored.data_vars) == ["features"]
    source = xr.open_dataset(cdse_nc, decode_coords="all")
    _check_grid(stored["features"], source)
    provenance = json.loads(stored["features"].attrs["deepfeatures_provenance"])
    assert provenance["model"] == "deepfeatures-dense-s2-10m"
    assert provenance["channels"] == list(odf.load_encoder("s2-10m").contract.channels)
    expected = feature_cube(cdse_dataset()).compute()
    np.testing.assert_allclose(stored["features"].values, expected.values, atol=1e-6)
    item = json.loads(out.with_suffix(".stac.json").read_text())
    assert item["properties"]["proj:code"] == "EPSG:3035"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_explicit_model_without_its_bands_is_one_line(tmp_path, cdse_nc, capsys):
    assert (
        main(
            [
                "feature-cube",
                str(cdse_nc),
                "-o",
                str(tmp_path / "o.zarr"),
                "--model",
                "default",
                "-q",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepfeatures: error: [BandMissing] ")
    assert "needs bands B8A, B11; the cube has B02, B03, B04, B08, SCL, AOT" in err
    assert "--model NAME" in err and "'s2-10m'" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o.zarr").exists()


def test_indices_compute_of_a_cdse_netcdf(tmp_path, cdse_nc, capsys):
    out = tmp_path / "si.zarr"
    assert (
        main(["indices", "compute", str(cdse_nc), "-o", str(out), "--indices", "NDVI", "EVI", "-q"])
        == 0
    )
    stored = open_plain(out)
    (name,) = stored.data_vars
    _check_grid(stored[name], xr.open_dataset(cdse_nc, decode_coords="all"))
    refl = odf.preprocess_s2(cdse_dataset())
    expected = odf.compute_indices(refl, ["NDVI", "EVI"])
    np.testing.assert_allclose(stored[name].values, expected.values, equal_nan=True, rtol=1e-6)


def test_run_load_collection_of_a_registered_cdse_file(tmp_path, cdse_nc, capsys):
    graph = {
        "process_graph": {
            "load": {
                "process_id": "load_collection",
                "arguments": {
                    "id": "CDSE_S2",
                    "spatial_extent": None,
                    "temporal_extent": None,
                    "bands": ["B02", "B03", "B04", "B08", "SCL"],
                },
            },
            "features": {
                "process_id": "deepfeatures_feature_cube",
                "namespace": "deepfeatures",
                "arguments": {"data": {"from_node": "load"}, "model": {"from_parameter": "m"}},
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "features"}, "format": "ZARR"},
                "result": True,
            },
        }
    }
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(graph))
    out = tmp_path / "out"
    argv = ["run", str(path), "--collection", f"CDSE_S2={cdse_nc}", "-o", str(out), "-q"]
    assert main([*argv, "--param", "m=default"]) == 2  # the 6-band model, named: refused
    assert "needs bands B8A, B11" in capsys.readouterr().err
    assert main([*argv, "--param", "m=s2-10m"]) == 0  # a shipped model by name
    item = json.loads(capsys.readouterr().out)
    stored = open_plain(item["assets"]["data"]["href"])
    (name,) = stored.data_vars
    _check_grid(stored[name], xr.open_dataset(cdse_nc, decode_coords="all"))
    expected = feature_cube(cdse_dataset()).compute()
    np.testing.assert_allclose(stored[name].values, expected.values, atol=1e-6)
    assert stored[name]["bands"].values.tolist() == [f"F{i:02d}" for i in range(1, 7)]


def _corrupt_files(tmp_path, cdse_nc):
    data = bytearray(cdse_nc.read_bytes())
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"CDF\x01" + b"\x00not a netCDF file" * 64)
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    empty = tmp_path / "empty.nc"
    empty.write_bytes(b"")
    # same size, header intact, data overwritten: fails only when the chunks are read
    ds = cdse_dataset(dates=40, size=40)
    big = tmp_path / "big.nc"
    ds.to_netcdf(
        big,
        encoding={v: {"zlib": True, "chunksizes": (5, 40, 40)} for v in ds.data_vars if v != "crs"},
    )
    raw = bytearray(big.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + len(raw) // 4] = b"\x5a" * (len(raw) // 4)
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(bytes(raw))
    return [garbage, truncated, empty, corrupt]


@pytest.mark.parametrize(
    "command",
    [["indices", "compute"], ["feature-cube"], ["embed"]],
    ids=["indices-compute", "feature-cube", "embed"],
)
def test_unreadable_input_is_one_screen(tmp_path, cdse_nc, capsys, command):
    for bad in _corrupt_files(tmp_path, cdse_nc):
        out = tmp_path / f"{bad.stem}.zarr"
        assert main([*command, str(bad), "-o", str(out), "-q"]) == 2, bad.name
        err = capsys.readouterr().err.strip()
        assert err.startswith("deepfeatures: error: [FileContentInvalid] "), err
        assert f"File '{bad}' cannot be read: " in err
        assert "Traceback" not in err and len(err.splitlines()) == 1
        assert not out.exists()
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_missing_input_is_file_not_found(tmp_path, capsys):
    assert main(["feature-cube", str(tmp_path / "nope.nc"), "-o", str(tmp_path / "o.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepfeatures: error: [FileNotFound] File ")
    assert "nope.nc' does not exist" in err


def test_demo_outputs_open_plainly(tmp_path):
    assert main(["demo", "-o", str(tmp_path), "-q"]) == 0
    stored = open_plain(tmp_path / "features.zarr")
    _check_grid(stored["features"], odf.load_demo_cube().to_dataset(name="dn"))
    assert "valid_fraction" in stored.coords
