"""The feature-embedding UDF: equal to the native ``embed`` (whole cube, in windows, at the cube's
borders, on the exec path of openEO backends), models from URLs and relative paths, errors."""

from __future__ import annotations

import ast
import functools
import hashlib
import http.server
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import onnx
import openeo
import pytest
import xarray as xr
from onnx import TensorProto, helper
from openeo.metadata import Band, BandDimension, CollectionMetadata, TemporalDimension
from openeo.udf import UdfData, XarrayDataCube, execute_local_udf, run_udf_code
from openeo_deepfeatures.udf import feature_embedding as fe

import openeo_deepfeatures as odf
from openeo_deepfeatures.encoder import load_encoder
from openeo_deepfeatures.encoder.inference import embed

UDF_FILE = Path(__file__).resolve().parents[2] / "udf" / "feature_embedding.py"
CODE = UDF_FILE.read_text("utf-8")
TOL = 1e-5


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def si(encoder) -> xr.DataArray:
    """The demo cube's reflectance -> the default model's 146 indices (140 dates, 50 x 50 px)."""
    cube = odf.preprocess_s2(odf.load_demo_cube())
    return odf.compute_indices(cube, list(encoder.contract.channels)).load()


@pytest.fixture(scope="module")
def native(si, encoder) -> np.ndarray:
    return embed(si, encoder).values


@pytest.fixture(scope="module")
def small(si) -> xr.DataArray:
    """30 dates x 20 x 18 px of the SI cube, for the cheaper tests."""
    return si.isel(t=slice(40, 70), y=slice(10, 30), x=slice(25, 43))


@pytest.fixture
def context(encoder) -> dict:
    return {"model": str(encoder.path), "model_sha256": encoder.sha256}


def run_udf(cube: xr.DataArray, context: dict) -> xr.DataArray:
    """The UDF as openEO backends run it: the file's text through ``run_udf_code``."""
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context)
    return run_udf_code(code=CODE, data=data).get_datacube_list()[0].get_array()


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


# --------------------------------------------------------------------------- equal to embed


def test_run_udf_code_equals_native_embed(si, native, context, encoder):
    out = run_udf(si, context)
    assert out.dims == ("t", "bands", "y", "x") and out.dtype == np.float32
    assert list(out["bands"].values) == list(encoder.contract.features)
    for dim in ("t", "y", "x"):
        np.testing.assert_array_equal(out[dim].values, si[dim].values)
    assert "spatial_ref" in out.coords
    assert np.isfinite(out.values).all()
    assert max_diff(out.values, native) <= TOL


def test_execute_local_udf_from_netcdf(si, native, context, tmp_path):
    path = tmp_path / "si.nc"
    XarrayDataCube(si).save_to_file(path, fmt="netcdf")
    result = execute_local_udf(openeo.UDF(CODE, context=context), path, fmt="netcdf")
    out = result.get_datacube_list()[0].get_array()  # the input went through float64 here
    assert out.dims == ("t", "bands", "y", "x")
    assert max_diff(out.values, native) <= TOL


def test_channels_by_label_any_dimension_order(small, encoder, context):
    want = embed(small, encoder).values
    shuffled = small.isel(bands=np.random.default_rng(0).permutation(small.sizes["bands"]))
    extra = xr.full_like(small.isel(bands=[0]), 7.0).assign_coords(bands=["EXTRA"])
    cube = xr.concat([shuffled, extra], dim="bands")
    cube = cube.rename(t="time", bands="band").transpose("y", "band", "x", "time")
    out = fe.apply_datacube(cube, context)
    assert out.dims == ("t", "bands", "y", "x")
    assert max_diff(out.values, want) <= TOL


# --------------------------------------------------------------------------- windows


