"""Inference: providers, dense tiling vs one whole-cube pass, patch windows vs a loop."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from onnx import TensorProto, helper

from openeo_deepfeatures.encoder import inference as inf
from openeo_deepfeatures.encoder import load_encoder, time_inputs
from openeo_deepfeatures.encoder.inference import dense_features, embed
from openeo_deepfeatures.encoder.loader import CPU
from openeo_deepfeatures.errors import (
    BandMissing,
    DimensionNotAvailable,
    ProcessParameterInvalid,
)
from openeo_deepfeatures.training import export

TOL = 1e-5


@pytest.fixture(scope="module")
def dense(dense_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("inference") / "dense.onnx"
    return load_encoder(export(dense_run.checkpoint, path).path)


@pytest.fixture(scope="module")
def patch(patch_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("inference") / "patch.onnx"
    return load_encoder(export(patch_run.checkpoint, path).path)


@pytest.fixture(scope="module")
def cube(demo_si) -> xr.DataArray:
    """45 dates x 30 x 28 px of real SI values (cloudy dates are NaN)."""
    return demo_si.isel(t=slice(10, 55), y=slice(5, 35), x=slice(12, 40))


def epoch_days(cube: xr.DataArray) -> np.ndarray:
    ms = cube["t"].values.astype("datetime64[ms]")
    return (ms - np.datetime64("1970-01-01", "ms")) / np.timedelta64(1, "D")


def whole_cube(encoder, cube: xr.DataArray) -> np.ndarray:
    """The oracle for dense models: one onnxruntime pass over the whole cube."""
    c = encoder.contract
    x = cube.sel(bands=list(c.channels)).transpose("t", "bands", "y", "x").values
    x_n, valid = c.normalise(x, axis=1)
    day, doy = time_inputs(epoch_days(cube)[None])
    return encoder.run(x_n[None], valid[None], day, doy)[0]


def patch_loop(encoder, cube: xr.DataArray) -> np.ndarray:
    """The oracle for patch models: one call per pixel-date, window built index by index.

    Outside the cube: values NaN (-> x 0, valid 0), dates those of the nearest acquisition.
    """
    c = encoder.contract
    x = cube.sel(bands=list(c.channels)).values
    days = epoch_days(cube)
    nt, nc, ny, nx = x.shape
    rt, rs = c.temporal_radius, c.spatial_radius
    out = np.empty((nt, c.k, ny, nx), np.float32)
    for t in range(nt):
        for y in range(ny):
            for xx in range(nx):
                win = np.full((2 * rt + 1, nc, 2 * rs + 1, 2 * rs + 1), np.nan, np.float32)
                wdays = np.empty(2 * rt + 1)
                for i, tt in enumerate(range(t - rt, t + rt + 1)):
                    wdays[i] = days[min(max(tt, 0), nt - 1)]
                    for j, yy in enumerate(range(y - rs, y + rs + 1)):
                        for k, x2 in enumerate(range(xx - rs, xx + rs + 1)):
                            if 0 <= tt < nt and 0 <= yy < ny and 0 <= x2 < nx:
                                win[i, :, j, k] = x[tt, :, yy, x2]
                x_n, valid = c.normalise(win, axis=1)
                day, doy = time_inputs(wdays)
                out[t, :, y, xx] = encoder.run(x_n[None], valid[None], day[None], doy[None])[0]
    return out


def borders(chunks: tuple[int, ...]) -> list[int]:
    """Indices on both sides of each boundary between chunks."""
    ends = np.cumsum(chunks)[:-1]
    return sorted({int(i) for e in ends for i in (e - 1, e)})


# --------------------------------------------------------------------------- dense


@pytest.mark.parametrize(
    "tile",
    [
        {"t": 16, "y": 12, "x": 10},
        {"t": 7, "y": 8, "x": 8},  # exactly the halo (temporal radius 7, spatial radius 8)
        {"t": 23, "y": 13, "x": 9},
        {"t": None, "y": 17, "x": 20},
    ],
    ids=str,
)
def test_dense_tiles_equal_whole_cube(dense, cube, tile, monkeypatch):
    c = dense.contract
    assert (c.spatial_radius, c.temporal_radius) == (8, 7)
    calls = []

    def counting(contract, session, x, days, **options):
        calls.append(x.shape)
        return dense_features(contract, session, x, days, **options)

    monkeypatch.setattr(inf, "dense_features", counting)
    out = embed(cube.chunk({"t": 5, "y": 30, "x": 7}), dense, tile=tile)
    assert isinstance(out.data, da.Array) and out.dtype == np.float32
    chunks_t, _, chunks_y, chunks_x = out.data.chunks
    for size, want in ((chunks_t, tile["t"]), (chunks_y, tile["y"]), (chunks_x, tile["x"])):
        assert want is None or size[0] == want
    got = out.compute(scheduler="synchronous").values
    ref = whole_cube(dense, cube)
    assert got.shape == ref.shape == (45, c.k, 30, 28)
    assert np.isfinite(got).all()
    assert float(np.abs(got - ref).max()) <= TOL
    for axis, chunks in ((0, chunks_t), (2, chunks_y), (3, chunks_x)):
        if tile["t"] is not None or axis:
            assert len(chunks) > 1
        idx = borders(chunks)
        diff = np.abs(np.take(got, idx, axis=axis) - np.take(ref, idx, axis=axis))
        assert float(diff.max(initial=0)) <= TOL, (axis, idx)
    # one onnxruntime call per tile, each with the halo on its inner sides only
    assert len(calls) == len(chunks_t) * len(chunks_y) * len(chunks_x)
    halo = {0: c.temporal_radius, 2: c.spatial_radius, 3: c.spatial_radius}
    expected = []
    for ct in _with_halo(chunks_t, halo[0]):
        for cy in _with_halo(chunks_y, halo[2]):
            expected += [(ct, len(c.channels), cy, cx) for cx in _with_halo(chunks_x, halo[3])]
    assert sorted(calls) == sorted(expected)


def _with_halo(chunks: tuple[int, ...], depth: int) -> list[int]:
    if len(chunks) == 1:
        return [chunks[0]]
    inner = [2] * len(chunks)
    inner[0] = inner[-1] = 1
    return [c + n * depth for c, n in zip(chunks, inner, strict=True)]


def test_halo_covers_the_receptive_field(dense, cube):
    """Tiling relies on this: a change reaches no further than the contract's halo."""
    c = dense.contract
    changed = cube.copy(deep=True)
    t0, y0, x0 = 22, 15, 14
    changed[t0, :, y0, x0] = changed[t0, :, y0, x0].fillna(0.3) + 0.5
    diff = np.abs(whole_cube(dense, changed) - whole_cube(dense, cube)).max(axis=1)
    reach = np.argwhere(diff > 0)
    assert len(reach)
    assert np.abs(reach[:, 0] - t0).max() <= c.temporal_radius
    assert np.abs(reach[:, 1] - y0).max() <= c.spatial_radius
    assert np.abs(reach[:, 2] - x0).max() <= c.spatial_radius


