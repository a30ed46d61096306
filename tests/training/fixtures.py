"""Training fixtures shared with tests/encoder (registered in tests/conftest.py): real SI data
from the demo cube, tiny training cubes, briefly trained runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.training import make_training_cube

#: Channels computable from the demo cube's six bands (a few, to keep the tests fast).
SI_CHANNELS = ["NDVI", "NDMI", "NDWI", "EVI", "kNDVI"]


def tiny_config(cube: Path, out: Path, family: str = "dense", **train: object) -> dict:
    """A config that trains in about a second on the tiny cubes below."""
    model = (
        {"family": "dense", "width": 8, "decoder_width": 8}
        if family == "dense"
        else {"family": "patch", "width": 8, "heads": 2, "layers": 1}
    )
    return {
        "data": {"cube": str(cube)},
        "model": model,
        "train": {"epochs": 2, "batch_size": 4, "progress": False, **train},
        "output": {"dir": str(out)},
    }


@pytest.fixture(scope="session")
def demo_si() -> xr.DataArray:
    """A real SI cube: the demo cube's reflectance -> a few spectral indices, in memory."""
    cube = odf.compute_indices(odf.preprocess_s2(odf.load_demo_cube()), indices=SI_CHANNELS)
    return cube.load()


@pytest.fixture(scope="session")
def tile_cube(demo_si, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cubes") / "tiles.zarr"
    make_training_cube(
        demo_si, path, kind="tile", size=(12, 16, 16), n_samples=24, seed=0, block=(16, 16)
    )
    return path


@pytest.fixture(scope="session")
def patch_cube(demo_si, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cubes") / "patches.zarr"
    make_training_cube(demo_si, path, kind="patch", n_samples=32, seed=0)
    return path


@pytest.fixture(scope="session")
def dense_run(tile_cube, tmp_path_factory):
    """The default dense architecture (width 32), trained briefly on real tiles."""
    from openeo_deepfeatures.training import train

    out = tmp_path_factory.mktemp("dense-run")
    config = {
        "data": {"cube": str(tile_cube)},
        "model": {"family": "dense"},
        "train": {"epochs": 1, "batch_size": 2, "max_batches_per_epoch": 2, "progress": False},
        "output": {"dir": str(out), "name": "test-dense"},
    }
    return train(config)


@pytest.fixture(scope="session")
def patch_run(patch_cube, tmp_path_factory):
    """The DeepFeatures-layout patch model (small width), trained briefly on real patches."""
    from openeo_deepfeatures.training import train

    out = tmp_path_factory.mktemp("patch-run")
    config = tiny_config(patch_cube, out, "patch")
    config["output"]["name"] = "test-patch"
    return train(config)
