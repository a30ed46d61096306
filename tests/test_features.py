"""Feature cubes: the chain, the files written (zarr + STAC + quicklook), the processes, the CLI."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pystac
import pytest
import rioxarray  # noqa: F401
import xarray as xr

import openeo_deepfeatures as odf
from openeo_deepfeatures.cli import build_parser, main
from openeo_deepfeatures.errors import BandMissing, ProcessParameterInvalid
from openeo_deepfeatures.features import (
    PROVENANCE_ATTR,
    embed,
    feature_cube,
    write_feature_cube,
)
from openeo_deepfeatures.local import run_process_graph
from openeo_deepfeatures.processes import get_spec


@pytest.fixture(scope="module")
def dn():
    return odf.load_demo_cube(chunks={"t": 20}).isel(
        t=slice(40, 64), y=slice(0, 40), x=slice(5, 45)
    )


@pytest.fixture(scope="module")
def model():
    return odf.load_encoder()


@pytest.fixture(scope="module")
def features(dn, model):
    return feature_cube(dn, model=model).compute()


def test_chain_equals_its_parts(dn, model, features):
    si = odf.compute_indices(odf.preprocess_s2(dn), list(model.contract.channels))
    direct = embed(si, model=model).compute()
    assert features.dims == ("t", "bands", "y", "x")
    assert features.dtype == np.float32
    assert list(features["bands"].values) == list(model.contract.features)
    assert features.rio.crs == dn.rio.crs
    np.testing.assert_array_equal(features.values, direct.values)
    assert np.isfinite(features.values).mean() > 0.5


def test_lazy_end_to_end(dn, model):
    lazy = feature_cube(dn, model=model)
    assert lazy.chunks is not None


def test_missing_bands_are_named(dn, model):
    with pytest.raises(BandMissing, match="B11"):
        feature_cube(dn.sel(bands=["B02", "B03", "B04", "B08", "SCL"]), model=model)


def test_written_files(tmp_path, features):
    files = write_feature_cube(features, tmp_path / "f.zarr", source="demo subset")
    back = xr.open_zarr(files.zarr, consolidated=False, decode_coords="all")["features"]
    np.testing.assert_array_equal(back.values, features.values)
    assert back.rio.crs.to_epsg() == 3035
    assert back.rio.transform() == features.rio.transform()
    prov = json.loads(back.attrs[PROVENANCE_ATTR])
    assert prov["input"] == "demo subset" and prov["software"]["onnxruntime"]
    item = pystac.Item.from_file(str(files.item))
    assert item.properties["cube:dimensions"]["bands"]["values"] == list(features["bands"].values)
    assert item.properties["proj:code"] == "EPSG:3035" or item.properties.get("proj:epsg") == 3035
    assert item.assets["data"].href == "./f.zarr"
    aux = item.properties["cube:variables"]["valid_fraction"]
    assert aux["type"] == "auxiliary" and aux["dimensions"] == ["t"]
    assert files.quicklook.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_valid_fraction_per_date_and_the_clearest_date_in_the_quicklook(
    tmp_path, dn, features, monkeypatch
):
    """Features are never NaN, so ``valid_fraction`` (from the masked reflectance) tells clear
    from cloudy dates; it is stored in the zarr and picks the quicklook's date."""
    import openeo_deepfeatures.features as fc

    reflectance = odf.preprocess_s2(dn).values
    expected = np.isfinite(reflectance).any(axis=1).mean(axis=(1, 2))
    assert expected.min() < 0.5 < expected.max()  # cloudy and clear dates in the subset
    np.testing.assert_allclose(features["valid_fraction"].values, expected, rtol=1e-6)
    lazy = feature_cube(dn.chunk({"t": 8, "y": 20, "x": 20}), tile=20)
    assert lazy["valid_fraction"].chunks is not None
    monkeypatch.setattr(odf.io, "REGION_CHUNKS", 1)  # streamed region by region
    files = write_feature_cube(lazy, tmp_path / "f.zarr", quicklook_png=False, stac=False)
    back = xr.open_zarr(files.zarr, consolidated=False)
    np.testing.assert_allclose(back["valid_fraction"].values, expected, rtol=1e-6)

    import matplotlib.pyplot as plt

    shown, figures = [], []
    real_stretch = fc._stretch
    monkeypatch.setattr(fc, "_stretch", lambda v: shown.append(v) or real_stretch(v))
    monkeypatch.setattr(plt, "close", figures.append)
    fc.quicklook(back["features"], tmp_path / "q.png")
    clearest = int(np.argmax(expected))
    assert clearest != 0
    np.testing.assert_array_equal(
        shown[0], back["features"].isel(t=clearest).sel(bands="F01").values
    )
    # the time series leaves out dates with less than half of their pixels valid
    series = figures[0].axes[1].lines[0]
    clear = expected >= fc.QUICKLOOK_MIN_VALID
    assert 0 < clear.sum() < clear.size
    assert len(series.get_xdata()) == clear.sum()


