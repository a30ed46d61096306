"""One STAC item builder (``stac.cube_item``) for feature cubes, index cubes and ``save_result``.

Items are validated offline against pystac's own core STAC 1.1 and GeoJSON schemas; nothing is
fetched. The extension schemas (datacube, projection) are not shipped by any installed package,
so their fields (``proj:*``, ``cube:*``) are checked by the assertions of the tests below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import rioxarray  # noqa: F401
from pystac.validation.stac_validator import JsonSchemaSTACValidator

import openeo_deepfeatures as odf
from openeo_deepfeatures.features import write_feature_cube
from openeo_deepfeatures.index_cube import write_index_cube
from openeo_deepfeatures.local import run_process_graph
from openeo_deepfeatures.stac import ZARR, cube_item

from .conftest import make_cube, tmp_policy

EXTENSIONS = {
    "datacube": "https://stac-extensions.github.io/datacube/v2.2.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
}


@pytest.fixture(autouse=True)
def offline(no_network):
    """No socket leaves the machine (tests/conftest.py)."""


def validate(item: pystac.Item | dict) -> pystac.Item:
    """Validate against the core STAC item schema offline; the extensions it declares must be
    the ones these tests check field by field."""
    item = pystac.Item.from_dict(item) if isinstance(item, dict) else item
    assert set(item.stac_extensions) <= set(EXTENSIONS.values())
    assert pystac.validation.validate_dict(
        item.to_dict(), extensions=[], validator=JsonSchemaSTACValidator()
    )
    return item


@pytest.fixture(scope="module")
def si():
    """A small index cube on the demo's EPSG:3035 grid, with a per-date coordinate."""
    cube = odf.preprocess_s2(
        odf.load_demo_cube().isel(t=slice(0, 3), y=slice(0, 10), x=slice(0, 12))
    )
    out = odf.compute_indices(cube, ["NDVI", "NDWI"]).load()
    quality = out.notnull().mean(("bands", "y", "x"))
    quality.attrs["long_name"] = "share of finite values per date"
    return out.assign_coords(quality=quality)


@pytest.fixture(scope="module")
def written(si, tmp_path_factory):
    """The item each of the three writers wrote for the same cube."""
    folder = tmp_path_factory.mktemp("written")
    features = write_feature_cube(si, folder / "features.zarr", quicklook_png=False)
    indices = write_index_cube(si, folder / "indices.zarr", source="demo subset")
    graph = {
        "load": {"process_id": "load_collection", "arguments": LOAD},
        "save": {
            "process_id": "save_result",
            "arguments": {"data": {"from_node": "load"}, "format": "ZARR"},
            "result": True,
        },
    }
    saved = run_process_graph(graph, collections={"SI": si}, output=folder, policy=tmp_policy())
    return {
        "feature cube": pystac.Item.from_file(str(features.item)),
        "index cube": pystac.Item.from_file(str(indices.item)),
        "save_result": pystac.Item.from_dict(saved),
    }


LOAD = {"id": "SI", "spatial_extent": None, "temporal_extent": None}
WRITERS = ["feature cube", "index cube", "save_result"]


@pytest.mark.parametrize("writer", WRITERS)
def test_each_writer_describes_the_cube(writer, written, si):
    item = validate(written[writer])
    props = item.properties
    assert props["proj:code"] == "EPSG:3035"
    assert props["proj:shape"] == [10, 12]
    assert props["proj:transform"] == pytest.approx(list(si.rio.transform())[:6])
    assert props["proj:bbox"] == pytest.approx(list(si.rio.bounds()))
    # the footprint in EPSG:4326 from odc-geo, checked against rioxarray's densified bounds
    assert item.bbox == pytest.approx(list(si.rio.transform_bounds("EPSG:4326")), abs=1e-7)  # 1 cm
    ring = np.array(item.geometry["coordinates"][0])
    assert item.geometry["type"] == "Polygon" and (ring[0] == ring[-1]).all()
    assert ring.min(axis=0) == pytest.approx(item.bbox[:2]) and ring.max(axis=0) == pytest.approx(
        item.bbox[2:]
    )
    times = [np.datetime64(t, "s") for t in si["t"].values]
    assert props["datetime"] is None
    assert np.datetime64(props["start_datetime"].rstrip("Z")) == times[0]
    assert np.datetime64(props["end_datetime"].rstrip("Z")) == times[-1]
    dims = props["cube:dimensions"]
    assert list(dims) == ["t", "bands", "y", "x"]
    assert dims["bands"] == {"type": "bands", "values": ["NDVI", "NDWI"]}
    assert [np.datetime64(v.rstrip("Z")) for v in dims["t"]["values"]] == times
    assert dims["x"]["reference_system"] == 3035 and dims["x"]["step"] == 20.0
    assert dims["x"]["extent"] == pytest.approx([props["proj:bbox"][0], props["proj:bbox"][2]])
    assert dims["y"]["extent"] == pytest.approx([props["proj:bbox"][1], props["proj:bbox"][3]])
    variables = props["cube:variables"]
    data = [name for name, v in variables.items() if v["type"] == "data"]
    assert len(data) == 1 and variables[data[0]]["dimensions"] == ["t", "bands", "y", "x"]
    assert variables["quality"] == {
        "dimensions": ["t"],
        "type": "auxiliary",
        "description": "share of finite values per date",
    }
    asset = item.assets["data"]
    assert asset.media_type == ZARR and asset.roles == ["data"]
    assert Path(asset.get_absolute_href() or asset.href).name.endswith(".zarr")