def padded(cube: xr.DataArray, pad: int) -> xr.DataArray:
    """The cube with ``pad`` px of no-data around it, coordinates continued (as backends do)."""
    values = np.pad(cube.values, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
    coords = {"t": cube["t"].values, "bands": cube["bands"].values}
    for dim in ("y", "x"):
        v = cube[dim].values
        step = v[1] - v[0]
        coords[dim] = np.concatenate(
            [v[0] - step * np.arange(pad, 0, -1), v, v[-1] + step * np.arange(1, pad + 1)]
        )
    return xr.DataArray(values, dims=cube.dims, coords=coords)


def run_in_windows(cube: xr.DataArray, context: dict, size: int, overlap: int, apply):
    """apply_neighborhood by hand: windows of ``size`` px plus ``overlap`` px on each side
    (no-data beyond the cube), the overlap cut away, the cores stitched."""
    big = padded(cube, overlap)
    nt, _, ny, nx = cube.shape
    out, firsts = None, []
    for y0 in range(0, ny, size):
        for x0 in range(0, nx, size):
            y1, x1 = min(y0 + size, ny), min(x0 + size, nx)
            window = big.isel(y=slice(y0, y1 + 2 * overlap), x=slice(x0, x1 + 2 * overlap))
            result = apply(window, context)
            if out is None:
                out = np.full((nt, result.sizes["bands"], ny, nx), np.nan, np.float32)
            core = slice(overlap, -overlap or None)
            out[:, :, y0:y1, x0:x1] = result.values[:, :, core, core]
            firsts.append(result)
    return out, firsts


def test_windows_with_overlap_equal_native_embed_at_borders(si, native, context):
    out, results = run_in_windows(si, context, size=32, overlap=8, apply=fe.apply_datacube)
    assert np.isfinite(out).all()
    assert max_diff(out, native) <= TOL
    # the window at the top-left corner: its no-data rows/columns (beyond the cube) are NaN
    first = results[0].values
    assert np.isnan(first[:, :, :8]).all() and np.isnan(first[:, :, :, :8]).all()
    assert np.isfinite(first[:, :, 8:, 8:]).all()


def test_border_rule_matters(small, encoder, context):
    """Without cutting the no-data border, the cube's edge pixels differ."""
    want = embed(small, encoder).values
    window = padded(small, 8)
    model = fe.load_model(context)
    x = np.asarray(window.sel(bands=list(model.channels)).values, dtype=np.float32)
    days = (window["t"].values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")
    uncut = fe.dense_features(model.session, x, days, model.normalisation, model.outputs)
    assert max_diff(uncut[:, :, 8:-8, 8:-8][:, :, 0], want[:, :, 0]) > 1e-3
    assert max_diff(fe.apply_datacube(window, context).values[:, :, 8:-8, 8:-8], want) <= TOL


def test_border_cut_is_limited_to_the_overlap(small, context):
    """All-empty outer rows beyond the overlap are data (NaN inputs), not cut away."""
    cube = small.copy(deep=True)
    cube[:, :, :11] = np.nan  # 11 rows without any data at the top
    out = fe.apply_datacube(cube, {**context, "overlap": 8}).values
    assert np.isnan(out[:, :, :8]).all()
    assert np.isfinite(out[:, :, 8:]).all()


@pytest.mark.parametrize("overlap", [0, 7])
def test_overlap_smaller_than_the_receptive_field_is_refused(small, context, overlap):
    with pytest.raises(fe.ProcessParameterInvalid, match="at least 8 px"):
        fe.apply_datacube(small, {**context, "overlap": overlap})


# --------------------------------------------------------------------------- patch models


@pytest.fixture(scope="module")
def patch_model(si, tmp_path_factory) -> Path:
    """A small DeepFeatures-layout patch model, trained briefly on real patches and exported."""
    from openeo_deepfeatures.training import export, make_training_cube, train

    root = tmp_path_factory.mktemp("patch")
    cube = si.sel(bands=["NDVI", "NDMI", "NDWI", "EVI", "kNDVI"])
    make_training_cube(cube, root / "patches.zarr", kind="patch", n_samples=32, seed=0)
    run = train(
        {
            "data": {"cube": str(root / "patches.zarr")},
            "model": {"family": "patch", "width": 8, "heads": 2, "layers": 1},
            "train": {"epochs": 1, "batch_size": 4, "progress": False},
            "output": {"dir": str(root / "run"), "name": "udf-patch"},
        }
    )
    return export(run.checkpoint, root / "patch.onnx").path


def test_patch_model_whole_cube_and_windows_equal_native(si, patch_model):
    encoder = load_encoder(patch_model)
    c = encoder.contract
    assert c.family == "patch" and (c.spatial_radius, c.temporal_radius) == (7, 5)
    cube = si.isel(t=slice(20, 33), y=slice(30, 46), x=slice(3, 17))  # two all-cloud dates
    want = embed(cube, encoder).values
    context = {"model": str(patch_model), "batch_size": 50}
    assert max_diff(run_udf(cube, context).values, want) <= TOL
    out, _ = run_in_windows(cube, context, size=8, overlap=7, apply=fe.apply_datacube)
    assert max_diff(out, want) <= TOL


# --------------------------------------------------------------------------- model sources


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path, encoder):
    """The model served on 127.0.0.1; ``hits`` counts the GET requests per path."""
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(encoder.path, root / "default.onnx")
    hits: list[str] = []

    class Counting(_Handler):
        def do_GET(self) -> None:
            hits.append(self.path)
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Counting, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("DEEPFEATURES_CACHE", str(path))
    fe.clear_caches()
    yield path
    fe.clear_caches()


def test_model_from_url_downloaded_once(server, cache, encoder, small, context):
    base, hits = server
    url_context = {"model": f"{base}/default.onnx", "model_sha256": encoder.sha256}
    out = fe.apply_datacube(small, url_context)
    assert hits == ["/default.onnx"]
    model = fe.load_model(url_context)
    assert Path(model.path).parent == cache
    assert hashlib.sha256(Path(model.path).read_bytes()).hexdigest() == encoder.sha256
    assert [p.name for p in cache.iterdir()] == [Path(model.path).name]  # no temporary files
    fe.clear_caches()  # a new process on the same worker: the file in the cache is reused
    again = fe.apply_datacube(small, url_context)
    assert hits == ["/default.onnx"]
    np.testing.assert_array_equal(out.values, again.values)
    np.testing.assert_array_equal(out.values, fe.apply_datacube(small, context).values)


def test_model_from_url_without_sha256(server, cache, encoder):
    base, hits = server
    model = fe.load_model({"model": f"{base}/default.onnx"})
    assert model.features == encoder.contract.features
    assert fe.load_model({"model": f"{base}/default.onnx"}) is model
    assert hits == ["/default.onnx"]


def test_sha256_mismatch_of_download_leaves_no_file(server, cache, encoder):
    base, _ = server
    wrong = "0" * 64
    with pytest.raises(ValueError, match=r"^ProcessParameterInvalid: ") as info:
        fe.load_model({"model": f"{base}/default.onnx", "sha256": wrong})
    assert encoder.sha256 in str(info.value) and wrong in str(info.value)
    assert f"{base}/default.onnx" in str(info.value)
    assert list(cache.iterdir()) == []


def test_download_failures_name_url_and_reason(server, cache):
    base, _ = server
    with pytest.raises(RuntimeError, match=r"^ModelDownloadFailed: ") as info:
        fe.load_model({"model": f"{base}/missing.onnx"})
    assert f"{base}/missing.onnx" in str(info.value) and "404" in str(info.value)
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/default.onnx"
    with pytest.raises(RuntimeError, match=r"^ModelDownloadFailed: ") as info:
        fe.load_model({"model": url})
    assert url in str(info.value) and "refused" in str(info.value).lower()
    assert list(cache.iterdir()) == []


def test_unwritable_cache(server, tmp_path, monkeypatch):
    base, hits = server
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DEEPFEATURES_CACHE", str(blocker / "models"))
    with pytest.raises(RuntimeError, match=r"^ModelDownloadFailed: .*DEEPFEATURES_CACHE"):
        fe.load_model({"model": f"{base}/default.onnx"})
    assert hits == []


def test_relative_path_as_with_udf_dependency_archives(
    tmp_path, monkeypatch, encoder, small, context
):
    """Job option ``"udf-dependency-archives": ["https://.../model.zip#tmp/model"]``."""
    (tmp_path / "tmp" / "model").mkdir(parents=True)
    shutil.copy(encoder.path, tmp_path / "tmp" / "model" / "default.onnx")
    monkeypatch.chdir(tmp_path)
    out = run_udf(small, {"model": "tmp/model/default.onnx", "sha256": encoder.sha256})
    np.testing.assert_array_equal(out.values, fe.apply_datacube(small, context).values)


# --------------------------------------------------------------------------- metadata


def test_apply_metadata_renames_bands_to_features(encoder, context):
    metadata = CollectionMetadata(
        {},
        dimensions=[
            TemporalDimension(name="t", extent=[None, None]),
            BandDimension(name="bands", bands=[Band(c) for c in encoder.contract.channels]),
        ],
    )
    for apply_metadata in (fe.apply_metadata, _exec_udf()["apply_metadata"]):
        out = apply_metadata(metadata, context)
        assert out.band_names == list(encoder.contract.features)
        assert out.dimension_names() == ["t", "bands"]


def _exec_udf() -> dict:
    namespace: dict = {}
    exec(compile(CODE, str(UDF_FILE), "exec"), namespace)
    return namespace


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [None, {}, {"model": ""}, {"sha256": "ab"}])
def test_context_without_model(small, bad):
    with pytest.raises(ValueError, match=r"^ProcessParameterMissing: .*'model'") as info:
        fe.apply_datacube(small, bad)
    assert "udf-dependency-archives" in str(info.value) and "https://" in str(info.value)
    with pytest.raises(ValueError, match=r"^ProcessParameterMissing: "):
        run_udf(small, bad)  # the message a backend user reads in the job log


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"^ProcessParameterInvalid: ") as info:
        fe.load_model({"model": "tmp/model/nothing.onnx"})
    assert "'tmp/model/nothing.onnx' does not exist" in str(info.value)
    assert "working directory" in str(info.value)


