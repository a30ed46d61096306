"""The embedded demo cube."""

from __future__ import annotations

import numpy as np

from openeo_deepfeatures.data import load_demo_cube, load_demo_tree_cover


def test_demo_cube(demo_dn):
    assert demo_dn.dims == ("t", "bands", "y", "x")
    assert demo_dn.shape == (140, 7, 50, 50)
    assert demo_dn["bands"].values.tolist() == ["B02", "B03", "B04", "B08", "B8A", "B11", "SCL"]
    assert demo_dn.dtype == np.uint16
    assert str(demo_dn["t"].values[0])[:10] == "2015-08-01"
    assert demo_dn.rio.crs.to_epsg() == 3035
    assert demo_dn.rio.resolution() == (20.0, -20.0)
    scl = demo_dn.sel(bands="SCL").values
    assert set(np.unique(scl)) <= set(range(12))
    clear = np.isin(scl, [4, 5, 6, 7, 11]).mean()
    assert 0.6 < clear < 0.66  # about 63 % per the data's README


def test_demo_lazy():
    lazy = load_demo_cube(chunks={"t": 20})
    assert lazy.chunks is not None
    np.testing.assert_array_equal(lazy.isel(t=5).values, load_demo_cube().isel(t=5).values)


def test_tree_cover():
    tcd = load_demo_tree_cover()
    assert tcd.shape == (50, 50)
    assert 0.75 < float((tcd >= 50).mean()) < 0.9  # about 82 % forest
