"""The spectral-indices UDF: equal to ``compute_indices`` on the exec path of openEO backends,
the program as JSON in the context, bands by label, metadata, errors, independence."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import openeo
import pytest
import xarray as xr
from openeo.metadata import Band, BandDimension, CollectionMetadata, TemporalDimension
from openeo.udf import UdfData, XarrayDataCube, execute_local_udf, run_udf_code
from openeo_deepfeatures.udf import spectral_indices as si_udf

import openeo_deepfeatures as odf
from openeo_deepfeatures.indices import compile_indices

UDF_FILE = Path(__file__).resolve().parents[2] / "udf" / "spectral_indices.py"
CODE = UDF_FILE.read_text("utf-8")


@pytest.fixture(scope="module")
def reflectance() -> xr.DataArray:
    return odf.preprocess_s2(odf.load_demo_cube()).load()


def program_for(cube: xr.DataArray, indices=None, constants=None) -> dict:
    """The compiled program as it travels in a process graph: through JSON."""
    labels = [str(b) for b in cube["bands"].values]
    return json.loads(json.dumps(compile_indices(indices, labels, constants).to_dict()))


def run_udf(cube: xr.DataArray, context) -> xr.DataArray:
    data = UdfData(datacube_list=[XarrayDataCube(cube)], user_context=context)
    return run_udf_code(code=CODE, data=data).get_datacube_list()[0].get_array()


def assert_same(got: xr.DataArray, want: xr.DataArray) -> None:
    assert got.dtype == np.float32
    assert list(got["bands"].values) == list(want["bands"].values)
    np.testing.assert_array_equal(got.transpose(*want.dims).values, want.values)


def test_run_udf_code_equals_compute_indices(reflectance):
    program = program_for(reflectance)
    assert len(program["outputs"]) > 100
    got = run_udf(reflectance, {"program": program})
    want = odf.compute_indices(reflectance)
    assert got.dims == ("t", "bands", "y", "x")
    for dim in ("t", "y", "x"):
        np.testing.assert_array_equal(got[dim].values, reflectance[dim].values)
    assert_same(got, want)


def test_execute_local_udf(reflectance, tmp_path):
    cube = reflectance.isel(t=slice(0, 30))
    path = tmp_path / "reflectance.nc"
    XarrayDataCube(cube).save_to_file(path, fmt="netcdf")
    context = {"program": program_for(cube, ["NDVI", "EVI", "kNDVI", "NDWI"])}
    result = execute_local_udf(openeo.UDF(CODE, context=context), path, fmt="netcdf")
    got = result.get_datacube_list()[0].get_array()  # float64 input on this path
    assert_same(got, odf.compute_indices(cube, ["NDVI", "EVI", "kNDVI", "NDWI"]))


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_engine_in_context(reflectance, engine):
    cube = reflectance.isel(t=slice(0, 3))
    program = program_for(cube)
    got = run_udf(cube, {"program": program, "engine": engine, "threads": 2})
    assert_same(got, odf.compute_indices(cube, engine=engine))


def test_constants_precision_and_program_as_json_text(reflectance):
    cube = reflectance.isel(t=slice(0, 20))
    constants = {"SAVI": {"L": 0.25}}
    program = program_for(cube, ["SAVI", "EVI", "VARI"], constants)
    got = si_udf.apply_datacube(cube, {"program": json.dumps(program), "precision": "float32"})
    want = odf.compute_indices(
        cube, ["SAVI", "EVI", "VARI"], constants=constants, precision="float32"
    )
    assert_same(got, want)
    default_l = si_udf.apply_datacube(cube, {"program": program_for(cube, ["SAVI"])})
    assert not np.allclose(default_l.values, got.sel(bands=["SAVI"]).values, equal_nan=True)


def test_bands_by_label_other_dimensions_kept(reflectance):
    cube = reflectance.isel(t=slice(0, 10))
    want = odf.compute_indices(cube, ["NDVI", "NDMI"])
    shuffled = cube.isel(bands=[5, 2, 0, 4, 1, 3]).rename(bands="band", t="time")
    shuffled = shuffled.transpose("y", "x", "band", "time")
    got = si_udf.apply_datacube(shuffled, {"program": program_for(cube, ["NDVI", "NDMI"])})
    assert got.dims == ("y", "x", "bands", "t")
    assert_same(got, want)
    one_pixel = cube.isel(y=3, x=4)  # (t, bands): no spatial dimensions
    got = si_udf.apply_datacube(one_pixel, {"program": program_for(cube, ["NDVI", "NDMI"])})
    assert_same(got, want.isel(y=3, x=4))


def test_apply_metadata_renames_bands(reflectance):
    program = program_for(reflectance, ["NDVI", "EVI"])
    metadata = CollectionMetadata(
        {},
        dimensions=[
            TemporalDimension(name="t", extent=[None, None]),
            BandDimension(name="bands", bands=[Band(str(b)) for b in reflectance["bands"].values]),
        ],
    )
    namespace: dict = {}
    exec(compile(CODE, str(UDF_FILE), "exec"), namespace)
    for apply_metadata in (si_udf.apply_metadata, namespace["apply_metadata"]):
        assert apply_metadata(metadata, {"program": program}).band_names == ["NDVI", "EVI"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("context", [None, {}, {"program": {}}], ids=str)
def test_no_program(reflectance, context):
    with pytest.raises(ValueError, match=r"^ProcessParameterMissing: .*'program'.*compile_indices"):
        run_udf(reflectance.isel(t=[0]), context)


def test_not_a_program(reflectance):
    with pytest.raises(ValueError, match=r"^ProcessParameterInvalid: .*'instructions'"):
        si_udf.apply_datacube(reflectance, {"program": {"inputs": ["B04"]}})


def test_missing_bands(reflectance):
    program = program_for(reflectance, ["NDVI", "NDWI"])
    with pytest.raises(ValueError, match=r"^BandMissing: ") as info:
        si_udf.apply_datacube(reflectance.drop_sel(bands=["B08"]), {"program": program})
    assert "['B08']" in str(info.value) and "NDVI" in str(info.value)


def test_no_bands_dimension(reflectance):
    program = program_for(reflectance, ["NDVI"])
    with pytest.raises(ValueError, match=r"^DimensionNotAvailable: .*'bands'"):
        si_udf.apply_datacube(reflectance.sel(bands="B08"), {"program": program})


def test_digital_numbers_refused(reflectance):
    program = program_for(reflectance, ["NDVI"])
    dn = odf.load_demo_cube().drop_sel(bands=["SCL"])
    with pytest.raises(ValueError, match=r"^ProcessParameterInvalid: integer data"):
        si_udf.apply_datacube(dn, {"program": program})
    with pytest.raises(ValueError, match=r"^ProcessParameterInvalid: .*digital numbers \(median"):
        si_udf.apply_datacube(dn.astype("float32"), {"program": program})


# --------------------------------------------------------------------------- independence


def test_imports_nothing_of_the_package():
    # numba is optional: imported only by the numba engine, which "auto" picks when it is there
    allowed = {"numpy", "xarray", "numba"} | set(sys.stdlib_module_names)
    tree = ast.parse(CODE)
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert None not in modules  # no relative imports
    assert {m.split(".")[0] for m in modules} <= allowed


@pytest.mark.parametrize("with_numba", [True, False], ids=["with-numba", "numpy-only"])
def test_runs_without_the_package(reflectance, tmp_path, with_numba):
    cube = reflectance.isel(t=slice(0, 5))
    cube.drop_vars("spatial_ref").to_netcdf(tmp_path / "in.nc")
    program = program_for(cube, ["NDVI", "kNDVI", "EVI"])
    block_numba = "" if with_numba else 'sys.modules["numba"] = None'
    script = textwrap.dedent(
        f"""
        import importlib.util, json, sys
        {block_numba}
        sys.modules["openeo_deepfeatures"] = None
        try:
            import openeo_deepfeatures
        except ImportError:
            pass
        else:
            raise SystemExit("the package is importable")
        import xarray
        spec = importlib.util.spec_from_file_location("spectral_indices", {str(UDF_FILE)!r})
        udf = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(udf)
        cube = xarray.open_dataarray({str(tmp_path / "in.nc")!r})
        program = json.loads({json.dumps(program)!r})
        assert udf.resolve_engine("auto") == {"'numba'" if with_numba else "'numpy'"}
        udf.apply_datacube(cube, {{"program": program}}).to_netcdf({str(tmp_path / "out.nc")!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=300)
    got = xr.open_dataarray(tmp_path / "out.nc").load()
    engine = "numba" if with_numba else "numpy"
    assert_same(got, odf.compute_indices(cube, ["NDVI", "kNDVI", "EVI"], engine=engine))


def test_numba_cache_is_not_written_beside_the_package(tmp_path):
    """The compiled kernel is cached under the user's cache folder (here $XDG_CACHE_HOME),
    never in the installed package: a cache left in site-packages outlives `pip uninstall`."""
    import openeo_deepfeatures.udf.spectral_indices as module  # numba: a main dependency

    package_dir = Path(module.__file__).parent
    before = {p for p in package_dir.rglob("*") if p.suffix in (".nbi", ".nbc")}
    script = textwrap.dedent(
        """
        import numpy as np
        from openeo_deepfeatures.indices import compile_indices
        from openeo_deepfeatures.udf import spectral_indices as udf

        program = compile_indices(["NDVI"], ["B04", "B08"]).to_dict()
        x = np.full((1, 2, 4), 0.5, np.float32)
        print(udf.numba_cache_dir())
        print(float(udf.run_program(program, x, engine="numba")[0, 0, 0]))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    where, value = done.stdout.split()
    cache = tmp_path / "openeo-deepfeatures" / "numba"
    assert Path(where) == cache and float(value) == 0.0
    assert list(cache.rglob("*.nbi")) and list(cache.rglob("*.nbc"))
    after = {p for p in package_dir.rglob("*") if p.suffix in (".nbi", ".nbc")}
    assert after == before