def test_numpy_in_computed_out_any_layout(dense, cube):
    """Dims in another order, 'time'/'band' names, extra and reordered bands: same result."""
    ref = whole_cube(dense, cube)
    extra = xr.full_like(cube.isel(bands=[0]), 7.0).assign_coords(bands=["FOO"])
    shuffled = xr.concat([extra, cube.isel(bands=slice(None, None, -1))], dim="bands")
    shuffled = shuffled.transpose("y", "x", "bands", "t").rename(t="time", bands="band")
    out = embed(shuffled, dense, tile=16)
    assert isinstance(out.data, np.ndarray)
    assert out.dims == ("t", "bands", "y", "x")
    assert float(np.abs(out.values - ref).max()) <= TOL


def test_input_arrays_are_not_modified(dense, cube):
    """Tiles are normalised in place only when they are the task's own (computed indices): a
    float32 numpy SI cube passed in comes back unchanged."""
    si = cube.astype(np.float32)
    before = si.values.copy()
    embed(si, dense, tile=16)
    np.testing.assert_array_equal(si.values, before)


def test_coords_crs_and_attrs(dense, cube):
    out = embed(cube.chunk({"t": 20}), dense)
    assert out.name == "features"
    assert out["bands"].values.tolist() == list(dense.contract.features)
    assert out["bands"].values.tolist()[0] == "F01"
    for dim in ("t", "y", "x"):
        np.testing.assert_array_equal(out[dim].values, cube[dim].values)
    assert out.rio.crs == cube.rio.crs
    assert out.rio.crs.to_epsg() == 3035
    assert out.rio.transform() == cube.rio.transform()
    assert out.attrs["model_sha256"] == dense.sha256
    assert out.attrs["model_name"] == dense.contract.name == "test-dense"
    assert out.attrs["channels"].split(",") == list(dense.contract.channels)


