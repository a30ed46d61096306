"""Reading cubes from netCDF / zarr / GeoTIFF and writing zarr atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import FileContentInvalid, FileNotFound, ProcessParameterInvalid
from .memory import heap_for_large_arrays, release_memory

__all__ = ["atomic_path", "clean_attrs", "keep_coordinates", "open_cube", "write_zarr"]

_GEOTIFF = (".tif", ".tiff", ".gtiff")
_NETCDF = (".nc", ".nc4", ".netcdf", ".cdf", ".h5")


def open_cube(
    path: str | os.PathLike,
    *,
    variable: str | None = None,
    band_names: Sequence[str] | None = None,
    chunks: dict | str | None = "auto",
) -> xr.DataArray:
    """Open a cube with a ``bands`` dimension, lazily (dask) by default.

    - netCDF/zarr: one variable with a ``bands``/``band`` dimension (pick it with ``variable``),
      or one variable per band (``B02``, ``B04``, …) on a shared grid, stacked into ``bands``.
    - GeoTIFF: bands labelled by ``band_names`` or the band descriptions in the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFound(
            f"File '{path}' does not exist: check the path (relative paths start in {Path.cwd()}).",
            file=str(path),
        )
    try:
        opened = _open(path, variable=variable, band_names=band_names, chunks=chunks)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, IndexError) as exc:
        # netCDF4/h5py/rasterio/zarr raise these for truncated, corrupt or foreign files
        raise FileContentInvalid(file=str(path), reason=_reading_failure(exc, path)) from None
    return opened


def _reading_failure(exc: BaseException, path: Path) -> str:
    """One line on why ``path`` could not be read: the library's own words, shortened."""
    words = " ".join(str(exc).split()) or type(exc).__name__
    if len(words) > 200:
        words = words[:197] + "..."
    return (
        f"{type(exc).__name__}: {words}. Is it a complete netCDF, zarr or GeoTIFF file? "
        f"Download or write {path.name} again."
    )


def _probe(ds: xr.Dataset) -> None:
    """Read one value of every variable now: a corrupt file fails here, with its name."""
    for var in ds.data_vars.values():
        if var.size:
            var.isel({d: 0 for d in var.dims}).values  # noqa: B018 (reads one chunk)


def _is_consolidated(path: Path) -> bool:
    """Whether a zarr store has consolidated metadata (v2 ``.zmetadata`` or v3 in zarr.json)."""
    if (path / ".zmetadata").is_file():
        return True
    root = path / "zarr.json"
    if not root.is_file():
        return False
    import json

    return json.loads(root.read_text("utf-8")).get("consolidated_metadata") is not None


def _open(
    path: Path,
    *,
    variable: str | None,
    band_names: Sequence[str] | None,
    chunks: dict | str | None,
) -> xr.DataArray | xr.Dataset:
    import rioxarray

    process = "open_cube"
    suffix = path.suffix.lower()
    if suffix in _GEOTIFF:
        da = rioxarray.open_rasterio(path, chunks=chunks, mask_and_scale=True)
        names = band_names or da.attrs.get("long_name")
        if isinstance(names, str):
            names = [names]
        if names is None or len(names) != da.sizes["band"]:
            raise ProcessParameterInvalid(
                process=process,
                parameter="band_names",
                reason=(
                    f"{path.name} has {da.sizes['band']} bands without descriptions; "
                    "name them, e.g. --band-names B02 B03 B04 B08."
                ),
            )
        da = da.assign_coords(band=list(names)).rename(band="bands")
        return da
    if suffix == ".zarr" or (path / "zarr.json").exists() or (path / ".zgroup").exists():
        ds = xr.open_zarr(path, chunks={}, decode_coords="all", consolidated=_is_consolidated(path))
    elif suffix in _NETCDF or path.is_file():
        ds = xr.open_dataset(path, chunks={}, decode_coords="all")
    else:
        raise ProcessParameterInvalid(
            process=process,
            parameter="path",
            reason=f"cannot tell the format of {path.name}; use .nc, .zarr or .tif.",
        )
    _probe(ds)
    if isinstance(chunks, dict):  # rechunk after opening: stored chunks are read whole
        ds = ds.chunk({d: c for d, c in chunks.items() if d in ds.dims})
    elif chunks is None:
        ds = ds.load()
    if variable is not None:
        if variable not in ds.data_vars:
            raise ProcessParameterInvalid(
                process=process,
                parameter="variable",
                reason=f"{variable!r} not in {sorted(ds.data_vars)}.",
            )
        return ds[variable]
    with_bands = [v for v in ds.data_vars if {"bands", "band"} & set(ds[v].dims)]
    if len(with_bands) == 1:
        return ds[with_bands[0]]
    if len(with_bands) > 1:
        raise ProcessParameterInvalid(
            process=process,
            parameter="variable",
            reason=f"several variables have a bands dimension {with_bands}; pick one.",
        )
    if band_names:
        ds = ds[list(band_names)]
    return ds  # a Dataset of per-band variables; canonical_cube stacks it