def test_existing_output_refused_and_nothing_half_written(tmp_path, features, monkeypatch):
    import openeo_deepfeatures.features as fc

    write_feature_cube(features, tmp_path / "f.zarr")
    with pytest.raises(Exception, match="exists"):
        write_feature_cube(features, tmp_path / "f.zarr")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fc, "quicklook", fail)  # fails after the zarr store was written
    with pytest.raises(OSError, match="disk full"):
        write_feature_cube(features, tmp_path / "g.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "f.stac.json", "f.zarr"]
    with pytest.raises(ProcessParameterInvalid, match=r"\.zarr"):
        write_feature_cube(features, tmp_path / "g.nc")


def test_processes_call_the_native_api(dn, features):
    graph = {
        "l": {
            "process_id": "load_collection",
            "arguments": {"id": "C", "spatial_extent": None, "temporal_extent": None},
        },
        "f": {
            "process_id": "deepfeatures_feature_cube",
            "namespace": "deepfeatures",
            "arguments": {"data": {"from_node": "l"}},
            "result": True,
        },
    }
    got = run_process_graph(graph, collections={"C": dn})
    np.testing.assert_array_equal(got.values, features.values)


def test_cli_feature_cube(tmp_path, dn, features):
    src = tmp_path / "in.nc"
    dn.to_dataset(dim="bands").to_netcdf(src)
    options = ["--threads", "1", "--tile", "20", "--model", "default"]  # the API's keywords
    assert main(["feature-cube", str(src), "-o", str(tmp_path / "out.zarr"), "-q", *options]) == 0
    back = xr.open_zarr(tmp_path / "out.zarr", consolidated=False)["features"]
    np.testing.assert_allclose(back.values, features.values, atol=1e-6)


# --------------------------------------------------------------------------- one vocabulary


def test_the_main_job_is_at_the_top_level():
    assert (odf.feature_cube, odf.embed, odf.write_feature_cube) == (
        feature_cube,
        embed,
        write_feature_cube,
    )
    assert {"feature_cube", "embed", "write_feature_cube", "load_encoder"} <= set(odf.__all__)
    assert all(hasattr(odf, name) for name in odf.__all__)
    # the submodule has its own name: ``odf.feature_cube`` is the function, not a module
    assert callable(odf.feature_cube) and odf.features.feature_cube is feature_cube


@pytest.mark.parametrize("function", [feature_cube, embed, write_feature_cube])
def test_options_are_keyword_only(function):
    first, *options = inspect.signature(function).parameters.values()
    assert first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    if function is write_feature_cube:  # (features, path, *, ...)
        first, *options = options
    assert options and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in options)


def test_old_encoder_keyword_is_gone(dn):
    with pytest.raises(TypeError, match="encoder"):
        feature_cube(dn, encoder="default")
    with pytest.raises(TypeError, match="positional"):
        embed(dn, "default")


@pytest.mark.parametrize(
    ("command", "function", "process_id"),
    [
        ("feature-cube", feature_cube, "deepfeatures_feature_cube"),
        ("embed", embed, "deepfeatures_embed"),
    ],
)
def test_cli_api_and_process_say_the_same(command, function, process_id):
    """Every option of the CLI command is a keyword of the API function of the same name,
    and the process's parameters (but its input ``data``) are keywords of the function too."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[command]
    generic = {"help", "input", "output", "variable", "chunks", "scheduler", "overwrite", "quiet"}
    generic |= {"release_memory"}  # how the command runs its process, not what it computes
    options = {a.dest for a in parser._actions} - generic
    keywords = set(inspect.signature(function).parameters)
    assert options and options <= keywords, options - keywords
    process = {p["name"] for p in get_spec(process_id)["parameters"]} - {"data", "model_sha256"}
    assert process <= keywords, process - keywords