def test_processes_scheduler_and_threads(dense, cube):
    """The block function pickles (workers open their own sessions); threads do not matter."""
    ref = whole_cube(dense, cube)
    out = embed(cube.chunk({"t": 45}), dense, tile={"t": 20, "y": 16, "x": 16}, threads=1)
    got = out.compute(scheduler="processes", num_workers=2).values
    assert float(np.abs(got - ref).max()) <= TOL


# --------------------------------------------------------------------------- patch


@pytest.fixture(scope="module")
def small(demo_si) -> xr.DataArray:
    """13 dates (two of them cloudy) x 16 x 14 px."""
    small = demo_si.isel(t=slice(20, 33), y=slice(30, 46), x=slice(3, 17))
    assert np.isnan(small.values).all(axis=(1, 2, 3)).any()
    return small


@pytest.fixture(scope="module")
def patch_reference(patch, small) -> np.ndarray:
    return patch_loop(patch, small)


@pytest.mark.parametrize(
    ("tile", "batch_size"),
    [({"t": 6, "y": 8, "x": 7}, 37), (None, None), ({"t": None, "y": 7, "x": 20}, 1)],
    ids=str,
)
def test_patch_windows_equal_reference_loop(patch, small, patch_reference, tile, batch_size):
    c = patch.contract
    assert c.patch_size == (11, 15, 15)
    out = embed(small.chunk({"t": 4}), patch, tile=tile, batch_size=batch_size)
    assert isinstance(out.data, da.Array)
    if tile and tile["t"]:
        assert len(out.data.chunks[0]) > 1 and len(out.data.chunks[2]) > 1
        assert len(out.data.chunks[3]) > 1
    got = out.values
    assert got.shape == (13, c.k, 16, 14) and got.dtype == np.float32
    assert float(np.abs(got - patch_reference).max()) <= TOL


def test_patch_numpy_input(patch, small, patch_reference):
    out = embed(small, patch, tile=8)
    assert isinstance(out.data, np.ndarray)
    assert float(np.abs(out.values - patch_reference).max()) <= TOL


# --------------------------------------------------------------------------- no data


@pytest.mark.parametrize("family", ["dense", "patch"])
def test_all_cloud_dates_and_cubes_give_finite_deterministic_features(family, dense, patch, small):
    encoder = dense if family == "dense" else patch
    oracle = whole_cube if family == "dense" else patch_loop
    cloudy = small if family == "dense" else small.isel(y=slice(0, 9), x=slice(0, 8))
    cloudy = cloudy.copy(deep=True)
    cloudy[3:6] = np.nan  # three all-cloud dates in a row
    first = embed(cloudy.chunk({"t": 5}), encoder, tile=8)
    again = embed(cloudy, encoder, tile=16)
    assert np.isfinite(first.values).all()
    np.testing.assert_array_equal(first.values, embed(cloudy.chunk({"t": 5}), encoder, tile=8))
    np.testing.assert_allclose(first.values, again.values, rtol=0, atol=TOL)
    assert float(np.abs(first.values - oracle(encoder, cloudy)).max()) <= TOL
    nothing = xr.full_like(cloudy, np.nan)  # not one clear pixel-date
    blank = embed(nothing, encoder, tile=16).values
    assert np.isfinite(blank).all()
    np.testing.assert_array_equal(blank, embed(nothing, encoder, tile=16).values)


# --------------------------------------------------------------------------- bad input


def test_missing_channels_are_named(dense, cube):
    with pytest.raises(BandMissing, match=r"\['NDWI', 'kNDVI'\]"):
        embed(cube.drop_sel(bands=["NDWI", "kNDVI"]), dense)


@pytest.mark.parametrize(
    "rename", [{"y": "lat", "x": "lon"}, {"t": "date"}, {"bands": "channel"}], ids=str
)
def test_wrong_dimension_names(dense, cube, rename):
    with pytest.raises(DimensionNotAvailable, match="needs a cube with dimensions"):
        embed(cube.rename(rename), dense)


