"""The encoders shipped as package data (default, s2-10m): load, fit their bands, run on the demo."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from pystac.extensions.file import FileExtension
from pystac.extensions.mlm import MLMExtension

import openeo_deepfeatures as odf
from openeo_deepfeatures.encoder import (
    load_encoder,
    sha256_file,
    stac_item_path,
    time_inputs,
)
from openeo_deepfeatures.encoder.selection import SHIPPED_MODELS
from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.stac import read_item

#: The reflectance bands each shipped model is made from (SCL is the cloud mask, not an input).
MODEL_BANDS = {
    "default": ["B02", "B03", "B04", "B08", "B8A", "B11"],  # the embedded demo cube's
    "s2-10m": ["B02", "B03", "B04", "B08"],  # the 10 m bands
}


@pytest.fixture(scope="module", params=sorted(MODEL_BANDS))
def name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def default_path(name) -> Path:
    relative = SHIPPED_MODELS[name]
    return Path(str(resources.files("openeo_deepfeatures.data").joinpath(*relative.split("/"))))


@pytest.fixture(scope="module")
def encoder(name):
    return load_encoder(name)


@pytest.fixture(scope="module")
def bands(name) -> list[str]:
    return MODEL_BANDS[name]


@pytest.fixture(scope="module")
def demo_reflectance(bands):
    cube = odf.preprocess_s2(odf.load_demo_cube().sel(bands=[*bands, "SCL"]))
    assert [str(b) for b in cube["bands"].values] == bands
    return cube


def test_every_shipped_model_is_tested():
    assert sorted(SHIPPED_MODELS) == sorted(MODEL_BANDS)


def test_load_encoder_without_argument_returns_the_default_model():
    assert load_encoder().sha256 == load_encoder("default").sha256


def test_load_encoder_by_name_returns_the_shipped_model(encoder, default_path):
    assert default_path.is_file()
    assert encoder.path.resolve() == default_path.resolve()
    assert encoder.sha256 == sha256_file(default_path)
    contract = encoder.contract
    assert contract.family == "dense"
    assert contract.features == tuple(f"F{i:02d}" for i in range(1, contract.k + 1))
    # receptive field at least the DeepFeatures patch: 15 x 15 px, 11 acquisitions
    assert 2 * contract.spatial_radius + 1 >= 15
    assert contract.temporal_window >= 11
    assert contract.training["export"]["parity_max_abs_diff"] <= 1e-4


def test_small_file(default_path):
    assert default_path.stat().st_size < 5 * 2**20


def test_channels_are_computable_from_the_model_bands(encoder, demo_reflectance, bands):
    channels = list(encoder.contract.channels)
    assert set(channels) <= set(odf.list_indices(bands=bands))
    si = odf.compute_indices(demo_reflectance, indices=channels)
    assert [str(b) for b in si["bands"].values] == channels
    values = si.values
    clear = np.isfinite(demo_reflectance.values).all(axis=1)
    finite = np.isfinite(values).transpose(1, 0, 2, 3)[:, clear]  # (channel, clear pixel-dates)
    # every channel is defined on (nearly) all clear pixel-dates and varies there
    assert finite.mean(axis=1).min() >= 0.95
    assert (np.nanstd(values.transpose(1, 0, 2, 3)[:, clear], axis=1) > 0).all()


def test_stac_item_checksum_and_bands(encoder, default_path):
    item_path = stac_item_path(default_path)
    assert item_path.name == default_path.stem + ".stac.json" and item_path.is_file()
    item = read_item(item_path)
    asset = item.assets["model"]
    assert asset.href == f"./{default_path.name}"
    checksum = FileExtension.ext(asset).checksum
    assert checksum == "1220" + sha256_file(default_path)
    assert FileExtension.ext(asset).size == default_path.stat().st_size
    mlm = MLMExtension.ext(item)
    assert mlm.mlm_name == encoder.contract.name
    assert mlm.input[0].bands == list(encoder.contract.channels)
    # the checksum from the STAC item is what load_encoder(sha256=...) accepts
    assert load_encoder(default_path, sha256=checksum.removeprefix("1220")).sha256 == checksum[4:]


def test_tampered_copy_is_refused(default_path, tmp_path):
    copy = tmp_path / "default.onnx"
    data = bytearray(default_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ProcessParameterInvalid, match="sha256"):
        load_encoder(copy, sha256=sha256_file(default_path))


def test_runs_on_a_demo_tile(encoder, demo_reflectance):
    contract = encoder.contract
    t0, t, y0, h, x0, w = 40, 20, 5, 30, 12, 33  # a real tile with clouds, odd sizes
    tile = demo_reflectance.isel(t=slice(t0, t0 + t), y=slice(y0, y0 + h), x=slice(x0, x0 + w))
    si = odf.compute_indices(tile, indices=list(contract.channels))
    x = si.values[None]  # (1, T, C, H, W)
    x_n, valid = contract.normalise(x, axis=2)
    assert 0 < valid.mean() < 1  # some pixel-dates are cloudy
    day, doy = time_inputs(si["t"].values[None])
    features = encoder.run(x_n, valid, day, doy)
    assert features.shape == (1, t, contract.k, h, w)
    assert features.dtype == np.float32
    assert np.isfinite(features.transpose(0, 1, 3, 4, 2)[valid[:, :, 0] > 0]).all()
    # features vary across pixels and dates (not a constant output)
    assert (features.std(axis=(0, 1, 3, 4)) > 1e-3).all()
