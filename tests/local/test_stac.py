"""load_stac: real STAC (pystac) over COGs, zarr and netCDF written from the demo cube, offline.

Every test runs with Python sockets limited to 127.0.0.1: nothing may fetch a schema or a
remote catalog. Pixels are checked against the demo cube itself (numpy).
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import dask.array
import numpy as np
import pandas as pd
import pystac
import pytest
import rioxarray  # noqa: F401
import shapely
from pyproj import Transformer
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterBand, RasterExtension

import openeo_deepfeatures as odf
from openeo_deepfeatures.errors import (
    FeatureUnsupported,
    NoDataAvailable,
    OpenEOError,
    ProcessParameterInvalid,
)
from openeo_deepfeatures.local import default_registry, run_process_graph
from openeo_deepfeatures.local.stac import SPEC, load_stac

from ..conftest import tmp_policy

CLOUD = [5.0, 40.0, 10.0, 70.0]
PLATFORM = ["sentinel-2a", "Sentinel-2B", "sentinel-2a", "sentinel-2b"]
COMMON = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B8A": "nir08"}
TO_LONLAT = Transformer.from_crs(3035, 4326, always_xy=True)


@pytest.fixture(autouse=True)
def offline(no_network):
    """No socket leaves the machine (tests/conftest.py)."""


@pytest.fixture(scope="module")
def demo():
    return odf.load_demo_cube().isel(t=slice(0, 4)).load()


def stac_item(item_id: str, cube, t) -> pystac.Item:
    bbox, geometry = footprint(cube)
    return pystac.Item(item_id, geometry, bbox, when(t), {})


def when(t) -> dt.datetime:
    return pd.Timestamp(t).tz_localize("UTC").to_pydatetime()


def footprint(cube) -> tuple[list[float], dict]:
    west, south, east, north = TO_LONLAT.transform_bounds(*cube.rio.bounds(), densify_pts=21)
    return [west, south, east, north], shapely.geometry.mapping(
        shapely.box(west, south, east, north)
    )


def cog_item(folder: Path, item_id: str, cube2d_by_band: dict, t, properties=None):
    """An item with one single-band COG per band, no proj/raster metadata (read from files)."""
    folder.mkdir(parents=True, exist_ok=True)
    first = next(iter(cube2d_by_band.values()))
    bbox, geometry = footprint(first)
    item = pystac.Item(item_id, geometry, bbox, when(t), dict(properties or {}))
    for band, raster in cube2d_by_band.items():
        path = folder / f"{band}.tif"
        raster.rio.write_nodata(0).rio.to_raster(path, driver="COG")
        item.add_asset(
            band, pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"])
        )
    return item


def save_collection(root: Path, items: list[pystac.Item]) -> Path:
    extent = pystac.Extent(
        pystac.SpatialExtent([items[0].bbox]),
        pystac.TemporalExtent([[items[0].datetime, items[-1].datetime]]),
    )
    collection = pystac.Collection("demo-cogs", "Demo cube as COGs", extent)
    collection.add_items(items)
    collection.normalize_hrefs(str(root))
    collection.make_all_asset_hrefs_relative()
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "collection.json"


@pytest.fixture(scope="module")
def cog_collection(tmp_path_factory, demo) -> Path:
    root = tmp_path_factory.mktemp("cogs")
    items = [
        cog_item(
            root / f"demo-{i}",
            f"demo-{i}",
            {str(b): demo.sel(t=t, bands=b) for b in demo["bands"].values},
            t,
            {"eo:cloud_cover": CLOUD[i], "platform": PLATFORM[i]},
        )
        for i, t in enumerate(demo["t"].values)
    ]
    del items[2].properties["platform"]
    return save_collection(root, items)


@pytest.fixture(scope="module")
def multiband_item(tmp_path_factory, demo) -> Path:
    """One item, one 7-band COG with eo:bands, raster:bands and proj metadata (no file read)."""
    root = tmp_path_factory.mktemp("multiband")
    t = demo["t"].values[1]
    demo.sel(t=t).rename(bands="band").rio.write_nodata(0).rio.to_raster(
        root / "all.tif", driver="COG"
    )
    item = stac_item("multi", demo, t)
    asset = pystac.Asset("./all.tif", media_type=pystac.MediaType.COG, roles=["data"])
    item.add_asset("image", asset)
    labels = [str(b) for b in demo["bands"].values]
    EOExtension.ext(asset, add_if_missing=True).bands = [
        Band.create(name=b, common_name=COMMON.get(b)) for b in labels
    ]
    RasterExtension.ext(asset, add_if_missing=True).bands = [
        RasterBand.create(data_type="uint16", nodata=0) for _ in labels
    ]
    proj = ProjectionExtension.ext(asset, add_if_missing=True)
    proj.code = "EPSG:3035"
    proj.shape = [demo.sizes["y"], demo.sizes["x"]]
    proj.transform = list(demo.rio.transform())[:6]
    path = root / "item.json"
    path.write_text(json.dumps(item.to_dict(include_self_link=False)))
    return path


def run_load(**arguments):
    graph = {
        "process_graph": {
            "load": {"process_id": "load_stac", "arguments": arguments, "result": True}
        }
    }
    return run_process_graph(graph, policy=tmp_policy(loopback=True))


def assert_same_grid(cube, reference):
    assert cube.rio.crs.to_epsg() == 3035
    np.testing.assert_allclose(cube["x"].values, reference["x"].values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cube["y"].values, reference["y"].values, rtol=0, atol=1e-6)


# --- registration ------------------------------------------------------------------------


def test_registered_with_a_spec_that_admits_local_paths():
    process = default_registry().get("load_stac")
    assert process.spec is SPEC and process.implementation is load_stac
    url = next(p for p in process.spec["parameters"] if p["name"] == "url")
    assert "pattern" not in url["schema"]  # upstream's ^https?:// would refuse local files
    assert [p["name"] for p in process.spec["parameters"]] == [
        "url",
        "spatial_extent",
        "temporal_extent",
        "bands",
        "properties",
    ]


# --- COGs --------------------------------------------------------------------------------


def test_collection_of_cogs_equals_the_demo_cube(cog_collection, demo):
    cube = run_load(url=str(cog_collection))
    assert isinstance(cube.data, dask.array.Array)  # lazy
    assert cube.dims == ("t", "bands", "y", "x")
    assert list(cube["bands"].values) == list(demo["bands"].values)
    np.testing.assert_array_equal(cube["t"].values, demo["t"].values)
    assert_same_grid(cube, demo)
    values = cube.values
    assert values.dtype == np.uint16
    np.testing.assert_array_equal(values, demo.values)
    assert cube.attrs["nodata"] == 0


def test_file_url_folder_and_single_item(cog_collection, demo):
    by_url = load_stac(cog_collection.as_uri(), bands=["B04"])
    by_folder = load_stac(str(cog_collection.parent), bands=["B04"])
    np.testing.assert_array_equal(by_url.values, by_folder.values)
    item = load_stac(str(cog_collection.parent / "demo-2" / "demo-2.json"))
    assert item.sizes["t"] == 1
    np.testing.assert_array_equal(item.values, demo.isel(t=[2]).values)


def test_bands_in_requested_order_with_sentinel2_spellings(cog_collection, demo):
    cube = run_load(url=str(cog_collection), bands=["B8A", "b4", "SCL"])
    assert list(cube["bands"].values) == ["B8A", "B04", "SCL"]
    np.testing.assert_array_equal(cube.values, demo.sel(bands=["B8A", "B04", "SCL"]).values)


def test_missing_bands_are_named(cog_collection):
    with pytest.raises(ProcessParameterInvalid, match=r"\['B12', 'foo'\] not in the STAC data"):
        run_load(url=str(cog_collection), bands=["B04", "B12", "foo"])


def test_temporal_extent_is_left_closed_in_utc(cog_collection, demo):
    cube = run_load(url=str(cog_collection), temporal_extent=["2015-08-11", "2015-08-31"])
    np.testing.assert_array_equal(cube["t"].values, demo["t"].values[[1]])
    np.testing.assert_array_equal(cube.values, demo.isel(t=[1]).values)
    # 01:00+02:00 is 23:00 UTC the day before: 2015-08-11T00:00Z is inside
    local = run_load(url=str(cog_collection), temporal_extent=["2015-08-11T01:00:00+02:00", None])
    np.testing.assert_array_equal(local["t"].values, demo["t"].values[1:])
    utc = run_load(url=str(cog_collection), temporal_extent=["2015-08-11T01:00:00Z", None])
    np.testing.assert_array_equal(utc["t"].values, demo["t"].values[2:])


def test_temporal_extent_errors(cog_collection):
    with pytest.raises(ProcessParameterInvalid, match="TemporalExtentEmpty"):
        run_load(url=str(cog_collection), temporal_extent=["2016-01-01", "2015-01-01"])
    with pytest.raises(NoDataAvailable):
        run_load(url=str(cog_collection), temporal_extent=["2020-01-01", "2021-01-01"])


def test_bounding_box_in_the_data_crs_keeps_pixel_centres_inside(cog_collection, demo):
    x, y = demo["x"].values, demo["y"].values  # y descending
    extent = {"west": x[10] - 5, "east": x[19] + 5, "north": y[5] + 5, "south": y[24] - 5}
    cube = run_load(url=str(cog_collection), spatial_extent=extent | {"crs": 3035})
    expected = demo.isel(x=slice(10, 20), y=slice(5, 25))
    assert_same_grid(cube, expected)
    np.testing.assert_array_equal(cube.values, expected.values)


def test_bounding_box_in_lonlat_agrees_with_load_collection(cog_collection, demo):
    x, y = demo["x"].values, demo["y"].values
    west, south, east, north = TO_LONLAT.transform_bounds(x[5], y[40], x[30], y[8])
    extent = {"west": west, "south": south, "east": east, "north": north}
    period = ["2015-08-01", "2016-03-19"]
    cube = run_load(url=str(cog_collection), spatial_extent=extent, temporal_extent=period)
    graph = {
        "process_graph": {
            "load": {
                "process_id": "load_collection",
                "arguments": {"id": "DEMO_S2", "spatial_extent": extent, "temporal_extent": period},
                "result": True,
            }
        }
    }
    reference = run_process_graph(graph)
    assert 0 < cube.sizes["x"] < demo.sizes["x"] and 0 < cube.sizes["y"] < demo.sizes["y"]
    assert_same_grid(cube, reference)
    np.testing.assert_array_equal(cube.values, reference.values)


def test_extent_outside_the_data_is_no_data(cog_collection):
    far = {"west": 10.0, "south": 50.0, "east": 10.1, "north": 50.1}
    with pytest.raises(NoDataAvailable):
        run_load(url=str(cog_collection), spatial_extent=far)


def test_items_outside_the_extent_are_not_opened(tmp_path, multiband_item, demo):
    inside = json.loads(multiband_item.read_text())
    inside["assets"]["image"]["href"] = str(multiband_item.parent / "all.tif")
    west, south, east, north = inside["bbox"]
    inside["bbox"] = [west, south, 0.0, east, north, 50.0]  # 3-D bbox: [w, s, zmin, e, n, zmax]
    far = json.loads(json.dumps(inside)) | {"id": "far", "bbox": [20.0, 60.0, 20.1, 60.1]}
    far["geometry"] = shapely.geometry.mapping(shapely.box(20.0, 60.0, 20.1, 60.1))
    far["assets"]["image"]["href"] = str(tmp_path / "never-written.tif")
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [inside, far]}))
    x, y = demo["x"].values, demo["y"].values
    extent = {"west": x[0], "east": x[9], "south": y[9], "north": y[0], "crs": 3035}
    cube = load_stac(str(path), spatial_extent=extent, bands=["B04"])
    expected = demo.isel(t=[1], x=slice(0, 10), y=slice(0, 10)).sel(bands=["B04"])
    np.testing.assert_array_equal(cube.values, expected.values)
    with pytest.raises(ProcessParameterInvalid, match=r"never-written\.tif"):
        load_stac(str(path), bands=["B04"])  # without an extent the far item is read


def test_geojson_polygon_masks_pixels_outside(cog_collection, demo):
    x, y = demo["x"].values, demo["y"].values
    corners_3035 = [(x[3] + 3, y[4] - 3), (x[40] + 3, y[10] - 3), (x[12] + 3, y[45] - 3)]
    ring = [TO_LONLAT.transform(*c) for c in corners_3035]
    polygon = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    feature = {"type": "Feature", "properties": {}, "geometry": polygon}
    cube = run_load(
        url=str(cog_collection),
        spatial_extent={"type": "FeatureCollection", "features": [feature]},
        bands=["B04"],
    ).isel(t=0, bands=0)
    back = Transformer.from_crs(4326, 3035, always_xy=True)
    shape_3035 = shapely.Polygon([back.transform(*p) for p in ring])
    xx, yy = np.meshgrid(cube["x"].values, cube["y"].values)
    inside = shapely.contains_xy(shape_3035, xx, yy)
    reference = demo.isel(t=0).sel(bands="B04").sel(x=cube["x"], y=cube["y"]).values
    got = cube.values
    np.testing.assert_array_equal(got[inside], reference[inside])
    assert (got[~inside] == 0).all() and (~inside).any()
    all_x, all_y = np.meshgrid(x, y)  # every demo pixel inside the polygon was loaded
    assert shapely.contains_xy(shape_3035, all_x, all_y).sum() == inside.sum()


def test_properties_conditions_evaluated_by_the_executor(cog_collection, demo):
    def condition(process_id, **arguments):
        return {
            "process_graph": {
                "c": {
                    "process_id": process_id,
                    "arguments": {"x": {"from_parameter": "value"}, **arguments},
                    "result": True,
                }
            }
        }

    clear = run_load(url=str(cog_collection), properties={"eo:cloud_cover": condition("lte", y=10)})
    np.testing.assert_array_equal(clear["t"].values, demo["t"].values[[0, 2]])
    np.testing.assert_array_equal(clear.values, demo.isel(t=[0, 2]).values)
    both = run_load(
        url=str(cog_collection),
        properties={
            "eo:cloud_cover": condition("between", min=0, max=50),
            "platform": condition("eq", y="SENTINEL-2B", case_sensitive=False),
        },
    )
    np.testing.assert_array_equal(both["t"].values, demo["t"].values[[1]])
    # item 2 has no platform: left out, not an error
    a = run_load(url=str(cog_collection), properties={"platform": condition("eq", y="sentinel-2a")})
    np.testing.assert_array_equal(a["t"].values, demo["t"].values[[0]])
    with pytest.raises(NoDataAvailable):
        run_load(url=str(cog_collection), properties={"eo:cloud_cover": condition("gt", y=90)})
    # outside the executor a process graph is data, not a condition: said so, not ignored
    with pytest.raises(ProcessParameterInvalid, match="run by the executor"):
        load_stac(str(cog_collection), properties={"platform": condition("eq", y="sentinel-2a")})


def test_multiband_asset_with_eo_bands_and_common_names(multiband_item, demo):
    cube = run_load(url=str(multiband_item))
    assert list(cube["bands"].values) == list(demo["bands"].values)
    np.testing.assert_array_equal(cube.values, demo.isel(t=[1]).values)
    assert_same_grid(cube, demo)
    picked = run_load(url=str(multiband_item), bands=["nir", "red"])  # common names
    assert list(picked["bands"].values) == ["B08", "B04"]
    np.testing.assert_array_equal(picked.values, demo.isel(t=[1]).sel(bands=["B08", "B04"]).values)


def test_stac_1_1_bands_field(tmp_path, multiband_item, demo):
    item = json.loads(multiband_item.read_text())
    asset = item["assets"]["image"]
    asset["bands"] = [
        {"name": b["name"], "data_type": "uint16", "nodata": 0}
        | ({"eo:common_name": b["common_name"]} if "common_name" in b else {})
        for b in asset.pop("eo:bands")
    ]
    del asset["raster:bands"]
    asset["href"] = str(multiband_item.parent / "all.tif")
    item["stac_version"] = "1.1.0"
    path = tmp_path / "item11.json"
    path.write_text(json.dumps(item))
    cube = load_stac(str(path))
    assert list(cube["bands"].values) == list(demo["bands"].values)
    np.testing.assert_array_equal(cube.values, demo.isel(t=[1]).values)
    assert list(load_stac(str(path), bands=["red"])["bands"].values) == ["B04"]


def test_items_on_another_crs_are_reprojected_to_the_common_grid(tmp_path, demo):
    b04 = demo.sel(bands="B04")
    utm = b04.isel(t=2).rio.write_nodata(0).rio.reproject("EPSG:32635")
    items = [
        cog_item(tmp_path / f"i{i}", f"i{i}", {"B04": b04.isel(t=i)}, b04["t"].values[i])
        for i in (0, 1)
    ]
    items.append(cog_item(tmp_path / "utm", "utm", {"B04": utm}, b04["t"].values[2]))
    cube = load_stac(str(save_collection(tmp_path, items)))
    # the grid of the most common CRS, in the demo's pixel phase, grown to cover every item
    assert cube.rio.crs.to_epsg() == 3035 and cube.rio.resolution() == (20.0, -20.0)
    assert cube.sizes["x"] > demo.sizes["x"] and cube.sizes["y"] > demo.sizes["y"]
    on_demo = cube.sel(x=demo["x"].values, y=demo["y"].values, method="nearest", tolerance=1e-6)
    assert_same_grid(on_demo, demo)
    values = on_demo.values
    np.testing.assert_array_equal(values[:2, 0], b04.isel(t=[0, 1]).values)
    # nearest-neighbour there and back: most pixels come back unchanged
    assert (values[2, 0] == b04.isel(t=2).values).mean() > 0.8
    outside = cube.isel(t=0, bands=0).drop_sel(x=demo["x"].values, errors="ignore")
    assert (outside.values == 0).all()  # nodata where the 3035 items have no pixels


def test_static_catalog_over_http(multiband_item, demo):
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(multiband_item.parent),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # a separate process: GDAL reads the COG over HTTP while holding the GIL
    try:
        port = int(re.search(r"port (\d+)", server.stdout.readline()).group(1))
        cube = load_stac(f"http://127.0.0.1:{port}/item.json", bands=["B11"])
        np.testing.assert_array_equal(cube.values, demo.isel(t=[1]).sel(bands=["B11"]).values)
    finally:
        server.terminate()
        server.wait(timeout=10)


class StacApi(http.server.BaseHTTPRequestHandler):
    """A STAC API landing page, one collection and POST /search returning every item."""

    items: ClassVar[list[dict]] = []
    searches: ClassVar[list[dict]] = []

    def log_message(self, *args):
        pass

    def _send(self, document):
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        links = [{"rel": "root", "href": f"{base}/"}, {"rel": "self", "href": base + self.path}]
        if self.path == "/":
            self._send(
                {
                    "type": "Catalog",
                    "id": "api",
                    "description": "test API",
                    "stac_version": "1.0.0",
                    "conformsTo": [
                        "https://api.stacspec.org/v1.0.0/core",
                        "https://api.stacspec.org/v1.0.0/item-search",
                    ],
                    "links": [
                        *links,
                        {"rel": "search", "href": f"{base}/search", "method": "POST"},
                    ],
                }
            )
        elif self.path == "/collections/demo":
            extent = {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {"interval": [[None, None]]},
            }
            self._send(
                {
                    "type": "Collection",
                    "id": "demo",
                    "description": "demo",
                    "stac_version": "1.0.0",
                    "license": "other",
                    "extent": extent,
                    "links": links,
                }
            )
        else:
            self.send_error(404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StacApi.searches.append(body)
        self._send({"type": "FeatureCollection", "features": StacApi.items, "links": []})


def test_stac_api_collection_is_searched(cog_collection, demo):
    collection = pystac.read_file(str(cog_collection))
    items = []
    for item in collection.get_items():
        item.make_asset_hrefs_absolute()
        items.append(item.to_dict(include_self_link=False) | {"links": []})
    StacApi.items, StacApi.searches = items, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StacApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/collections/demo"
    try:
        period = ["2015-08-05", "2015-09-01"]
        west, south, east, north = footprint(demo)[0]
        extent = {"west": west, "south": south, "east": east, "north": north}
        cube = load_stac(url, spatial_extent=extent, temporal_extent=period, bands=["B03"])
        with pytest.raises(ProcessParameterInvalid, match="STAC API collection"):
            load_stac(url)  # the whole collection: refused
    finally:
        server.shutdown()
    (search,) = StacApi.searches
    assert search["collections"] == ["demo"]
    assert search["datetime"] == "2015-08-05T00:00:00Z/2015-09-01T00:00:00Z"
    np.testing.assert_allclose(search["bbox"], [west, south, east, north])
    # the server ignores the query; items are filtered again here
    np.testing.assert_array_equal(cube.values, demo.isel(t=[1, 2]).sel(bands=["B03"]).values)


# --- zarr and netCDF ---------------------------------------------------------------------


def test_zarr_result_of_save_result_loads_back(tmp_path, demo):
    graph = {
        "process_graph": {
            "load": {
                "process_id": "load_collection",
                "arguments": {
                    "id": "DEMO_S2",
                    "spatial_extent": None,
                    "temporal_extent": ["2015-08-01", "2016-03-19"],
                },
            },
            "save": {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": "load"}, "format": "ZARR"},
                "result": True,
            },
        }
    }
    item = run_process_graph(graph, output=tmp_path)
    path = tmp_path / "result.json"
    path.write_text(json.dumps(item))
    cube = run_load(url=str(path), bands=["B04", "B08"], temporal_extent=["2015-08-05", None])
    expected = demo.isel(t=[1, 2, 3]).sel(bands=["B04", "B08"])
    assert cube.dims == ("t", "bands", "y", "x")
    np.testing.assert_array_equal(cube["t"].values, expected["t"].values)
    assert_same_grid(cube, demo)
    np.testing.assert_array_equal(cube.values, expected.values)


def test_netcdf_items_in_an_item_collection(tmp_path, demo):
    features = []
    for i in (0, 3):
        t = demo["t"].values[i]
        demo.sel(t=t).to_dataset("bands").to_netcdf(tmp_path / f"d{i}.nc")  # a variable per band
        item = stac_item(f"d{i}", demo, t)
        item.add_asset(
            "data", pystac.Asset(f"./d{i}.nc", media_type="application/netcdf", roles=["data"])
        )
        features.append(item.to_dict(include_self_link=False))
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    cube = run_load(url=str(path))
    assert list(cube["bands"].values) == list(demo["bands"].values)
    np.testing.assert_array_equal(cube["t"].values, demo["t"].values[[0, 3]])
    assert_same_grid(cube, demo)
    np.testing.assert_array_equal(cube.values, demo.isel(t=[0, 3]).values)


def test_netcdf_asset_per_band_labelled_by_asset_key(tmp_path, demo):
    t = demo["t"].values[2]
    item = stac_item("per-band", demo, t)
    for band in ("B04", "B08"):
        demo.sel(t=t, bands=band, drop=True).rename("dn").to_netcdf(tmp_path / f"{band}.nc")
        item.add_asset(
            band, pystac.Asset(str(tmp_path / f"{band}.nc"), media_type="application/x-netcdf")
        )
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item.to_dict(include_self_link=False)))
    cube = load_stac(str(path), bands=["B08"])
    assert list(cube["bands"].values) == ["B08"]
    np.testing.assert_array_equal(cube.values, demo.isel(t=[2]).sel(bands=["B08"]).values)


# --- errors ------------------------------------------------------------------------------


def test_url_errors_are_clear(tmp_path, cog_collection):
    (tmp_path / "notes.json").write_text("not json {")
    (tmp_path / "other.json").write_text(json.dumps({"hello": "world"}))
    cases = {
        str(tmp_path / "missing.json"): "does not exist",
        str(tmp_path / "notes.json"): "is not STAC JSON",
        str(tmp_path / "other.json"): "is not a STAC Item, Collection",
        "s3://bucket/catalog.json": "use an http",
        str(tmp_path): "holds no collection.json",
    }
    for url, message in cases.items():
        with pytest.raises(ProcessParameterInvalid, match=message) as info:
            run_load(url=url)
        assert info.value.fields["parameter"] == "url"


def test_missing_asset_file_is_named(tmp_path, cog_collection):
    folder = cog_collection.parent / "demo-0"
    item = json.loads((folder / "demo-0.json").read_text())
    for asset in item["assets"].values():
        asset["href"] = str(folder / asset["href"])
    item["assets"]["B04"]["href"] = "./gone.tif"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(item))
    with pytest.raises(ProcessParameterInvalid, match=r"asset .B04. of item .demo-0.*gone\.tif"):
        load_stac(str(path))


def test_mixed_asset_kinds_are_refused(tmp_path, multiband_item, demo):
    item = json.loads(multiband_item.read_text())
    item["assets"]["image"]["href"] = str(multiband_item.parent / "all.tif")
    demo.isel(t=1).to_dataset("bands").to_netcdf(tmp_path / "extra.nc")
    item["assets"]["extra"] = {"href": str(tmp_path / "extra.nc"), "type": "application/netcdf"}
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(item))
    with pytest.raises(FeatureUnsupported, match="mix zarr/netCDF and GeoTIFF"):
        load_stac(str(path))


def test_unreachable_server_gives_an_openeo_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OpenEOError, match=r"cannot read STAC from .http://127\.0\.0\.1"):
        run_load(url=f"http://127.0.0.1:{port}/collection.json")


def test_local_connection_load_stac_offline(cog_collection, demo):
    from openeo_deepfeatures.local.connection import LocalConnection

    con = LocalConnection(policy=tmp_policy())
    cube = con.load_stac(str(cog_collection), bands=["B04", "B08"])
    assert cube.metadata.band_names == ["B04", "B08"]
    got = cube.ndvi(red="B04", nir="B08").execute()
    nir, red = (demo.sel(bands=b).values.astype("float64") for b in ("B08", "B04"))
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(got.values, (nir - red) / (nir + red), rtol=1e-6)
