"""The deepfeatures command: list, compute (netCDF/zarr/GeoTIFF in, zarr + STAC item out), demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import rioxarray  # noqa: F401
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.cli import main
from openeo_deepfeatures.data import demo_path
from openeo_deepfeatures.io import open_cube

from .conftest import make_cube


def test_list(capsys):
    assert main(["indices", "list", "--bands", "B04", "B08"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()]
    assert names == odf.list_indices(bands=["B04", "B08"])


def test_list_json(capsys):
    assert main(["indices", "list", "--json", "--domain", "kernel"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"kEVI", "kIPVI", "kNDVI", "kRVI", "kVARI"}
    assert all(r["formula"] for r in rows)


def test_compute_demo_netcdf_with_preprocess(tmp_path):
    out = tmp_path / "si.zarr"
    assert (
        main(
            [
                "indices",
                "compute",
                str(demo_path()),
                "-o",
                str(out),
                "--preprocess",
                "--indices",
                "NDVI",
                "EVI",
                "-q",
            ]
        )
        == 0
    )
    result = open_cube(out)
    assert result.rio.crs.to_epsg() == 3035
    assert result["bands"].values.tolist() == ["NDVI", "EVI"]
    expected = odf.compute_indices(odf.preprocess_s2(odf.load_demo_cube()), ["NDVI", "EVI"])
    np.testing.assert_allclose(result.values, expected.values, equal_nan=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # its STAC item (the builder's fields: tests/test_stac.py), the input recorded
    item = json.loads((tmp_path / "si.stac.json").read_text())
    assert item["assets"]["data"]["href"] == "./si.zarr"
    assert item["properties"]["cube:dimensions"]["bands"]["values"] == ["NDVI", "EVI"]
    assert item["properties"]["deepfeatures:input"] == str(demo_path())


def test_compute_geotiff(tmp_path):
    cube = make_cube(bands=["B04", "B08"], shape=(1, 6, 7)).isel(t=0, drop=True)
    cube = cube.rename(bands="band").rio.write_crs("EPSG:32633")
    tif = tmp_path / "in.tif"
    cube.rio.to_raster(tif)
    out = tmp_path / "o.zarr"
    assert (
        main(["indices", "compute", str(tif), "-o", str(out), "--band-names", "B04", "B08", "-q"])
        == 0
    )
    result = open_cube(out)
    assert result.rio.crs.to_epsg() == 32633
    ndvi = (cube.sel(band="B08") - cube.sel(band="B04")) / (
        cube.sel(band="B08") + cube.sel(band="B04")
    )
    np.testing.assert_allclose(result.sel(bands="NDVI").values, ndvi.values, rtol=1e-6)


def test_compute_zarr_of_band_variables_with_constants(tmp_path):
    src = tmp_path / "bands.zarr"
    make_cube(bands=["B04", "B08"]).to_dataset(dim="bands").to_zarr(
        src, zarr_format=3, consolidated=False
    )
    out = tmp_path / "o.zarr"
    assert (
        main(
            [
                "indices",
                "compute",
                str(src),
                "-o",
                str(out),
                "--indices",
                "SAVI",
                "--constants",
                "L=0.25",
                "-q",
            ]
        )
        == 0
    )
    cube = make_cube(bands=["B04", "B08"])
    expected = odf.compute_indices(cube, "SAVI", constants={"L": 0.25})
    np.testing.assert_allclose(open_cube(out).values, expected.values, rtol=1e-6)


def test_compute_codec_choice(tmp_path, capsys):
    import zarr

    cube = make_cube(bands=["B04", "B08"])
    src = tmp_path / "in.nc"
    cube.to_netcdf(src)
    out = tmp_path / "o.zarr"
    args = ["indices", "compute", str(src), "-o", str(out), "--indices", "NDVI", "-q"]
    assert main(args) == 0  # default: lz4
    codecs = zarr.open_array(out / "spectral_indices").metadata.codecs
    assert type(codecs[1]).__name__ == "BloscCodec" and codecs[1].cname.value == "lz4"
    assert main([*args, "--codec", "zstd", "--level", "7", "--overwrite"]) == 0
    codecs = zarr.open_array(out / "spectral_indices").metadata.codecs
    assert [type(c).__name__ for c in codecs] == ["BytesCodec", "ZstdCodec"]
    assert codecs[1].level == 7
    assert main([*args, "--codec", "none", "--overwrite"]) == 0
    codecs = zarr.open_array(out / "spectral_indices").metadata.codecs
    assert [type(c).__name__ for c in codecs] == ["BytesCodec"]
    np.testing.assert_allclose(
        open_cube(out).values, odf.compute_indices(cube, "NDVI").values, rtol=1e-6
    )
    assert main([*args, "--codec", "lz4", "--level", "30", "--overwrite"]) == 2
    assert "level" in capsys.readouterr().err


def test_bad_input_leaves_no_output(tmp_path, capsys):
    # float DN without SCL or metadata: nothing tells they are DN until the values are seen;
    # refused while computing, nothing written
    src = tmp_path / "in" / "dn.nc"
    src.parent.mkdir()
    dn = odf.load_demo_cube().sel(bands=["B04", "B08"]).isel(t=slice(0, 4)).astype("float32")
    dn.to_dataset(dim="bands").to_netcdf(src)
    out = tmp_path / "o.zarr"
    assert main(["indices", "compute", str(src), "-o", str(out), "--indices", "NDVI", "-q"]) == 2
    assert "digital numbers" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_integer_dn_are_converted_first(tmp_path, capsys):
    out = tmp_path / "o.zarr"
    assert main(["indices", "compute", str(demo_path()), "-o", str(out), "--indices", "NDVI"]) == 0
    assert "holds Sentinel-2 digital numbers: converting to reflectance" in capsys.readouterr().err
    expected = odf.compute_indices(odf.preprocess_s2(odf.load_demo_cube()), ["NDVI"])
    np.testing.assert_allclose(open_cube(out).values, expected.values, rtol=1e-6, equal_nan=True)


def test_failure_during_write_leaves_no_output(tmp_path, capsys):
    src = tmp_path / "dn.zarr"
    (make_cube(bands=["B04", "B08"], shape=(4, 5, 5)) * 10000).to_dataset(dim="bands").to_zarr(
        src, zarr_format=3, consolidated=False
    )
    out = tmp_path / "o.zarr"
    # float DN is only detected chunk by chunk while writing: the write fails, no partial store
    assert (
        main(
            [
                "indices",
                "compute",
                str(src),
                "-o",
                str(out),
                "--indices",
                "NDVI",
                "--chunks",
                "t=1",
                "-q",
            ]
        )
        == 2
    )
    assert "digital numbers" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dn.zarr"]


def test_existing_output_refused(tmp_path, capsys):
    out = tmp_path / "o.zarr"
    out.mkdir()
    args = [
        "indices",
        "compute",
        str(demo_path()),
        "-o",
        str(out),
        "--preprocess",
        "--indices",
        "NDVI",
        "-q",
    ]
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert open_cube(out)["bands"].values.tolist() == ["NDVI"]


def test_unknown_index_and_bad_constant(tmp_path, capsys):
    args = ["indices", "compute", str(demo_path()), "-o", str(tmp_path / "o.zarr"), "--preprocess"]
    assert main([*args, "--indices", "NDVII"]) == 2
    assert "IndexUnknown" in capsys.readouterr().err
    assert main([*args, "--constant", "L=abc"]) == 2
    assert "NAME=NUMBER" in capsys.readouterr().err


def test_missing_input(tmp_path, capsys):
    assert (
        main(["indices", "compute", str(tmp_path / "nope.nc"), "-o", str(tmp_path / "o.zarr")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_demo_command(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "openeo_deepfeatures.cli", "demo", "-o", str(tmp_path), "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "6 features per pixel and date" in proc.stdout
    features = xr.open_zarr(tmp_path / "features.zarr", consolidated=False)["features"]
    assert features.sizes == {"t": 140, "bands": 6, "y": 50, "x": 50}
    assert np.isfinite(features.values).all()
    assert (tmp_path / "features.stac.json").is_file() and (tmp_path / "features.png").is_file()


def test_run_client_graph_matches_native_api(tmp_path, capsys):
    from openeo.rest.datacube import DataCube

    cube = DataCube.load_collection(
        "DEMO_S2",
        connection=None,
        bands=["B04", "B08", "SCL"],
        temporal_extent=["2018-03-01", "2018-10-01"],
    )
    cube = cube.filter_bbox(west=5272000, east=5272500, south=2532500, north=2533010, crs=3035)
    cube = cube.process("deepfeatures_preprocess_s2", data=cube, namespace="deepfeatures")
    cube = cube.process("deepfeatures_spectral_indices", data=cube, indices=["NDVI", "kNDVI"])
    cube = cube.reduce_dimension(dimension="t", reducer="median")
    cube = cube.save_result(format="netCDF")
    graph = tmp_path / "graph.json"
    graph.write_text(cube.to_json())
    assert main(["run", str(graph), "-o", str(tmp_path / "out"), "-q"]) == 0
    item = json.loads(capsys.readouterr().out)
    got = xr.open_dataarray(item["assets"]["data"]["href"])
    dn = odf.load_demo_cube().sel(bands=["B04", "B08", "SCL"], t=slice("2018-03-01", "2018-09-30"))
    dn = dn.sel(x=slice(5272000, 5272500), y=slice(2533010, 2532500))
    ref = odf.compute_indices(odf.preprocess_s2(dn), ["NDVI", "kNDVI"]).median("t")
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-6, equal_nan=True)
    assert got.shape == ref.shape and got.sizes["x"] < 50


def test_run_parameters_and_errors(tmp_path, capsys):
    graph = tmp_path / "g.json"
    graph.write_text(
        json.dumps(
            {
                "process_graph": {
                    "a": {
                        "process_id": "add",
                        "arguments": {"x": {"from_parameter": "v"}, "y": 2},
                        "result": True,
                    }
                }
            }
        )
    )
    assert main(["run", str(graph), "--param", "v=40"]) == 0
    assert capsys.readouterr().out.strip() == "42"
    assert main(["run", str(graph)]) == 2
    assert "ProcessParameterMissing" in capsys.readouterr().err