def test_one_builder_the_same_description(written):
    """Apart from the names, the three items of the same cube are the same."""

    def described(item):
        props = item.properties
        return {
            "geometry": item.geometry,
            "bbox": item.bbox,
            "extensions": sorted(item.stac_extensions),
            "dates": (props["start_datetime"], props["end_datetime"]),
            "proj": {k: v for k, v in props.items() if k.startswith("proj:")},
            "dimensions": props["cube:dimensions"],
            "auxiliary": {k: v for k, v in props["cube:variables"].items() if v["type"] != "data"},
        }

    first, *others = (described(written[w]) for w in WRITERS)
    assert all(other == first for other in others)


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [
        ("GTiff", "image/tiff; application=geotiff"),
        ("netCDF", "application/netcdf"),
        ("JSON", "application/json"),
    ],
)
def test_save_result_items_of_other_formats(fmt, media_type, si, tmp_path):
    graph = {
        "load": {"process_id": "load_collection", "arguments": LOAD},
        "one": {
            "process_id": "filter_temporal",
            "arguments": {
                "data": {"from_node": "load"},
                "extent": ["2015-08-01", str(si["t"].values[1])[:10]],
            },
        },
        "save": {
            "process_id": "save_result",
            "arguments": {"data": {"from_node": "one"}, "format": fmt},
            "result": True,
        },
    }
    item = validate(
        run_process_graph(graph, collections={"SI": si}, output=tmp_path, policy=tmp_policy())
    )
    assert item.assets["data"].media_type == media_type
    assert Path(item.assets["data"].href).is_file()
    assert item.properties["proj:code"] == "EPSG:3035"
    assert item.bbox == pytest.approx(list(si.rio.transform_bounds("EPSG:4326")), abs=1e-7)  # 1 cm
    # one date left: GTiff drops the dimension, the date stays in the item
    assert item.properties["start_datetime"] == item.properties["end_datetime"]
    assert item.properties["start_datetime"].startswith(str(si["t"].values[0])[:19])


def test_a_cube_without_crs_has_no_footprint():
    cube = make_cube(bands=["B04", "B08"])
    item = validate(cube_item(cube, item_id="c", href="c.zarr", media_type=ZARR))
    assert item.geometry is None and item.bbox is None
    assert not any(k.startswith("proj:") for k in item.properties)
    dims = item.properties["cube:dimensions"]
    assert dims["x"] == {"type": "spatial", "axis": "x", "extent": [500.0, 580.0]}
    assert "reference_system" not in dims["y"]


def test_a_crs_without_epsg_code_is_given_as_wkt2(si):
    crs = "+proj=laea +lat_0=51.5 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m"
    cube = si.rio.write_crs(crs)
    item = validate(cube_item(cube, item_id="c", href="c.zarr", media_type=ZARR))
    assert item.properties.get("proj:code") is None  # the projection extension: no code
    assert item.properties["proj:wkt2"].startswith("PROJCRS")
    assert (
        item.properties["cube:dimensions"]["x"]["reference_system"] == item.properties["proj:wkt2"]
    )
    assert item.bbox == pytest.approx(
        list(cube.rio.transform_bounds("EPSG:4326")), abs=1e-7
    )  # 1 cm


def test_results_without_time_or_cube():
    no_time = make_cube(bands=["B04"]).isel(t=0, drop=True)
    item = validate(cube_item(no_time, item_id="n", href="n.nc", media_type="application/netcdf"))
    assert item.datetime is not None and "start_datetime" not in item.properties
    assert list(item.properties["cube:dimensions"]) == ["bands", "y", "x"]
    number = validate(cube_item(3.5, item_id="v", href="v.json", media_type="application/json"))
    assert number.datetime is not None and number.stac_extensions == []
    assert number.assets["data"].href == "v.json"
