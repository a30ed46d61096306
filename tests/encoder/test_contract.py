"""The encoder contract: validation, ONNX metadata, normalisation, time inputs, STAC, loading."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
import pystac
import pytest
from onnx import TensorProto, helper
from openeo_deepfeatures.udf import feature_embedding as udf_kernel
from pystac.extensions.file import FileExtension
from pystac.extensions.mlm import AssetGeneralMLMExtension, MLMExtension

from openeo_deepfeatures.encoder import (
    DEFAULT_MODEL,
    EncoderContract,
    Normalisation,
    load_encoder,
    sha256_file,
    stac_item_path,
    time_inputs,
)
from openeo_deepfeatures.errors import BandMissing, ProcessParameterInvalid, ProcessParameterMissing
from openeo_deepfeatures.stac import read_item, write_item


def make_contract(**changes) -> EncoderContract:
    fields = dict(
        name="test-encoder",
        family="dense",
        channels=("NDVI", "EVI"),
        normalisation=Normalisation(offset=(0.5, 1.0), scale=(0.25, 2.0), clip=3.0),
        spatial_radius=8,
        temporal_window=15,
        features=("F01", "F02", "F03"),
        training={"seed": 1, "data_sha256": "ab" * 32},
    )
    fields.update(changes)
    return EncoderContract(**fields)


def test_import_without_torch():
    """The contract, loading and the CLI hooks work where torch is not installed."""
    code = (
        "import sys\n"
        "import openeo_deepfeatures.encoder, openeo_deepfeatures.encoder.contract\n"
        "import openeo_deepfeatures.training, openeo_deepfeatures.training.onnx_export\n"
        "import openeo_deepfeatures.stac\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'onnx' not in sys.modules, 'onnx was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_metadata_round_trip():
    contract = make_contract()
    meta = contract.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert json.loads(meta["channels"]) == ["NDVI", "EVI"]
    assert json.loads(meta["normalisation"])["scale"] == [0.25, 2.0]
    again = EncoderContract.from_metadata({**meta, "producer": "another tool"})
    assert again == contract
    assert again.input_layout == "NTCHW" and again.output_layout == "NTKHW"
    assert again.k == 3 and again.temporal_radius == 7


def test_patch_contract_needs_its_patch_size():
    contract = make_contract(
        family="patch", spatial_radius=7, temporal_window=11, patch_size=(11, 15, 15)
    )
    assert contract.output_layout == "NK"
    with pytest.raises(ProcessParameterInvalid, match="patch_size"):
        make_contract(family="patch", spatial_radius=7, temporal_window=11)
    with pytest.raises(ProcessParameterInvalid, match="patch_size"):
        make_contract(family="patch", spatial_radius=7, temporal_window=11, patch_size=(11, 9, 9))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("contract_version", '"7"', "contract_version '7' is not supported"),
        ("family", '"lstm"', "family must be one of"),
        ("channels", '["NDVI", "NDVI"]', "channels has duplicates"),
        ("channels", '["NDVI"]', "normalisation has 2 channels, channels 1"),
        ("features", "[]", "features must be a non-empty list"),
        ("temporal_window", "10", "temporal_window must be odd"),
        ("spatial_radius", "-1", "spatial_radius must be an integer >= 0"),
        ("spatial_radius", "2.5", "spatial_radius must be an integer"),
        ("name", '"7 bad name!"', "name '7 bad name!' must start with a letter"),
        ("inputs", '["x"]', "inputs must be"),
        ("time_encoding", '"doy"', "time_encoding must be"),
        ("normalisation", '{"offset": [0, 0], "scale": [1, 0]}', "scale must be finite and > 0"),
        ("normalisation", '{"offset": [0], "scale": [1]}', "normalisation has 1 channels"),
        ("normalisation", '{"offset": [0, 0]}', "missing keys \\['scale'\\]"),
        ("normalisation", "[1, 2]", "normalisation must be an object"),
        ("spatial_radius", "not json", "metadata 'spatial_radius' is not JSON"),
    ],
)
def test_invalid_metadata_is_refused_with_the_reason(key, value, message):
    meta = make_contract().to_metadata()
    meta[key] = value
    with pytest.raises(ProcessParameterInvalid, match=message):
        EncoderContract.from_metadata(meta)


def test_metadata_without_contract_or_fields():
    with pytest.raises(ProcessParameterInvalid, match="no DeepFeatures encoder contract"):
        EncoderContract.from_metadata({"producer": "x"})
    meta = make_contract().to_metadata()
    del meta["channels"], meta["features"]
    with pytest.raises(ProcessParameterInvalid, match=r"missing fields \['channels', 'features'\]"):
        EncoderContract.from_metadata(meta)


def test_normalise_against_a_numpy_reference():
    contract = make_contract()
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 2.0, size=(4, 2, 3, 5)).astype(np.float32)  # (t, channel, y, x)
    x[0, 0, 0, 0] = np.nan  # one channel missing: still valid
    x[1, :, 1, 1] = np.nan  # both missing: not valid
    x[2, 1, 2, 2] = np.inf  # non-finite counts as missing
    x[3, 0, 0, 1] = 100.0  # clipped
    x_n, valid = contract.normalise(x, axis=1)
    offset = np.array([0.5, 1.0]).reshape(1, 2, 1, 1)
    scale = np.array([0.25, 2.0]).reshape(1, 2, 1, 1)
    expected = np.clip((x.astype(np.float64) - offset) / scale, -3, 3)
    expected = np.where(np.isfinite(x), expected, 0.0)
    assert x_n.dtype == np.float32 and valid.dtype == np.float32
    np.testing.assert_allclose(x_n, expected, rtol=1e-6, atol=1e-6)
    assert x_n[3, 0, 0, 1] == 3.0 and x_n[2, 1, 2, 2] == 0.0
    assert valid.shape == (4, 1, 3, 5)
    expected_valid = np.isfinite(x).any(axis=1, keepdims=True)
    np.testing.assert_array_equal(valid, expected_valid.astype(np.float32))
    assert valid[1, 0, 1, 1] == 0 and valid[0, 0, 0, 0] == 1
    # the channel axis may be anywhere
    x_last, _ = contract.normalise(np.moveaxis(x, 1, -1), axis=-1)
    np.testing.assert_array_equal(x_last, np.moveaxis(x_n, 1, -1))
    with pytest.raises(ProcessParameterInvalid, match="3 channels on axis 0"):
        contract.normalise(np.zeros((3, 4)), axis=0)


def test_normalise_in_place_equals_a_copy():
    """``copy=False`` (tiles of computed indices) overwrites a float32 input and returns it."""
    contract = make_contract()
    n = contract.normalisation
    rng = np.random.default_rng(1)
    x = rng.normal(0.5, 2.0, size=(3, 2, 4, 4)).astype(np.float32)
    x[0, :, 0, 0] = np.nan
    x[1, 1, 2, 2] = -np.inf
    expected, expected_valid = contract.normalise(x, axis=1)
    original = x.copy()
    same, valid = udf_kernel.normalise(x, n.offset, n.scale, n.clip, axis=1, copy=False)
    assert same is x
    np.testing.assert_array_equal(same, expected)
    np.testing.assert_array_equal(valid, expected_valid)
    # copy=True (the default) leaves the input alone; a read-only input is never overwritten
    udf_kernel.normalise(original, n.offset, n.scale, n.clip, axis=1)
    frozen = original.copy()
    frozen.flags.writeable = False
    out, _ = udf_kernel.normalise(frozen, n.offset, n.scale, n.clip, axis=1, copy=False)
    assert out is not frozen
    np.testing.assert_array_equal(out, expected)
    assert np.array_equal(original, frozen, equal_nan=True)


def test_robust_range_from_quantiles():
    norm = Normalisation.from_quantiles([0.0, 2.0, 5.0], [1.0, 2.0, 9.0], clip=2.0)
    assert norm.offset == (0.5, 2.0, 7.0)
    assert norm.scale == (0.5, 1.0, 2.0)  # constant channel: scale 1
    x_n, _ = norm.apply(np.array([[0.0, 1.0], [2.0, 2.0], [5.0, 9.0]]), axis=0)
    np.testing.assert_array_equal(x_n, [[-1, 1], [0, 0], [-1, 1]])


def test_time_inputs_from_dates_and_days():
    dates = np.array(
        ["2020-01-01", "2020-01-11", "2020-12-31T12:00", "2021-03-01"], "datetime64[s]"
    )
    day, doy = time_inputs(dates)
    np.testing.assert_allclose(day, [0, 10, 365.5, 425])
    np.testing.assert_allclose(doy, [0, 10, 365.5, 59])  # 2020 is a leap year
    days = (dates - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")
    day2, doy2 = time_inputs(np.stack([days, days + 1]))  # float days, rows are windows
    np.testing.assert_allclose(day2[0], day)
    np.testing.assert_allclose(doy2[1], [1, 11, 0.5, 60])
    assert day.dtype == np.float32 and doy.dtype == np.float32
    with pytest.raises(ProcessParameterInvalid, match="NaN"):
        time_inputs(np.array([1.0, np.nan]))


def test_check_channels():
    contract = make_contract()
    contract.check_channels(["EVI", "NDVI", "NBR"])
    with pytest.raises(BandMissing, match=r"needs \['EVI'\]"):
        contract.check_channels(["NDVI", "NBR"])


def test_stac_item_mirrors_the_contract(tmp_path):
    model = tmp_path / "enc.onnx"
    model.write_bytes(b"0123456789")
    contract = make_contract()
    item = contract.stac_item(model, sha256=sha256_file(model), total_parameters=1234)
    path = write_item(item, stac_item_path(model))
    assert path == tmp_path / "enc.stac.json"
    loaded = read_item(path)
    assert loaded.id == "enc"
    mlm = MLMExtension.ext(loaded)
    assert mlm.mlm_name == "test-encoder"
    assert mlm.total_parameters == 1234
    x_input = mlm.input[0]
    assert x_input.name == "x" and x_input.bands == ["NDVI", "EVI"]
    assert x_input.input.dim_order == ["batch", "time", "bands", "height", "width"]
    assert x_input.input.shape == [-1, -1, 2, -1, -1]
    scaling = loaded.properties["mlm:input"][0]["value_scaling"]
    assert scaling == [
        {"type": "z-score", "mean": 0.5, "stddev": 0.25},
        {"type": "z-score", "mean": 1.0, "stddev": 2.0},
    ]
    assert [i.name for i in mlm.input] == ["x", "valid", "day", "doy"]
    assert mlm.output[0].result.shape == [-1, -1, 3, -1, -1]
    assert [b["name"] for b in loaded.properties["bands"]] == ["NDVI", "EVI"]
    asset = loaded.assets["model"]
    assert asset.href == "./enc.onnx" and "mlm:model" in asset.roles
    assert AssetGeneralMLMExtension.ext(asset).artifact_type == "torch.onnx.export"
    assert FileExtension.ext(asset).checksum == "1220" + sha256_file(model)
    assert FileExtension.ext(asset).size == 10
    mirrored = {
        k.removeprefix("deepfeatures:"): v
        for k, v in loaded.properties.items()
        if k.startswith("deepfeatures:")
    }
    assert EncoderContract.from_dict(mirrored) == contract
    assert pystac.Item.from_dict(loaded.to_dict()).to_dict() == loaded.to_dict()
    with pytest.raises(ProcessParameterInvalid, match="exists"):
        write_item(item, path)


# --------------------------------------------------------------------------- load_encoder


def tiny_onnx(
    path: Path,
    contract: EncoderContract | None,
    *,
    names=("x", "valid", "day", "doy"),
    channels: int | str = "C",
) -> Path:
    """A real ONNX graph (features = x * valid) with an optional contract in its metadata."""
    x = helper.make_tensor_value_info(names[0], TensorProto.FLOAT, ["N", "T", channels, "H", "W"])
    others = [
        helper.make_tensor_value_info(names[1], TensorProto.FLOAT, ["N", "T", 1, "H", "W"]),
        helper.make_tensor_value_info(names[2], TensorProto.FLOAT, ["N", "T"]),
        helper.make_tensor_value_info(names[3], TensorProto.FLOAT, ["N", "T"]),
    ]
    out = helper.make_tensor_value_info("features", TensorProto.FLOAT, None)
    node = helper.make_node("Mul", [names[0], names[1]], ["features"])
    graph = helper.make_graph([node], "tiny", [x, *others], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if contract is not None:
        helper.set_model_props(model, contract.to_metadata())
    onnx.save_model(model, path)
    return path


def test_load_encoder_reads_and_validates(tmp_path):
    contract = make_contract()
    path = tiny_onnx(tmp_path / "m.onnx", contract)
    encoder = load_encoder(path, sha256=sha256_file(path).upper())
    assert encoder.contract == contract
    assert encoder.path == path and encoder.sha256 == sha256_file(path)
    x = np.ones((1, 2, 2, 3, 3), np.float32)
    valid = np.zeros((1, 2, 1, 3, 3), np.float32)
    valid[..., 0, 0] = 1
    out = encoder.run(x, valid, np.zeros((1, 2)), np.zeros((1, 2)))
    np.testing.assert_array_equal(out, x * valid)


def test_load_encoder_refuses_bad_files(tmp_path):
    good = tiny_onnx(tmp_path / "good.onnx", make_contract())
    with pytest.raises(ProcessParameterInvalid, match=r"expected 0+: the file is truncated"):
        load_encoder(good, sha256="0" * 64)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ProcessParameterInvalid, match="not a readable ONNX model"):
        load_encoder(truncated)
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(ProcessParameterInvalid, match="not a readable ONNX model"):
        load_encoder(text)
    with pytest.raises(ProcessParameterInvalid, match="is not a file"):
        load_encoder(tmp_path / "missing.onnx")
    bare = tiny_onnx(tmp_path / "bare.onnx", None)
    with pytest.raises(ProcessParameterInvalid, match="no DeepFeatures encoder contract"):
        load_encoder(bare)
    renamed = tiny_onnx(tmp_path / "renamed.onnx", make_contract(), names=("a", "b", "c", "d"))
    with pytest.raises(ProcessParameterInvalid, match=r"graph has inputs \['a', 'b', 'c', 'd'\]"):
        load_encoder(renamed)
    wide = tiny_onnx(tmp_path / "wide.onnx", make_contract(), channels=3)
    with pytest.raises(ProcessParameterInvalid, match="takes 3 channels, its contract lists 2"):
        load_encoder(wide)


def test_default_encoder():
    """``load_encoder()`` loads the packaged default, or says clearly that none ships yet."""
    packaged = resources.files("openeo_deepfeatures.data").joinpath(*DEFAULT_MODEL.split("/"))
    if packaged.is_file():
        encoder = load_encoder()
        assert encoder.contract.family == "dense"
    else:
        with pytest.raises(ProcessParameterMissing, match="no default encoder is shipped"):
            load_encoder()
