"""The vendored Awesome Spectral Indices catalogue and list_indices."""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import pytest

import openeo_deepfeatures as odf
from openeo_deepfeatures._json import loads_strict
from openeo_deepfeatures.errors import IndexUnknown, ProcessParameterInvalid
from openeo_deepfeatures.indices.catalogue import ASI_VERSION

PINNED_SHA256 = {
    "spectral-indices-dict.json": "82876d1a8dfabb6d876d714aed499d2998fbd09a1e67fca448c43472729bf026",
    "constants.json": "89ff0b6c96aa1741744c8e1fbe9be0117a01863f188691001a745669d44ec809",
    "bands.json": "4a175755d6a7949b6599161b55827e11ce2eef928ccba3ceadd367c22aafa1cd",
}


@pytest.mark.parametrize("name", sorted(PINNED_SHA256))
def test_vendored_files_are_the_pinned_release(name):
    data = resources.files("openeo_deepfeatures.data").joinpath("asi", name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == PINNED_SHA256[name]
    assert ASI_VERSION == "0.12.0"


def test_licence_and_attribution_shipped():
    folder = resources.files("openeo_deepfeatures.data").joinpath("asi")
    assert "MIT License" in folder.joinpath("LICENSE").read_text()
    assert "0.12.0" in folder.joinpath("README.md").read_text()


def test_at_least_240_sentinel2_indices():
    names = odf.list_indices()
    assert len(names) >= 240
    raw = json.loads(
        resources.files("openeo_deepfeatures.data")
        .joinpath("asi/spectral-indices-dict.json")
        .read_text()
    )["SpectralIndices"]
    assert set(names) == {k for k, v in raw.items() if "Sentinel-2" in v["platforms"]}


def test_kernel_and_par_indices_present():
    names = set(odf.list_indices())
    assert {"kNDVI", "kEVI", "kIPVI", "kRVI", "kVARI", "NIRvP"} <= names
    assert "NIRvP" not in odf.list_indices(bands=["B04", "B08"])
    assert "NIRvP" in odf.list_indices(bands=["B04", "B08", "PAR"])


def test_filter_by_bands():
    names = odf.list_indices(bands=["B04", "B08"])
    assert "NDVI" in names and "kNDVI" in names
    assert "NDWI" not in names  # needs B03
    for name in names:
        assert set(odf.get_index(name).bands) <= {"B04", "B08"}
    assert odf.list_indices(bands=["B4", "B8"]) == names  # aliases


def test_filter_by_domain():
    water = odf.list_indices(application_domain="water")
    assert "NDWI" in water and "NDVI" not in water


def test_per_index_constant_defaults():
    assert odf.get_index("SAVI").constants["L"] == 0.5
    assert odf.get_index("EVI").constants["L"] == 1.0
    assert odf.get_index("WCI1").constants["epsilon"] == 1e-10
    assert odf.get_index("EBI").constants["epsilon"] == 1
    assert odf.get_index("EVI").constants["g"] == 2.5


def test_wavelength_constants_from_band_table():
    fai = odf.get_index("FAI")
    assert fai.constants["lambdaN"] == 832.8
    assert fai.constants["lambdaR"] == 664.6
    assert fai.constants["lambdaS1"] == 1613.7


def test_kernel_index_bands():
    assert odf.get_index("kNDVI").bands == ("B04", "B08")
    assert odf.get_index("kEVI").constants["L"] == 1.0


def test_unknown_platform_and_index():
    with pytest.raises(ProcessParameterInvalid, match="Sentinel-2"):
        odf.list_indices("Landsat-OLI")
    with pytest.raises(IndexUnknown, match="NDVI"):
        odf.get_index("NDVl")


def test_duplicate_keys_fail_loudly():
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        loads_strict('{"a": 1, "a": 2}')