@pytest.mark.parametrize("key", ["model_sha256", "sha256"])  # sha256: the earlier name
def test_sha256_mismatch_of_local_file(encoder, key):
    wrong = "f" * 64
    with pytest.raises(ValueError, match=r"^ProcessParameterInvalid: ") as info:
        fe.load_model({"model": str(encoder.path), key: wrong})
    assert encoder.sha256 in str(info.value) and wrong in str(info.value)


def test_two_different_digests_in_the_context_are_refused(encoder):
    context = {"model": str(encoder.path), "model_sha256": encoder.sha256, "sha256": "f" * 64}
    with pytest.raises(ValueError, match=r"^ProcessParameterInvalid: .*'model_sha256' only"):
        fe.load_model(context)
    same = {**context, "sha256": encoder.sha256}
    assert fe.load_model(same).session is fe.load_model({"model": str(encoder.path)}).session


def test_missing_channels_named_and_counted(small, context, encoder):
    channels = list(encoder.contract.channels)
    with pytest.raises(ValueError, match=r"^BandMissing: ") as info:
        fe.apply_datacube(small.drop_sel(bands=channels[:12]), context)
    message = str(info.value)
    assert "12 channels" in message and "and 2 more" in message
    assert all(c in message for c in channels[:10]) and channels[11] not in message


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.isel(t=0),
        lambda c: c.expand_dims(member=[1]),
        lambda c: c.rename(y="lat"),
    ],
    ids=["no-t", "extra-dim", "renamed-y"],
)
def test_wrong_dimensions(small, context, change):
    with pytest.raises(ValueError, match=r"^DimensionNotAvailable: .*'t', 'bands', 'y', 'x'"):
        fe.apply_datacube(change(small), context)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"providers": ["CUDAExecutionProvider"]}, "providers.*available: "),
        ({"providers": []}, "providers"),
        ({"threads": 0}, "'threads' must be >= 1"),
        ({"threads": "2"}, "'threads' must be an integer"),
        ({"overlap": -1}, "'overlap' must be >= 0"),
        ({"model_sha256": "abc"}, "sha256' must be 64 hex digits"),
        ({"model": 42}, "'model' must be a URL or a path"),
    ],
    ids=str,
)
def test_invalid_context_values(small, context, extra, match):
    with pytest.raises(ValueError, match=rf"^ProcessParameterInvalid: .*{match}"):
        fe.apply_datacube(small, {**context, **extra})


