"""``run_udf`` for local runs, and UDF callbacks that see labelled cubes.

Upstream hands the callback of ``apply_dimension``/``reduce_dimension`` an unlabelled numpy
array with the dimension on some axis, so a UDF that does ``cube.sel(bands=...)`` or
``cube.mean("t")`` silently computes the wrong thing. Here, as on the geopyspark backends
(CDSE, openEO Platform), a callback that contains ``run_udf`` gets a labelled
``xarray.DataArray`` (``t``, ``bands``, ``y``, ``x`` with real coordinates) per spatial chunk,
with the whole processed dimension in it; the UDF runs through the openEO client's own
``openeo.udf.run_udf_code``, exactly as those backends run it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import xarray as xr

from ..errors import (
    DimensionNotAvailable,
    FeatureUnsupported,
    InvalidRuntime,
    InvalidVersion,
    OpenEOError,
    ProcessParameterInvalid,
)
from ..policy import ExecutionPolicy, current_policy
from .windows import WindowSpec, apply_windows

__all__ = ["apply_dimension", "has_run_udf", "reduce_dimension", "run_udf", "udf_runtimes"]

ENTRY_POINTS = ("apply_datacube", "apply_hypercube", "apply_timeseries", "apply_udf_data")
_LIBRARIES = ("numpy", "xarray", "pandas", "scipy", "onnxruntime", "openeo", "dask")


@cache
def udf_runtimes() -> dict[str, Any]:
    """What ``GET /udf_runtimes`` would list for local runs: this Python and its libraries."""
    libraries = {}
    for name in _LIBRARIES:
        try:
            libraries[name] = {"version": importlib.metadata.version(name)}
        except importlib.metadata.PackageNotFoundError:
            continue
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    version = {"libraries": libraries}
    return {
        "Python": {
            "title": f"Python {minor}",
            "description": "Python UDFs run by the local executor with openeo.udf.run_udf_code.",
            "type": "language",
            "default": "3",
            "versions": {"3": version, minor: version},
        }
    }


def _check_runtime(runtime: str, version: str | None) -> None:
    runtimes = {k.lower(): v for k, v in udf_runtimes().items()}
    found = runtimes.get(str(runtime).lower())
    if found is None:
        raise InvalidRuntime(
            reason=f"{runtime!r}; available: {sorted(udf_runtimes())}.", runtime=runtime
        )
    if version is not None and str(version) not in found["versions"]:
        raise InvalidVersion(
            reason=f"{runtime} {version!r}; available: {sorted(found['versions'])}.",
            version=version,
        )


@cache
def _fetch(url: str, policy: ExecutionPolicy) -> str:
    """UDF code at ``url``, once per URL and policy (the policy checks every redirect)."""
    try:
        return policy.read_url(url, timeout=30, what="run_udf").decode("utf-8")
    except OSError as exc:
        raise ProcessParameterInvalid(
            process="run_udf", parameter="udf", reason=f"cannot fetch {url!r}: {exc}"
        ) from None


def udf_code(udf: str) -> str:
    """The UDF source: ``udf`` itself when it is code, else read from a path or an http(s) URL."""
    if not isinstance(udf, str) or not udf.strip():
        raise ProcessParameterInvalid(
            process="run_udf", parameter="udf", reason="expected UDF code, a path or a URL."
        )
    if "\n" in udf or "\r" in udf:
        code = udf
    elif "://" in udf and not udf.lower().startswith("file:"):
        policy = current_policy()
        policy.check_url(udf, what="run_udf")
        code = _fetch(udf, policy)
    else:
        path = current_policy().check_read(udf, what="run_udf")
        if not path.is_file():
            raise OpenEOError(
                f"The UDF file {udf!r} does not exist (UDF code must contain a line break).",
            )
        code = path.read_text("utf-8")
    _check_source(code)
    return code


@cache
def _check_source(code: str) -> None:
    try:
        tree = ast.parse(code, "<udf>")
    except SyntaxError as exc:
        raise ProcessParameterInvalid(
            process="run_udf",
            parameter="udf",
            reason=f"the UDF has a syntax error at line {exc.lineno}: {exc.msg}.",
        ) from None
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    if not defined & set(ENTRY_POINTS):
        raise ProcessParameterInvalid(
            process="run_udf",
            parameter="udf",
            reason=f"the UDF defines no entry function; define one of {list(ENTRY_POINTS)}, "
            "e.g. `def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray`.",
        )


def run_udf(
    data: Any, udf: str, runtime: str, version: str | None = None, context: Any = None
) -> Any:
    """Run a Python UDF on a labelled cube, as openEO backends do (``openeo.udf.run_udf_code``)."""
    from openeo.udf import UdfData, XarrayDataCube
    from openeo.udf.run_code import run_udf_code

    _check_runtime(runtime, version)
    code = udf_code(udf)
    if not isinstance(data, xr.DataArray):
        raise FeatureUnsupported(
            reason="run_udf runs on data cubes here (top level, or as the callback of "
            f"apply_dimension, reduce_dimension or apply_neighborhood), not on {type(data).__name__}."
        )
    udf_data = UdfData(datacube_list=[XarrayDataCube(data)], user_context=context or {})
    try:
        result = run_udf_code(code=code, data=udf_data)
    except OpenEOError:
        raise
    except Exception as exc:
        raise OpenEOError(f"the UDF failed: {type(exc).__name__}: {exc}") from exc
    cubes = result.get_datacube_list() if result is not None else None
    if not cubes:
        raise OpenEOError("the UDF returned no data cube.")
    out = cubes[0].get_array()
    if hasattr(data, "rio") and data.rio.crs is not None and {"x", "y"} <= set(out.dims):
        out = out.rio.write_crs(data.rio.crs)
    return out


def has_run_udf(process: Any) -> bool:
    """Whether a callback (our :class:`~.evaluate.Callback`) calls ``run_udf``."""
    graph = getattr(process, "graph", None)
    return graph is not None and any(
        node.get("process_id") == "run_udf" for node in graph.nodes.values()
    )


def _spatial_windows(data: xr.DataArray) -> dict[str, WindowSpec]:
    """Windows along y/x following the cube's chunks (one window when it is not chunked)."""
    specs = {}
    for d in ("y", "x"):
        if d not in data.dims:
            continue
        if data.chunks is None:
            specs[d] = WindowSpec.whole(data.sizes[d])
            continue
        sizes = data.chunksizes[d]
        stops = [sum(sizes[: i + 1]) for i in range(len(sizes))]
        specs[d] = WindowSpec(tuple(zip([0, *stops[:-1]], stops, strict=True)))
    return specs


