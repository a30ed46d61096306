"""Collections from ``--data`` folders: discovery, ids, STAC datacube metadata."""

from __future__ import annotations

import logging

import pytest

import openeo_deepfeatures as odf
from openeo_deepfeatures.errors import CollectionNotFound
from openeo_deepfeatures.io import write_zarr
from openeo_deepfeatures.server.collections import Catalog


@pytest.fixture(scope="module")
def small():
    return odf.load_demo_cube().isel(t=slice(0, 2), y=slice(0, 4), x=slice(0, 3))


def test_cubes_in_folders_and_below(tmp_path, small, caplog):
    (tmp_path / "a" / "b").mkdir(parents=True)
    small.to_netcdf(tmp_path / "s2.nc")
    small.to_netcdf(tmp_path / "a" / "b" / "s2.nc")  # the same name again
    write_zarr(small, tmp_path / "a" / "cube.zarr")
    (tmp_path / ".hidden.nc").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a cube")
    (tmp_path / "broken.tif").write_bytes(b"not a GeoTIFF")
    catalog = Catalog([tmp_path])
    assert catalog.ids() == ["DEMO_S2", "a.b.s2", "broken", "cube", "s2"]
    with caplog.at_level(logging.WARNING):
        listed = [c["id"] for c in catalog.describe_all()]
    assert listed == ["DEMO_S2", "a.b.s2", "cube", "s2"]
    assert "broken" in caplog.text
    meta = catalog.describe("cube")
    dims = meta["cube:dimensions"]
    assert dims["bands"]["values"] == [str(b) for b in small["bands"].values]
    assert dims["x"]["reference_system"] == 3035 and dims["x"]["step"] == 20.0
    assert dims["t"]["extent"] == ["2015-08-01T00:00:00Z", "2015-08-11T00:00:00Z"]
    assert meta["extent"]["temporal"]["interval"] == [dims["t"]["extent"]]
    west, south, east, north = meta["extent"]["spatial"]["bbox"][0]
    assert 20 < west < east < 30 and 40 < south < north < 50  # Romania, in WGS84
    with pytest.raises(CollectionNotFound):
        catalog.describe("nope")