def test_extra_dimension(dense, cube):
    with pytest.raises(DimensionNotAvailable, match=r"unexpected \['run'\]"):
        embed(cube.expand_dims(run=2), dense)


@pytest.mark.parametrize(
    ("tile", "what"),
    [(7, "y = 7 pixels"), ({"t": 6}, "t = 6 dates"), ({"x": 3, "y": 12}, "x = 3 pixels")],
    ids=str,
)
def test_tile_smaller_than_halo(dense, cube, tile, what):
    with pytest.raises(ProcessParameterInvalid, match=f"{what} is smaller than the halo"):
        embed(cube, dense, tile=tile)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile": 0}, "positive number of pixels"),
        ({"tile": {"z": 4}}, "keys are"),
        ({"threads": 0}, "'threads'"),
        ({"batch_size": 8}, "runs one tile per call"),
        ({"encoder": 3}, "an Encoder, the path"),
    ],
    ids=str,
)
def test_invalid_options(dense, cube, kwargs, match):
    kwargs = {"encoder": dense, **kwargs}
    with pytest.raises(ProcessParameterInvalid, match=match):
        embed(cube, **kwargs)


def test_patch_batch_size_must_be_positive(patch, small):
    with pytest.raises(ProcessParameterInvalid, match="'batch_size'"):
        embed(small, patch, batch_size=0)


def test_unsorted_dates(dense, cube):
    with pytest.raises(ProcessParameterInvalid, match="ascending"):
        embed(cube.isel(t=slice(None, None, -1)), dense)


def test_not_onnx_and_no_contract(cube, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(ProcessParameterInvalid, match="not a readable ONNX model"):
        embed(cube, junk)
    plain = tmp_path / "plain.onnx"
    node = helper.make_node("Identity", ["x"], ["features"])
    graph = helper.make_graph(
        [node],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1])],
    )
    onnx.save_model(helper.make_model(graph), plain)
    with pytest.raises(ProcessParameterInvalid, match="no DeepFeatures encoder contract"):
        embed(cube, str(plain))


def test_unavailable_provider(dense, cube):
    available = ort.get_available_providers()
    missing = next(p for p in ort.get_all_providers() if p not in available)
    with pytest.raises(ProcessParameterInvalid, match=f"{missing}.*available here") as err:
        embed(cube, dense, providers=[missing, CPU])
    assert all(p in str(err.value) for p in available)
    with pytest.raises(ProcessParameterInvalid, match="NoSuchExecutionProvider"):
        embed(cube, dense, providers="NoSuchExecutionProvider")


def test_dask_graph_is_lazy(dense, cube, monkeypatch):
    """Building the graph runs no tile; computing runs each tile once."""
    calls = []
    monkeypatch.setattr(
        inf, "dense_features", lambda *a, **o: calls.append(1) or dense_features(*a, **o)
    )
    out = embed(cube.chunk({"t": 45}), dense, tile={"t": 30, "y": 15, "x": 14})
    assert not calls
    with dask.config.set(scheduler="synchronous"):
        out.compute()
    assert len(calls) == 2 * 2 * 2


def test_embed_reflectance_equals_embed_of_the_index_cube_at_tile_borders():
    """Indices computed inside each haloed tile give the features of the index cube."""
    import openeo_deepfeatures as odf
    from openeo_deepfeatures.encoder.inference import embed_reflectance

    enc = load_encoder()
    refl = odf.preprocess_s2(odf.load_demo_cube().isel(t=slice(0, 30)))
    expected = embed(odf.compute_indices(refl, list(enc.contract.channels)), enc).values
    tile = {"t": 12, "y": 20, "x": 20}  # borders at t 12 and y/x 20, 40
    got = embed_reflectance(refl.chunk({"t": 10, "y": 25, "x": 25}), enc, tile=tile)
    assert got.chunks[0] == (12, 18) and got.chunks[2] == (20, 20, 10)
    values = got.values
    assert np.isfinite(values).all()
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5)


def test_embed_reflectance_names_missing_bands():
    import openeo_deepfeatures as odf
    from openeo_deepfeatures.encoder.inference import embed_reflectance
    from openeo_deepfeatures.errors import BandMissing

    refl = odf.preprocess_s2(odf.load_demo_cube().isel(t=slice(0, 4))).drop_sel(bands="B11")
    with pytest.raises(BandMissing, match="B11"):
        embed_reflectance(refl)