def _check_dimension(data: xr.DataArray, dimension: str, process: str) -> None:
    if dimension not in data.dims:
        raise DimensionNotAvailable(
            reason=f"'{dimension}' in {process}; the cube has {list(data.dims)}.",
        )


def _udf_callback(process: Any, context: Any):
    def call(window: xr.DataArray) -> Any:
        return process(named_parameters={"data": window, "context": context})

    return call


def apply_dimension(
    data: xr.DataArray,
    process: Any,
    dimension: str,
    target_dimension: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """``apply_dimension``; UDF callbacks get labelled chunks with the whole dimension."""
    if not has_run_udf(process):
        from openeo_processes_dask.process_implementations import apply_dimension as upstream

        _check_dimension(data, dimension, "apply_dimension")
        labels = data[dimension].values
        if data.dtype == np.float32:
            # openEO numbers are doubles: band math (spectral indices: differences that
            # cancel, such as VARI's G + R - B) in float32 loses up to 1e-3 and puts poles
            # elsewhere than the float64 native engine does
            data = data.astype(np.float64)

        def labelled(*args: Any, **kwargs: Any) -> Any:
            # Upstream passes the axis but not its labels (reduce_dimension does): without
            # them ``array_element(label=...)`` fails inside apply_dimension callbacks.
            kwargs.setdefault("dim_labels", labels)
            return process(*args, **kwargs)

        return upstream(
            data=data,
            process=labelled,
            dimension=dimension,
            target_dimension=target_dimension,
            context=context,
        )
    _check_dimension(data, dimension, "apply_dimension")
    out = apply_windows(
        data,
        _udf_callback(process, context),
        _spatial_windows(data) if dimension not in ("x", "y") else {},
        process="apply_dimension",
        mutable=(dimension,),
    )
    if target_dimension is not None and target_dimension != dimension:
        out = out.rename({dimension: target_dimension})
    return out


def reduce_dimension(
    data: xr.DataArray,
    reducer: Any,
    dimension: str,
    context: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """``reduce_dimension``; UDF reducers get labelled chunks with the whole dimension."""
    if not has_run_udf(reducer):
        from openeo_processes_dask.process_implementations import reduce_dimension as upstream

        return upstream(data=data, reducer=reducer, dimension=dimension, context=context)
    _check_dimension(data, dimension, "reduce_dimension")
    return apply_windows(
        data,
        _udf_callback(reducer, context),
        _spatial_windows(data) if dimension not in ("x", "y") else {},
        process="reduce_dimension",
        drop=(dimension,),
        mutable=("bands",),  # a UDF reducer may name its results, as on geopyspark backends
    )
