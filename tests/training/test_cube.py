"""Training data cubes: sampling, validity rules, block-wise splits, provenance, CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

import openeo_deepfeatures as odf
from openeo_deepfeatures.cli.training import add_training_cube
from openeo_deepfeatures.data import demo_path
from openeo_deepfeatures.errors import (
    BandMissing,
    DimensionNotAvailable,
    NoDataAvailable,
    ProcessParameterInvalid,
)
from openeo_deepfeatures.io import write_zarr
from openeo_deepfeatures.training import cube as tc
from openeo_deepfeatures.training import (
    cube_source,
    make_training_cube,
    open_training_cube,
    training_cube_provenance,
    training_cube_sha256,
)
from openeo_deepfeatures.training.cube_source import Cutter

CHANNELS = ["NDVI", "EVI", "NDWI"]
DEMO_INDICES = ["NDVI", "EVI", "NDWI", "NDMI", "kNDVI"]


def si_cube(
    shape: tuple[int, int, int] = (24, 20, 20),
    *,
    seed: int = 0,
    cloud: float = 0.25,
    gap_after: int | None = 10,
    gap_days: int = 90,
) -> xr.DataArray:
    """A random SI cube (t, bands, y, x): whole pixel-dates NaN (clouds), one stray NaN and
    inf, irregular dates (3..12 days apart) with one long gap after date ``gap_after``."""
    rng = np.random.default_rng(seed)
    nt, ny, nx = shape
    data = rng.normal(size=(nt, len(CHANNELS), ny, nx)).astype(np.float32)
    cloudy = rng.random((nt, ny, nx)) < cloud
    data = np.where(cloudy[:, None], np.float32(np.nan), data)
    data[1, 0, 2, 3] = np.nan  # one channel undefined where the others are finite
    data[2, 1, 4, 5] = np.inf
    steps = rng.integers(3, 13, size=nt - 1)
    if gap_after is not None:
        steps[gap_after] = gap_days
    days = np.concatenate([[0], np.cumsum(steps)])
    return xr.DataArray(
        data,
        dims=("t", "bands", "y", "x"),
        coords={
            "t": pd.Timestamp("2020-01-01") + pd.to_timedelta(days, unit="D"),
            "bands": CHANNELS,
            "y": 1000.0 - 20.0 * np.arange(ny),
            "x": 500.0 + 20.0 * np.arange(nx),
        },
        name="spectral_indices",
    )


def days_of(cube: xr.DataArray) -> np.ndarray:
    return (cube["t"].values - np.datetime64("1970-01-01")) / np.timedelta64(1, "D")


def window(values: np.ndarray, t0: int, y0: int, x0: int, size) -> np.ndarray:
    T, H, W = size
    out = values[t0 : t0 + T, :, y0 : y0 + H, x0 : x0 + W]
    return np.where(np.isfinite(out), out, np.nan)  # inf is stored as NaN


def arrays(ds: xr.Dataset) -> dict[str, object]:
    out: dict[str, object] = {
        name: np.asarray(ds[name].values).tobytes() for name in ("x", "day", *tc._SAMPLE_VARS)
    }
    out["split"] = [str(s) for s in ds["split"].values.tolist()]
    out["channel"] = [str(c) for c in ds["channel"].values.tolist()]
    return out


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("lazy", [False, True], ids=["numpy", "dask"])
def test_tile_samples_equal_source_slices(tmp_path, lazy, monkeypatch):
    cube = si_cube()
    source = cube.values.copy()
    if lazy:
        monkeypatch.setattr(cube_source, "IN_MEMORY_BYTES", 0)  # force the streaming path
        monkeypatch.setattr(cube_source, "REGION_BYTES", 3 * 10 * 10 * 4 * 6)  # 6 dates per region
        cube = cube.chunk({"t": 5, "y": 7, "x": 9})
    size = (4, 6, 6)
    out = make_training_cube(
        cube, tmp_path / "tc.zarr", size=size, n_samples=40, block=(10, 10), seed=3
    )
    ds = open_training_cube(out, verify=True)
    assert ds["x"].dims == ("sample", "t", "channel", "row", "col")
    assert ds["x"].shape == (40, 4, 3, 6, 6)
    assert ds["x"].dtype == np.float32 and ds["day"].dtype == np.float64
    assert [str(c) for c in ds["channel"].values.tolist()] == CHANNELS
    splits = [str(s) for s in ds["split"].values.tolist()]
    assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (28, 6, 6)
    assert splits == sorted(splits, key=tc.SPLITS.index)  # grouped train, validation, test
    x = ds["x"].values
    day = ds["day"].values
    t0, y0, x0 = (ds[v].values for v in ("t0", "y0", "x0"))
    ref_days = days_of(si_cube())
    for i in range(40):
        np.testing.assert_array_equal(x[i], window(source, t0[i], y0[i], x0[i], size))
        np.testing.assert_array_equal(day[i], ref_days[t0[i] : t0[i] + 4])
    assert not np.isinf(x).any()
    info = training_cube_provenance(ds)
    assert info["kind"] == "tile" and info["size"] == {"t": 4, "y": 6, "x": 6}
    assert info["counts"]["samples"] == {"train": 28, "validation": 6, "test": 6}
    assert info["source"]["shape"] == {"t": 24, "bands": 3, "y": 20, "x": 20}
    assert info["content_sha256"] == training_cube_sha256(ds)


def test_source_sha256_is_chunking_independent_and_matches_numpy(tmp_path, monkeypatch):
    cube = si_cube()
    values = cube.values
    expected = hashlib.sha256(
        b"".join(
            hashlib.sha256(values[t, c].astype("<f4").tobytes()).digest()
            for t in range(values.shape[0])
            for c in range(values.shape[1])
        )
    ).hexdigest()
    make_training_cube(cube, tmp_path / "a.zarr", size=(4, 6, 6), block=(10, 10), n_samples=9)
    monkeypatch.setattr(cube_source, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(cube_source, "REGION_BYTES", 2 * 20 * 20 * 4)  # two (y, x) slices per block
    lazy = cube.chunk({"t": 7, "bands": 2, "y": 11})
    make_training_cube(lazy, tmp_path / "b.zarr", size=(4, 6, 6), block=(10, 10), n_samples=9)
    a = training_cube_provenance(open_training_cube(tmp_path / "a.zarr"))
    b = training_cube_provenance(open_training_cube(tmp_path / "b.zarr"))
    assert a["source"]["sha256"] == b["source"]["sha256"] == expected
    assert a["content_sha256"] == b["content_sha256"]


def test_patch_kind_is_centred_on_a_clear_target(tmp_path):
    cube = si_cube(cloud=0.4)
    source = cube.values
    size = (5, 7, 7)
    ds = open_training_cube(
        make_training_cube(
            cube,
            tmp_path / "p.zarr",
            kind="patch",
            size=size,
            n_samples=60,
            min_clear_fraction=0.3,
            block=(10, 10),
        )
    )
    x = ds["x"].values
    t0, y0, x0 = (ds[v].values for v in ("t0", "y0", "x0"))
    for i in range(60):
        np.testing.assert_array_equal(x[i], window(source, t0[i], y0[i], x0[i], size))
        assert np.isfinite(x[i, 2, :, 3, 3]).any()  # the target pixel-date is clear
    info = training_cube_provenance(ds)
    assert info["rules"]["target_clear"] is True
    assert info["counts"]["removed"]["target_clear"] > 0  # 40 % clouds: the rule bites


def test_default_sizes_follow_the_design():
    assert tc.DEFAULT_SIZE == {"tile": (16, 32, 32), "patch": (11, 15, 15)}


# --------------------------------------------------------------------------- splits


def footprint_owner(ds: xr.Dataset, shape, size, with_time: bool) -> np.ndarray:
    """Map every (t,) y, x cell covered by a sample to the set of splits covering it."""
    T, H, W = size
    owner = np.full(shape if with_time else shape[1:], -1)
    for s, t0, y0, x0 in zip(
        ds["split"].values.tolist(), ds["t0"].values, ds["y0"].values, ds["x0"].values, strict=True
    ):
        code = tc.SPLITS.index(str(s))
        cells = (
            owner[t0 : t0 + T, y0 : y0 + H, x0 : x0 + W]
            if with_time
            else owner[y0 : y0 + H, x0 : x0 + W]
        )
        assert np.isin(cells, (-1, code)).all(), "two splits share a pixel"
        cells[...] = code
    return owner


def test_split_blocks_are_disjoint_and_hold_whole_samples(tmp_path):
    cube = si_cube((20, 30, 30), cloud=0.1)
    size = (4, 5, 5)
    ds = open_training_cube(
        make_training_cube(
            cube, tmp_path / "s.zarr", size=size, n_samples=120, block=(10, 10), seed=11
        )
    )
    y0, x0, block = ds["y0"].values, ds["x0"].values, ds["block"].values
    # every sample lies inside its block, ids numbered row-major over a 3x3 block grid
    assert ((y0 // 10) == ((y0 + 4) // 10)).all() and ((x0 // 10) == ((x0 + 4) // 10)).all()
    np.testing.assert_array_equal(block, (y0 // 10) * 3 + x0 // 10)
    splits = np.array([str(s) for s in ds["split"].values.tolist()])
    for b in np.unique(block):
        assert len(set(splits[block == b])) == 1, f"block {b} is in several splits"
    info = training_cube_provenance(ds)
    listed = info["split"]["blocks"]
    assert set(listed) == set(tc.SPLITS)
    all_listed = [b for name in tc.SPLITS for b in listed[name]]
    assert len(all_listed) == len(set(all_listed)) == 9  # every block holds valid samples
    for name in tc.SPLITS:
        assert set(block[splits == name]) <= set(listed[name])
    owner = footprint_owner(ds, (20, 30, 30), size, with_time=False)
    assert set(np.unique(owner)) == {-1, 0, 1, 2}
    # another seed assigns the blocks differently
    other = open_training_cube(
        make_training_cube(
            cube, tmp_path / "o.zarr", size=size, n_samples=120, block=(10, 10), seed=12
        )
    )
    assert training_cube_provenance(other)["split"]["blocks"] != listed


def test_time_blocks_split_time_too(tmp_path):
    cube = si_cube((24, 12, 12), cloud=0.1, gap_after=None)
    size = (4, 6, 6)
    ds = open_training_cube(
        make_training_cube(cube, tmp_path / "t.zarr", size=size, n_samples=50, block=(8, 12, 12))
    )
    t0 = ds["t0"].values
    assert ((t0 // 8) == ((t0 + 3) // 8)).all()
    np.testing.assert_array_equal(ds["block"].values, t0 // 8)  # one spatial block, 3 in time
    assert sorted(str(s) for s in set(ds["split"].values.tolist())) == sorted(tc.SPLITS)
    footprint_owner(ds, (24, 12, 12), size, with_time=True)


def test_zero_fraction_split_gets_no_blocks_and_no_samples(tmp_path):
    ds = open_training_cube(
        make_training_cube(
            si_cube(), tmp_path / "z.zarr", size=(4, 6, 6), block=(10, 10), split=(0.8, 0.2, 0)
        )
    )
    info = training_cube_provenance(ds)
    assert info["counts"]["samples"] == {"train": 410, "validation": 102, "test": 0}
    assert info["split"]["blocks"]["test"] == []
    assert "test" not in {str(s) for s in ds["split"].values.tolist()}


# --------------------------------------------------------------------------- rules


def brute_force_counts(cube, size, block, min_clear, max_gap, stride=(1, 1, 1)):
    """Apply the rules one candidate at a time, in the documented order."""
    values = cube.values
    clear = np.isfinite(values).any(axis=1)
    day = days_of(cube)
    T, H, W = size
    nt, _, ny, nx = values.shape
    removed = {"straddle_block": 0, "max_gap_days": 0, "min_clear_fraction": 0}
    valid = 0
    for t0 in range(0, nt - T + 1, stride[0]):
        for y0 in range(0, ny - H + 1, stride[1]):
            for x0 in range(0, nx - W + 1, stride[2]):
                if (
                    y0 // block[0] != (y0 + H - 1) // block[0]
                    or x0 // block[1] != (x0 + W - 1) // block[1]
                ):
                    removed["straddle_block"] += 1
                elif np.diff(day[t0 : t0 + T]).max() > max_gap:
                    removed["max_gap_days"] += 1
                elif clear[t0 : t0 + T, y0 : y0 + H, x0 : x0 + W].mean() < min_clear:
                    removed["min_clear_fraction"] += 1
                else:
                    valid += 1
    return removed, valid


@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 3, 1)])
def test_rule_counts_match_a_brute_force_reference(tmp_path, stride):
    cube = si_cube((16, 14, 14), cloud=0.3, gap_after=6, gap_days=40)
    size, block = (3, 4, 4), (7, 7)
    out = make_training_cube(
        cube,
        tmp_path / "r.zarr",
        size=size,
        block=block,
        n_samples=20,
        min_clear_fraction=0.7,
        max_gap_days=30,
        stride=stride,
    )
    ds = open_training_cube(out)
    info = training_cube_provenance(ds)
    removed, valid = brute_force_counts(cube, size, block, 0.7, 30, stride)
    assert info["counts"]["removed"] == removed
    assert info["counts"]["valid"] == valid
    assert all(n > 0 for n in removed.values())  # every rule removes something here
    # the drawn samples obey the rules
    x, day = ds["x"].values, ds["day"].values
    assert (np.isfinite(x).any(axis=2).mean(axis=(1, 2, 3)) >= 0.7).all()
    assert (np.diff(day, axis=1).max(axis=1) <= 30).all()
    assert (ds["t0"].values % stride[0] == 0).all() and (ds["y0"].values % stride[1] == 0).all()


def test_too_few_valid_samples_says_which_rule_removed_what(tmp_path):
    cube = si_cube((16, 14, 14), cloud=0.3, gap_after=6, gap_days=40)
    with pytest.raises(NoDataAvailable) as info:
        make_training_cube(
            cube,
            tmp_path / "few.zarr",
            size=(3, 4, 4),
            block=(7, 7),
            n_samples=500,
            min_clear_fraction=0.7,
            max_gap_days=30,
        )
    removed, valid = brute_force_counts(cube, (3, 4, 4), (7, 7), 0.7, 30)
    message = str(info.value)
    assert f"{removed['straddle_block']} straddle split blocks" in message
    assert f"{removed['max_gap_days']} span a gap > max_gap_days=30" in message
    assert f"{removed['min_clear_fraction']} are less than min_clear_fraction=0.7" in message
    assert f"{valid} valid remain" in message and "split 'train'" in message
    assert leftovers(tmp_path) == []
    with pytest.raises(NoDataAvailable, match="min_clear_fraction=1"):
        make_training_cube(cube, tmp_path / "none.zarr", size=(3, 4, 4), block=(7, 7),
                           min_clear_fraction=1.0)  # fmt: skip
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- reproducibility


def test_same_input_and_seed_give_byte_identical_arrays(tmp_path, monkeypatch):
    cube = si_cube()
    kwargs = {"size": (4, 6, 6), "block": (10, 10), "n_samples": 30, "max_gap_days": 60}
    a = open_training_cube(make_training_cube(cube, tmp_path / "a.zarr", seed=5, **kwargs))
    b = open_training_cube(make_training_cube(cube, tmp_path / "b.zarr", seed=5, **kwargs))
    c = open_training_cube(make_training_cube(cube, tmp_path / "c.zarr", seed=6, **kwargs))
    monkeypatch.setattr(cube_source, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(cube_source, "REGION_BYTES", 1)  # the least: T dates of one block at a time
    lazy = cube.chunk({"t": 3, "y": 8, "x": 8})
    d = open_training_cube(make_training_cube(lazy, tmp_path / "d.zarr", seed=5, **kwargs))
    assert arrays(a) == arrays(b) == arrays(d)
    assert arrays(a)["x"] != arrays(c)["x"]
    pa, pb, pd_ = (training_cube_provenance(ds) for ds in (a, b, d))
    assert pa["content_sha256"] == pb["content_sha256"] == pd_["content_sha256"]
    assert pa["content_sha256"] != training_cube_provenance(c)["content_sha256"]
    assert pa["seed"] == 5 and pa["rules"]["max_gap_days"] == 60


# --------------------------------------------------------------------------- demo cube


@pytest.fixture(scope="module")
def demo_si() -> xr.DataArray:
    dn = odf.load_demo_cube(chunks={"t": 20})
    return odf.compute_indices(odf.preprocess_s2(dn), DEMO_INDICES)


def test_demo_cube_end_to_end(tmp_path, demo_si):
    reference = demo_si.values  # numpy reference of the lazy pipeline
    patches = open_training_cube(
        make_training_cube(
            demo_si, tmp_path / "patch.zarr", kind="patch", n_samples=60, max_gap_days=60
        ),
        verify=True,
    )
    tiles = open_training_cube(
        make_training_cube(
            demo_si,
            tmp_path / "tile.zarr",
            size=(8, 16, 16),
            block=(35, 25, 25),  # 4 time x 4 space blocks
            n_samples=40,
            min_clear_fraction=0.6,
        ),
        verify=True,
    )
    ref_days = days_of(demo_si)
    for ds, size in ((patches, (11, 15, 15)), (tiles, (8, 16, 16))):
        assert ds["x"].shape[1:] == (size[0], len(DEMO_INDICES), size[1], size[2])
        t0, y0, x0 = (ds[v].values for v in ("t0", "y0", "x0"))
        x = ds["x"].values
        for i in (0, 7, len(t0) // 2, len(t0) - 1):
            np.testing.assert_array_equal(x[i], window(reference, t0[i], y0[i], x0[i], size))
            np.testing.assert_array_equal(ds["day"].values[i], ref_days[t0[i] : t0[i] + size[0]])
        info = training_cube_provenance(ds)
        assert info["source"]["crs"] == "EPSG:3035"
        assert info["source"]["channels"] == DEMO_INDICES
        assert info["source"]["dates"][0].startswith("2015-08-01")
    assert (np.diff(patches["day"].values, axis=1) <= 60).all()


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"size": (30, 4, 4)}, "size"),
        ({"size": (4, 21, 4), "block": (30, 30)}, "size"),
        ({"size": (4, 0, 4)}, "size"),
        ({"size": (4, 4)}, "size"),
        ({"kind": "patch", "size": (5, 6, 7)}, "size"),
        ({"kind": "cube"}, "kind"),
        ({"split": (0.5, 0.3, 0.1)}, "split"),
        ({"split": (0.8, -0.1, 0.3)}, "split"),
        ({"split": (0.5, 0.5)}, "split"),
        ({"n_samples": -1}, "n_samples"),
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 2}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"seed": -3}, "seed"),
        ({"min_clear_fraction": -0.1}, "min_clear_fraction"),
        ({"min_clear_fraction": 1.5}, "min_clear_fraction"),
        ({"max_gap_days": -5}, "max_gap_days"),
        ({"max_gap_days": 0}, "max_gap_days"),
        ({"block": (3, 3)}, "block"),
        ({"block": (-10, 10)}, "block"),
        ({"block": (20, 20)}, "block"),  # one block for three splits
        ({"stride": (0, 1, 1)}, "stride"),
        ({"channels": []}, "channels"),
        ({"channels": ["NDVI", "NDVI"]}, "channels"),
    ],
)
def test_impossible_settings_name_the_parameter(tmp_path, kwargs, parameter):
    options = {"size": (4, 6, 6), "block": (10, 10), "n_samples": 10} | kwargs
    with pytest.raises(ProcessParameterInvalid) as info:
        make_training_cube(si_cube(), tmp_path / "bad.zarr", **options)
    assert info.value.fields["parameter"] == parameter
    assert f"parameter '{parameter}'" in str(info.value)
    assert leftovers(tmp_path) == []


def test_bad_inputs(tmp_path):
    cube = si_cube()
    with pytest.raises(BandMissing, match=r"\['NOPE'\] are not in the cube"):
        make_training_cube(cube, tmp_path / "a.zarr", channels=["NDVI", "NOPE"])
    with pytest.raises(ProcessParameterInvalid, match="digital numbers"):
        make_training_cube(odf.load_demo_cube(), tmp_path / "a.zarr")
    with pytest.raises(DimensionNotAvailable, match="without"):
        make_training_cube(cube.isel(t=0), tmp_path / "a.zarr")
    with pytest.raises(ProcessParameterInvalid, match="dates"):
        make_training_cube(cube.assign_coords(t=np.arange(24)), tmp_path / "a.zarr")
    with pytest.raises(ProcessParameterInvalid, match="increasing"):
        make_training_cube(cube.isel(t=slice(None, None, -1)), tmp_path / "a.zarr")
    with pytest.raises(ProcessParameterInvalid, match="si_cube"):
        make_training_cube(cube.values, tmp_path / "a.zarr")
    assert leftovers(tmp_path) == []


def test_existing_output_and_failed_writes_leave_nothing_half_written(tmp_path, monkeypatch):
    cube = si_cube()
    kwargs = {"size": (4, 6, 6), "block": (10, 10), "n_samples": 12}
    target = make_training_cube(cube, tmp_path / "out.zarr", seed=1, **kwargs)
    before = arrays(open_training_cube(target))
    with pytest.raises(ProcessParameterInvalid, match="parameter 'path'"):
        make_training_cube(cube, target, seed=2, **kwargs)
    calls = {"n": 0}
    real = Cutter.__call__

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk full")
        return real(self, *args)

    monkeypatch.setattr(Cutter, "__call__", failing)
    monkeypatch.setattr(tc, "CHUNK_BYTES", 1)  # one sample per chunk: several chunks written
    with pytest.raises(OSError, match="disk full"):
        make_training_cube(cube, target, seed=2, overwrite=True, **kwargs)
    assert leftovers(tmp_path) == ["out.zarr"]
    assert arrays(open_training_cube(target, verify=True)) == before
    monkeypatch.setattr(Cutter, "__call__", real)
    make_training_cube(cube, target, seed=2, overwrite=True, **kwargs)
    assert arrays(open_training_cube(target, verify=True)) != before
    assert leftovers(tmp_path) == ["out.zarr"]


# --------------------------------------------------------------------------- reader


def test_open_training_cube_refuses_what_is_not_one(tmp_path):
    with pytest.raises(ProcessParameterInvalid, match="no such zarr store"):
        open_training_cube(tmp_path / "missing.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ProcessParameterInvalid, match="cannot open it as zarr"):
        open_training_cube(tmp_path / "empty.zarr")
    plain = write_zarr(si_cube(), tmp_path / "si.zarr")
    with pytest.raises(ProcessParameterInvalid, match="has no 'deepfeatures_training_cube'"):
        open_training_cube(plain)

    good = make_training_cube(
        si_cube(), tmp_path / "good.zarr", size=(4, 6, 6), block=(10, 10), n_samples=12
    )
    group = zarr.open_group(good, mode="r+")
    info = json.loads(group.attrs[tc.ATTR])
    group.attrs[tc.ATTR] = json.dumps({**info, "format_version": "99"})
    with pytest.raises(ProcessParameterInvalid, match="version '99'"):
        open_training_cube(good)
    group.attrs[tc.ATTR] = "{not json"
    with pytest.raises(ProcessParameterInvalid, match="not JSON"):
        open_training_cube(good)
    group.attrs[tc.ATTR] = json.dumps(info)
    open_training_cube(good, verify=True)
    values = group["x"][0]
    group["x"][0] = np.where(np.isfinite(values), values + 1, values)  # tampered values
    open_training_cube(good)  # the format is still fine ...
    with pytest.raises(ProcessParameterInvalid, match="differs from the recorded"):
        open_training_cube(good, verify=True)  # ... the content is not
    lacking = xr.open_zarr(good, consolidated=False).drop_vars("t0")
    lacking.to_zarr(tmp_path / "lacking.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(ProcessParameterInvalid, match="variable 't0' is missing"):
        open_training_cube(tmp_path / "lacking.zarr")


# --------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepfeatures")
    add_training_cube(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_raw_l2a_cube_is_preprocessed_and_indices_computed(tmp_path, capsys):
    out = tmp_path / "demo_tc.zarr"
    options = "--kind patch --samples 30 --seed 4 --max-gap-days 90 --indices NDVI NDMI"
    args = parser().parse_args(
        ["training-cube", str(demo_path()), "-o", str(out), *options.split()]
    )
    assert args.func(args) == 0
    assert "wrote" in capsys.readouterr().err
    ds = open_training_cube(out, verify=True)
    reference = odf.compute_indices(odf.preprocess_s2(odf.load_demo_cube()), ["NDVI", "NDMI"])
    values = reference.values
    assert [str(c) for c in ds["channel"].values.tolist()] == ["NDVI", "NDMI"]
    t0, y0, x0 = (ds[v].values for v in ("t0", "y0", "x0"))
    for i in (0, 15, 29):
        np.testing.assert_array_equal(
            ds["x"].values[i], window(values, t0[i], y0[i], x0[i], (11, 15, 15))
        )
    info = training_cube_provenance(ds)
    assert info["seed"] == 4 and info["kind"] == "patch" and info["n_samples"] == 30
    assert info["source"]["path"] == str(Path(str(demo_path())).resolve())
    assert info["source"]["steps"][0] == "preprocess_s2"


def test_cli_si_cube_selects_channels_and_options(tmp_path):
    si = write_zarr(si_cube(), tmp_path / "si.zarr")
    out = tmp_path / "tc.zarr"
    options = (
        "--size 4,6,6 --block 8,10,10 --split 0.5,0.25,0.25 --samples 16 --min-clear 0.4 -q "
        "--indices EVI NDVI --stride 1,2,2"
    )
    args = parser().parse_args(["training-cube", str(si), "-o", str(out), *options.split()])
    assert args.func(args) == 0
    ds = open_training_cube(out)
    info = training_cube_provenance(ds)
    assert [str(c) for c in ds["channel"].values.tolist()] == ["EVI", "NDVI"]
    assert info["counts"]["samples"] == {"train": 8, "validation": 4, "test": 4}
    assert info["split"]["block"] == {"t": 8, "y": 10, "x": 10}
    assert info["rules"]["min_clear_fraction"] == 0.4
    assert (ds["y0"].values % 2 == 0).all()
    values = si_cube().sel(bands=["EVI", "NDVI"]).values
    i = 5
    t0, y0, x0 = (int(ds[v].values[i]) for v in ("t0", "y0", "x0"))
    np.testing.assert_array_equal(ds["x"].values[i], window(values, t0, y0, x0, (4, 6, 6)))
    with pytest.raises(SystemExit):
        parser().parse_args(["training-cube", str(si), "-o", "x.zarr", "--size", "4,6"])
    bad = parser().parse_args(["training-cube", str(si), "-o", str(out), "--indices", "NOPE"])
    with pytest.raises(BandMissing, match="NOPE"):
        bad.func(bad)
