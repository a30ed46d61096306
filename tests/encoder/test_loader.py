"""The model loader: providers, the session cache, and one hash and one session per run, on the
native path and on the UDF path (the kernel in ``udf/feature_embedding.py`` serves both)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import xarray as xr
from openeo.udf.run_code import load_module_from_string
from openeo_deepfeatures.udf import feature_embedding as fe

import openeo_deepfeatures as odf
from openeo_deepfeatures.encoder import inference, load_encoder, selection
from openeo_deepfeatures.encoder import loader as loader_module
from openeo_deepfeatures.encoder.loader import (
    CPU,
    CUDA,
    clear_session_cache,
    get_session,
    resolve_providers,
)
from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.local import run_process_graph

ROOT = Path(__file__).resolve().parents[2]
UDF_CODE = (ROOT / "udf" / "feature_embedding.py").read_text("utf-8")


@pytest.fixture(scope="module")
def default():
    return load_encoder()


# --------------------------------------------------------------------------- providers


def test_automatic_providers(monkeypatch, caplog):
    real = ort.get_available_providers()
    with caplog.at_level(logging.INFO, logger=loader_module.__name__):
        chosen = resolve_providers()
    assert chosen == ((CUDA, CPU) if CUDA in real else (CPU,))
    assert "onnxruntime providers" in caplog.text
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    assert resolve_providers() == (CUDA, CPU)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    assert resolve_providers() == (CPU,)
    assert resolve_providers([CPU, CPU]) == (CPU,)


@pytest.mark.parametrize("bad", [[], [""], 3, ["NoSuchExecutionProvider"]], ids=repr)
def test_bad_providers(bad):
    with pytest.raises(ProcessParameterInvalid, match=r"'providers'.*available: \[") as info:
        resolve_providers(bad)
    assert info.value.fields["parameter"] == "providers"


# --------------------------------------------------------------------------- sessions


def test_session_cache(default, tmp_path):
    clear_session_cache()
    one = get_session(default.path, default.sha256, [CPU], 1)
    assert get_session(str(default.path), default.sha256, (CPU,), 1) is one
    assert get_session(default.path, default.sha256, [CPU], 2) is not one
    assert one.get_providers() == [CPU]
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(default.path.read_bytes())
    with pytest.raises(ProcessParameterInvalid, match=r"expected 0+: the file is truncated"):
        get_session(copy, "0" * 64, [CPU], 1)


def test_a_changed_file_is_hashed_again(default, tmp_path):
    """The digest is remembered per version of the file (inode, size, modification time)."""
    path = tmp_path / "model.onnx"
    path.write_bytes(default.path.read_bytes())
    first = fe.open_model(path, default.sha256, providers=[CPU])
    assert fe.open_model(path, default.sha256, providers=[CPU]) is first
    path.write_bytes(default.path.read_bytes() + b"\0")  # appended bytes: another digest
    os.utime(path, ns=(1, 1))
    with pytest.raises(fe.ProcessParameterInvalid, match="the file is truncated, altered") as info:
        fe.open_model(path, default.sha256, providers=[CPU])
    assert info.value.parameter == "sha256"


def test_session_falls_back_with_a_log_line(default, monkeypatch, caplog):
    """Automatic choice: CUDA offered but not usable -> CPU session and a log line."""
    if CUDA in ort.get_available_providers():
        pytest.skip("this machine has a usable CUDA provider")
    clear_session_cache()
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    with (
        caplog.at_level(logging.WARNING, logger=fe.__name__),
        pytest.warns(UserWarning, match="CUDAExecutionProvider"),  # from onnxruntime
    ):
        session = get_session(default.path, default.sha256)
    assert session.get_providers() == [CPU]
    assert "could not start CUDAExecutionProvider" in caplog.text
    clear_session_cache()


def test_session_options_are_pinned(default, monkeypatch):
    seen = []

    class Spy(ort.InferenceSession):
        def __init__(self, path, options, **kwargs):
            seen.append(options)
            super().__init__(path, options, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Spy)
    clear_session_cache()
    get_session(default.path, default.sha256, [CPU], 2)
    clear_session_cache()
    (options,) = seen
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert not options.enable_cpu_mem_arena


# --------------------------------------------------------------------------- once per run


class Opens:
    """Model files hashed and onnxruntime sessions created, counted in this process."""

    def __init__(self, monkeypatch, *namespaces: dict) -> None:
        self.hashed: list[str] = []
        self.sessions: list[str] = []
        for namespace in namespaces:  # the kernel as imported, and as exec'd by run_udf_code
            monkeypatch.setitem(namespace, "_hash_file", self._hash(namespace["_hash_file"]))
        sessions = self.sessions

        class Counting(ort.InferenceSession):
            def __init__(self, path, *args, **kwargs):
                sessions.append(Path(path).name)
                super().__init__(path, *args, **kwargs)

        monkeypatch.setattr(ort, "InferenceSession", Counting)

    def _hash(self, real):
        def hashed(path):
            self.hashed.append(Path(path).name)
            return real(path)

        return hashed


def _collection_graph(process_id: str, namespace: str | None = None, **arguments) -> dict:
    node = {"process_id": process_id, "arguments": {"data": {"from_node": "l"}, **arguments}}
    if namespace is not None:
        node["namespace"] = namespace
    return {
        "l": {
            "process_id": "load_collection",
            "arguments": {"id": "C", "spatial_extent": None, "temporal_extent": None},
        },
        "p": {**node, "result": True},
    }


def test_native_run_opens_and_hashes_its_model_once(monkeypatch, default):
    """deepfeatures_feature_cube (the native API): choosing the shipped model by the cube's
    bands, loading it and running the tiles (in dask threads) share one session."""
    dn = odf.load_demo_cube(chunks={"t": 12}).isel(t=slice(0, 24))
    monkeypatch.setattr(inference, "DEFAULT_TILE", {"t": 12, "y": 20, "x": 20})
    fe.clear_caches()
    selection._shipped_bands.cache_clear()  # the model choice reads the contract again
    opens = Opens(monkeypatch, vars(fe))
    graph = _collection_graph("deepfeatures_feature_cube", "deepfeatures")
    features = run_process_graph(graph, collections={"C": dn})
    assert [len(c) for c in features.chunks] == [2, 1, 3, 3]  # 18 tiles
    features.compute(scheduler="threads", num_workers=2)
    assert opens.hashed == ["default.onnx"]
    assert opens.sessions == ["default.onnx"]
    # other threads: a session of their own, the file is not hashed again
    get_session(default.path, default.sha256, resolve_providers(), threads=1)
    assert opens.hashed == ["default.onnx"]
    assert opens.sessions == ["default.onnx", "default.onnx"]


def _mirrored(cube: xr.DataArray) -> xr.DataArray:
    """The cube and its mirror images: twice as wide and high (coordinates continued)."""
    row = xr.concat([cube, cube.isel(x=slice(None, None, -1))], dim="x")
    big = xr.concat([row, row.isel(y=slice(None, None, -1))], dim="y")
    steps = {d: float(cube[d][1] - cube[d][0]) for d in ("y", "x")}
    return big.assign_coords(
        {d: float(cube[d][0]) + steps[d] * np.arange(big.sizes[d]) for d in ("y", "x")}
    )


def test_udf_run_opens_and_hashes_its_model_once(monkeypatch, default):
    """The deepfeatures_embed UDP (apply_neighborhood + run_udf of the UDF file) through the
    local executor: every window's apply_datacube shares the first one's session."""
    reflectance = odf.preprocess_s2(odf.load_demo_cube().isel(t=slice(0, 8)))
    si = _mirrored(odf.compute_indices(reflectance, list(default.contract.channels)))
    load_module_from_string.cache_clear()  # run_udf_code's module of the UDF: a fresh one
    udf = load_module_from_string(UDF_CODE)
    opens = Opens(monkeypatch, udf)
    calls = []
    load_model = udf["load_model"]
    monkeypatch.setitem(udf, "load_model", lambda context: calls.append(1) or load_model(context))
    graph = _collection_graph(
        "deepfeatures_embed",
        str(ROOT / "process_graphs"),
        model=str(default.path),
        model_sha256=default.sha256,
    )
    features = run_process_graph(graph, collections={"C": si.chunk({"y": 64, "x": 64})})
    values = features.compute(scheduler="threads", num_workers=2).values
    assert values.shape == (8, 6, 100, 100) and np.isfinite(values).all()
    assert len(calls) == 4  # windows of 64 px: 2 x 2
    assert opens.hashed == ["default.onnx"]
    assert opens.sessions == ["default.onnx"]
    load_module_from_string.cache_clear()