def keep_coordinates(ds: xr.Dataset) -> xr.Dataset:
    """List every non-dimension coordinate, the grid mapping included, in the CF
    ``coordinates`` encoding of each data variable (in place; returns ``ds``).

    xarray leaves grid mappings out of that attribute (CF calls them not coordinates), so
    plain ``xr.open_zarr``/``xr.open_dataset`` would read ``spatial_ref`` back as a data
    variable and ``.rio.crs`` would be None.
    """
    for var in ds.data_vars.values():
        others = [str(c) for c in var.coords if c not in var.dims]
        var.encoding.pop("coordinates", None)
        if others:
            var.encoding["coordinates"] = " ".join(others)
    return ds


def clean_attrs(attrs: dict) -> dict:
    """Attributes netCDF and zarr can store: strings, numbers, and lists/arrays of them.

    Others (dicts such as openeo-processes-dask's ``reduced_dimensions_min_values``,
    datetimes) are dropped: they describe processing state, not the data.
    """
    out = {}
    for key, value in attrs.items():
        if isinstance(value, (str, int, float, np.number)) and not isinstance(value, bool):
            out[key] = value
        elif isinstance(value, (list, tuple, np.ndarray)) and all(
            isinstance(v, (str, int, float, np.number)) and not isinstance(v, bool)
            for v in np.ravel(value)
        ):
            out[key] = list(np.ravel(value).tolist())
    return out


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; move it into place only on success."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise ProcessParameterInvalid(
            process="save_result",
            parameter="path",
            reason=f"{str(target)!r} exists; choose another path or allow overwriting.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if target.exists():
            trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=target.parent))
            os.replace(target, trash / target.name)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_zarr(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    chunks: dict | None = None,
    progress: bool = False,
) -> Path:
    """Write a cube to a zarr (v3) store atomically, CRS kept as a CF grid mapping.

    ``chunks``: output chunk sizes by dimension (default: the dask chunks, ``bands`` at most 32).

    Without a dask.distributed client, a cube of many chunks is computed and written a few
    chunks at a time (:data:`REGION_CHUNKS`), and memory freed by each is handed back to the
    OS (:mod:`openeo_deepfeatures.memory`; this sets glibc's mmap threshold for the process).
    """
    import rioxarray  # noqa: F401

    name = da.name or "data"
    da = da.rename(name)
    da.attrs = clean_attrs(da.attrs)
    if "bands" in da.coords:
        # variable-length strings have a zarr v3 spec; fixed-width unicode has none
        da = da.assign_coords(bands=np.asarray(da["bands"].values, dtype=object))
    crs = da.rio.crs
    if crs is not None:
        da = da.rio.write_crs(crs)
    if chunks is None:
        chunks = {"bands": 32} if "bands" in da.dims else {}
    if chunks:
        da = da.chunk({d: c for d, c in chunks.items() if d in da.dims})
    store_chunks = _store_chunks(da)
    if store_chunks is None and da.chunks is not None:
        da = da.chunk({d: max(c) for d, c in zip(da.dims, da.chunks, strict=True)})
    ds = da.to_dataset()
    lazy = [n for n, c in ds.coords.items() if n not in ds.dims and c.chunks is not None]
    if lazy:  # coordinates (e.g. one value per date): computed now, region writes skip them
        import dask

        values = dask.compute(*(ds[n].variable for n in lazy))
        ds = ds.assign_coords(dict(zip(lazy, values, strict=True)))
    for var in ds.variables.values():
        var.encoding.pop("chunks", None)
        var.encoding.pop("preferred_chunks", None)
    if store_chunks is not None:
        ds[name].encoding["chunks"] = store_chunks
    keep_coordinates(ds)
    with atomic_path(path, overwrite=overwrite) as tmp, _consolidated_v3():
        delayed = ds.to_zarr(
            tmp,
            mode="w",
            zarr_format=3,
            consolidated=True,  # written with the metadata; region writes do not change it
            compute=False,
            safe_chunks=store_chunks is None,
        )
        regions = _regions(ds[name]) if _distributed_client() is None else None
        with _progress(progress, f"writing {Path(path).name}"):
            if regions is None:
                delayed.compute()
            else:
                heap_for_large_arrays()
                for region in regions:
                    part = ds[[name]].isel(region)
                    part = part.drop_vars([c for c in part.coords if c not in region])
                    part.to_zarr(
                        tmp,
                        region=region,
                        zarr_format=3,
                        consolidated=False,
                        safe_chunks=store_chunks is None,
                    )
                    release_memory()
    return Path(path)


