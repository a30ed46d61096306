"""Build the embedded demo cube from ../shared/data/nrt_romania (run once; output is checked in).

B02 and B08 come from the 10 m file as 2x2 block means (the 10 m grid nests in the 20 m grid);
B03, B04, B8A, B11 and SCL from the 20 m file. Stored as uint16 DN (0 = nodata) in netCDF-4
with zlib, CRS EPSG:3035 as a CF grid mapping; tree-cover density 2018 as a label variable.

    python scripts/make_demo_cube.py ../shared/data/nrt_romania openeo_deepfeatures/data/demo_s2_romania.nc
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr


def main(src: Path, dst: Path) -> None:
    d20 = xr.open_dataset(src / "sentinel2_cube_subset_romania_20m.nc")
    d10 = xr.open_dataset(src / "sentinel2_cube_subset_romania_10m.nc")
    coarse = d10[["B2", "B8"]].coarsen(x=2, y=2).mean()
    np.testing.assert_allclose(coarse.x.values, d20.x.values)
    np.testing.assert_allclose(coarse.y.values, d20.y.values)
    bands = {
        "B02": coarse["B2"].values,
        "B03": d20["B3"].values,
        "B04": d20["B4"].values,
        "B08": coarse["B8"].values,
        "B8A": d20["B8A"].values,
        "B11": d20["B11"].values,
        "SCL": d20["SCL"].values,
    }
    data = np.stack(
        [
            np.nan_to_num(np.rint(v), nan=0.0).clip(0, 65535).astype(np.uint16)
            for v in bands.values()
        ],
        axis=1,
    )
    cube = xr.DataArray(
        data,
        dims=("t", "bands", "y", "x"),
        coords={"t": d20.time.values, "bands": list(bands), "y": d20.y.values, "x": d20.x.values},
        name="s2_l2a",
        attrs={
            "long_name": "Sentinel-2 L2A digital numbers",
            "nodata": 0,
            "processing_baseline_note": "all dates before 2022-01-25: BOA_ADD_OFFSET = 0",
        },
    )
    cube = cube.rio.write_crs("EPSG:3035")
    tcd = xr.open_dataarray(src / "tree_cover_density_2018_romania.tif", engine="rasterio").squeeze(
        "band", drop=True
    )
    np.testing.assert_allclose(tcd.x.values, d20.x.values)
    np.testing.assert_allclose(tcd.y.values, d20.y.values)
    ds = cube.to_dataset()
    ds["tree_cover_density"] = (("y", "x"), tcd.values.astype(np.uint8))
    ds["tree_cover_density"].attrs = {
        "long_name": "Copernicus HRL tree cover density 2018",
        "units": "percent",
    }
    ds = ds.rio.write_crs("EPSG:3035")
    for name in ("s2_l2a", "tree_cover_density"):
        ds[name].attrs["grid_mapping"] = "spatial_ref"
    ds.attrs = {
        "title": "openeo-deepfeatures demo cube: Sentinel-2 L2A, 1 km2 forest in Romania, 2015-2020",
        "source": "nrt==0.2.1 (PyPI) nrt/data, contains modified Copernicus Sentinel data",
        "license": "EUPL-1.2 (see LICENSE-EUPL-1.2.txt beside this file)",
        "history": "B02/B08 2x2 block means of the 10 m bands; others from the 20 m file",
    }
    enc = {"zlib": True, "complevel": 9, "shuffle": True}
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(
        dst,
        engine="netcdf4",
        encoding={
            "s2_l2a": {**enc, "chunksizes": (20, 7, 50, 50)},
            "tree_cover_density": {**enc, "dtype": "uint8", "_FillValue": 255},
        },
    )
    print(dst, dst.stat().st_size, "bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