def test_unsorted_dates(small, context):
    with pytest.raises(ValueError, match="ascending order"):
        fe.apply_datacube(small.isel(t=[1, 0, 2]), context)


def test_not_onnx_and_no_contract(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"^ProcessParameterInvalid: .*not a readable ONNX"):
        fe.load_model({"model": str(junk)})
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["features"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), plain)
    with pytest.raises(ValueError, match="no DeepFeatures encoder contract"):
        fe.load_model({"model": str(plain)})


# --------------------------------------------------------------------------- independence


def test_imports_nothing_of_the_package():
    allowed = {"numpy", "xarray", "onnxruntime"} | set(sys.stdlib_module_names)
    tree = ast.parse(CODE)
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert None not in modules  # no relative imports
    assert {m.split(".")[0] for m in modules} <= allowed
    assert "onnxruntime" in modules


def test_runs_without_the_package(small, encoder, tmp_path):
    """In a fresh interpreter where ``import openeo_deepfeatures`` fails."""
    small.drop_vars("spatial_ref").to_netcdf(tmp_path / "in.nc")
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        sys.modules["openeo_deepfeatures"] = None
        try:
            import openeo_deepfeatures
        except ImportError:
            pass
        else:
            raise SystemExit("the package is importable")
        import xarray
        spec = importlib.util.spec_from_file_location("feature_embedding", {str(UDF_FILE)!r})
        udf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(udf)
        cube = xarray.open_dataarray({str(tmp_path / "in.nc")!r})
        out = udf.apply_datacube(cube, {{"model": {str(encoder.path)!r}}})
        out.to_netcdf({str(tmp_path / "out.nc")!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=300)
    out = xr.open_dataarray(tmp_path / "out.nc").load()
    assert max_diff(out.values, embed(small, encoder).values) <= TOL