@contextlib.contextmanager
def _consolidated_v3() -> Iterator[None]:
    """zarr-python warns that consolidated metadata is not in the v3 spec yet; xarray, zarr
    and most readers use it (it saves a request per array), so we write it knowingly."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        yield


def _store_chunks(da: xr.DataArray) -> tuple[int, ...] | None:
    """zarr chunks for dask chunks whose last chunk is larger than the others.

    Tiled inference joins a remainder smaller than the halo to the last tile, e.g. (32, 32,
    36); zarr needs regular chunks. With zarr chunks of the first size, every dask chunk
    still covers whole zarr chunks of its own, so writes never share a zarr chunk and the
    dask chunks can stay as computed. None when the chunks are regular (or not dask).
    """
    if da.chunks is None:
        return None
    irregular = False
    sizes = []
    for chunks in da.chunks:
        size = chunks[0]
        edges = np.cumsum(chunks)[:-1]
        if np.any(edges % size):
            return None  # cannot be expressed: let the caller rechunk
        irregular |= len(chunks) > 1 and chunks[-1] > size
        sizes.append(int(size))
    return tuple(sizes) if irregular else None


#: Spatial chunks computed and written together by :func:`write_zarr` (local schedulers).
REGION_CHUNKS = 4


def _distributed_client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _regions(da: xr.DataArray) -> list[dict[str, slice]] | None:
    """Row segments of up to ``REGION_CHUNKS`` spatial chunks, per chunk of ``t`` (None: not
    dask, or small).

    Computing one segment after another bounds memory by the segment, whatever the cube's
    size: dask's ordering of overlapping graphs (halos) may otherwise compute every input
    chunk before the first output chunk. A distributed cluster schedules the whole graph.
    """
    if da.chunks is None or not {"y", "x"} <= set(da.dims):
        return None
    dims = [d for d in ("t", "y", "x") if d in da.dims]
    edges = {}
    for dim in dims:
        cum = np.cumsum((0, *da.chunks[da.get_axis_num(dim)]))
        edges[dim] = [int(v) for v in cum]
    n = {dim: len(edges[dim]) - 1 for dim in dims}
    nt = n.get("t", 1)
    if nt * n["y"] * n["x"] <= REGION_CHUNKS:
        return None
    out = []
    for k in range(nt):
        for j in range(n["y"]):
            for i in range(0, n["x"], REGION_CHUNKS):
                stop = min(i + REGION_CHUNKS, n["x"])
                region = {
                    "y": slice(edges["y"][j], edges["y"][j + 1]),
                    "x": slice(edges["x"][i], edges["x"][stop]),
                }
                if "t" in edges:
                    region = {"t": slice(edges["t"][k], edges["t"][k + 1]), **region}
                out.append(region)
    return out


@contextlib.contextmanager
def _progress(enabled: bool, desc: str) -> Iterator[None]:
    if not enabled:
        yield
        return
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc, unit="task"):
        yield
