"""Writing index cubes: zarr and STAC item together or not at all (the item: tests/test_stac.py)."""

from __future__ import annotations

import pytest

import openeo_deepfeatures.index_cube as index_cube
from openeo_deepfeatures.errors import ProcessParameterInvalid
from openeo_deepfeatures.index_cube import write_index_cube
from openeo_deepfeatures.io import open_cube

from .conftest import make_cube


@pytest.fixture
def si():
    return make_cube(bands=["NDVI", "EVI"]).rename("spectral_indices")


def test_zarr_and_item(tmp_path, si):
    files = write_index_cube(si, tmp_path / "si.zarr", source="in.nc")
    assert files.item == tmp_path / "si.stac.json" and files.item.is_file()
    assert open_cube(files.zarr)["bands"].values.tolist() == ["NDVI", "EVI"]
    assert write_index_cube(si, tmp_path / "plain.zarr", stac=False).item is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.zarr", "si.stac.json", "si.zarr"]


def test_an_existing_item_is_kept_and_nothing_written(tmp_path, si):
    (tmp_path / "si.stac.json").write_text("{}")
    with pytest.raises(ProcessParameterInvalid, match="overwrite"):
        write_index_cube(si, tmp_path / "si.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["si.stac.json"]
    write_index_cube(si, tmp_path / "si.zarr", overwrite=True)
    assert (tmp_path / "si.stac.json").read_text() != "{}"


def test_a_failed_item_removes_the_zarr(tmp_path, si, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(index_cube, "write_item", fail)
    with pytest.raises(OSError, match="disk full"):
        write_index_cube(si, tmp_path / "si.zarr")
    assert list(tmp_path.iterdir()) == []
