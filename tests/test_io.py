"""Opening cubes and writing zarr atomically."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from openeo_deepfeatures.errors import FileNotFound, ProcessParameterInvalid
from openeo_deepfeatures.io import atomic_path, open_cube, write_zarr

from .conftest import make_cube


def test_atomic_path_moves_into_place_only_on_success(tmp_path):
    target = tmp_path / "out.zarr"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("1")
        assert not target.exists()
    assert (target / "x").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "bad.zarr") as tmp:
        tmp.mkdir()
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_atomic_path_overwrite(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(ProcessParameterInvalid, match="exists"), atomic_path(target):
        pass
    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_write_zarr_roundtrip_with_crs(tmp_path):
    cube = make_cube(bands=["B04", "B08"]).rio.write_crs("EPSG:3035")
    path = write_zarr(cube, tmp_path / "c.zarr")
    back = open_cube(path)
    assert back.rio.crs.to_epsg() == 3035
    xr.testing.assert_allclose(
        back.compute().drop_vars("spatial_ref"), cube.drop_vars("spatial_ref")
    )


def test_open_cube_errors(tmp_path):
    with pytest.raises(FileNotFound, match=r"missing\.nc' does not exist"):
        open_cube(tmp_path / "missing.nc")
    ds = xr.Dataset(
        {
            "a": (("bands", "y"), np.zeros((2, 3))),
            "b": (("bands", "y"), np.zeros((2, 3))),
        },
        coords={"bands": ["B04", "B08"]},
    )
    path = tmp_path / "two.nc"
    ds.to_netcdf(path)
    with pytest.raises(ProcessParameterInvalid, match="several variables"):
        open_cube(path)
    assert open_cube(path, variable="b").name == "b"
    with pytest.raises(ProcessParameterInvalid, match="not in"):
        open_cube(path, variable="c")


def test_write_zarr_streams_regions_and_keeps_an_enlarged_last_chunk(tmp_path, monkeypatch):
    """Tiled inference joins a small remainder to the last tile: (4, 4, 6) is stored with zarr
    chunks of 4, written region by region, and reads back equal."""
    import dask.array as da

    import openeo_deepfeatures.io as io

    monkeypatch.setattr(io, "REGION_CHUNKS", 2)
    values = np.arange(2 * 3 * 14 * 14, dtype=np.float32).reshape(2, 3, 14, 14)
    cube = xr.DataArray(
        da.from_array(values, chunks=(2, 3, (4, 4, 6), (4, 4, 6))),
        dims=("t", "bands", "y", "x"),
        coords={"bands": ["a", "b", "c"], "y": np.arange(14.0), "x": np.arange(14.0)},
        name="cube",
    )
    regions = io._regions(cube)
    assert len(regions) == 6  # 3 chunk-rows x 2 segments of <= 2 chunks
    assert io._store_chunks(cube) == (2, 3, 4, 4)
    path = write_zarr(cube, tmp_path / "c.zarr")
    back = xr.open_zarr(path, consolidated=False)["cube"]
    assert back.encoding["chunks"] == (2, 3, 4, 4)
    np.testing.assert_array_equal(back.values, values)
