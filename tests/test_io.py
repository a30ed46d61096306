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


def test_write_zarr_regions_group_whole_rows_and_dates(tmp_path, monkeypatch):
    """Where a whole row (or a whole date chunk) fits in a region, a region takes several:
    one spatial chunk per date chunk is written ``REGION_CHUNKS`` date chunks at a time, so
    every core has a chunk to compute; the store reads back equal."""
    import dask.array as da

    import openeo_deepfeatures.io as io

    monkeypatch.setattr(io, "REGION_CHUNKS", 4)
    values = np.arange(10 * 2 * 6 * 6, dtype=np.float32).reshape(10, 2, 6, 6)

    def cube(chunks):
        return xr.DataArray(
            da.from_array(values, chunks=chunks),
            dims=("t", "bands", "y", "x"),
            coords={"bands": ["a", "b"], "y": np.arange(6.0), "x": np.arange(6.0)},
            name="cube",
        )

    one_per_date = io._regions(cube((1, 2, 6, 6)))  # 10 date chunks of one spatial chunk
    assert [(r["t"].start, r["t"].stop) for r in one_per_date] == [(0, 4), (4, 8), (8, 10)]
    assert all(r["y"] == slice(0, 6) and r["x"] == slice(0, 6) for r in one_per_date)
    rows = io._regions(cube((5, 2, 2, 3)))  # 2 x 3 x 2 chunks: two rows of two per region
    assert [(r["t"].start, r["y"].start, r["y"].stop) for r in rows] == [
        (0, 0, 4),
        (0, 4, 6),
        (5, 0, 4),
        (5, 4, 6),
    ]
    assert all(r["x"] == slice(0, 6) for r in rows)
    for chunks in ((1, 2, 6, 6), (5, 2, 2, 3)):
        path = write_zarr(cube(chunks), tmp_path / f"c{chunks[0]}.zarr")
        np.testing.assert_array_equal(xr.open_zarr(path)["cube"].values, values)


def test_write_zarr_regions_encode_like_xarray(tmp_path, monkeypatch):
    """Region by region, the data are CF-encoded as ``to_zarr`` encodes them: a cube that
    carries ``scale_factor`` / ``_FillValue`` / ``dtype`` encoding (as read from a scaled
    file) is stored as int16 and reads back as the same values, NaN included."""
    import dask
    import dask.array as da

    import openeo_deepfeatures.io as io

    monkeypatch.setattr(io, "REGION_CHUNKS", 1)
    values = (np.arange(4 * 1 * 6 * 6, dtype=np.float32).reshape(4, 1, 6, 6) / 10).round(1)
    values[1, 0, 2, 3] = np.nan
    cube = xr.DataArray(
        da.from_array(values, chunks=(1, 1, 3, 6)),
        dims=("t", "bands", "y", "x"),
        coords={"bands": ["a"], "y": np.arange(6.0), "x": np.arange(6.0)},
        name="cube",
    )
    cube.encoding = {"dtype": "int16", "scale_factor": 0.1, "_FillValue": -1}
    assert len(io._regions(cube)) == 8
    with dask.config.set(scheduler="synchronous"):  # the configured scheduler runs the regions
        path = write_zarr(cube, tmp_path / "c.zarr")
    raw = xr.open_zarr(path, mask_and_scale=False)["cube"]
    assert raw.dtype == np.int16 and raw.values[1, 0, 2, 3] == -1
    back = xr.open_zarr(path)["cube"].values
    np.testing.assert_allclose(back, values, atol=1e-6)


@pytest.mark.parametrize(
    ("codec", "level", "expected"),
    [
        ("zstd", None, ("ZstdCodec", 3)),
        ("zstd", 9, ("ZstdCodec", 9)),
        ("lz4", None, ("BloscCodec", 5)),
        ("lz4", 1, ("BloscCodec", 1)),
        ("none", None, None),
    ],
)
def test_write_zarr_codecs(tmp_path, codec, level, expected):
    import zarr

    cube = make_cube(bands=["B04", "B08"]).chunk({"t": 1})
    path = write_zarr(cube, tmp_path / "c.zarr", codec=codec, level=level)
    name = cube.name or "data"
    codecs = zarr.open_array(path / name).metadata.codecs
    compressors = [c for c in codecs if type(c).__name__ != "BytesCodec"]
    if expected is None:
        assert compressors == []
    else:
        (compressor,) = compressors
        assert type(compressor).__name__ == expected[0]
        assert getattr(compressor, "level", getattr(compressor, "clevel", None)) == expected[1]
        if expected[0] == "BloscCodec":
            assert compressor.cname.value == "lz4" and compressor.shuffle.value == "shuffle"
    back = open_cube(path).compute()
    np.testing.assert_array_equal(back.values, cube.values)


@pytest.mark.parametrize(
    ("codec", "level", "match"),
    [("gzip", None, "codec"), ("zstd", 0, "level"), ("lz4", 10, "level"), ("none", 3, "level")],
)
def test_write_zarr_bad_codec_writes_nothing(tmp_path, codec, level, match):
    with pytest.raises(ProcessParameterInvalid, match=match):
        write_zarr(make_cube(bands=["B04"]), tmp_path / "c.zarr", codec=codec, level=level)
    assert list(tmp_path.iterdir()) == []


def test_default_codecs(tmp_path):
    import zarr

    from openeo_deepfeatures.io import DEFAULT_CODEC, INDICES_CODEC, zarr_compressors

    assert (DEFAULT_CODEC, INDICES_CODEC) == ("zstd", "lz4")
    cube = make_cube(bands=["B04"])
    path = write_zarr(cube, tmp_path / "c.zarr")
    (compressor,) = zarr.open_array(path / (cube.name or "data")).metadata.codecs[1:]
    assert compressor == zarr_compressors(DEFAULT_CODEC)[0]
