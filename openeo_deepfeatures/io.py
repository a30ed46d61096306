"""Reading cubes from netCDF / zarr / GeoTIFF and writing zarr atomically."""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import itertools
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .errors import FileContentInvalid, FileNotFound, ProcessParameterInvalid
from .memory import heap_for_large_arrays, release_memory, release_memory_requested

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "INDICES_CODEC",
    "atomic_path",
    "clean_attrs",
    "keep_coordinates",
    "open_cube",
    "reading_failure",
    "write_zarr",
    "zarr_compressors",
]

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
        raise FileContentInvalid(file=str(path), reason=reading_failure(exc, path)) from None
    return opened


def reading_failure(exc: BaseException, path: Path) -> str:
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
    """Yield a temporary sibling of ``target``; move it into place only on success.

    The sibling is named ``.NAME.tmp-PID-HOST-XXXXXXXX`` (this process's id, a hash of the host
    name): a later write to the same target removes the siblings whose process is gone (a
    killed run), never those of a live writer. SIGINT and SIGTERM remove the live ones at once
    before the signal takes its course.
    """
    target = Path(target)
    if target.parent.is_dir():
        _remove_stale_siblings(target)
    if target.exists() and not overwrite:
        raise ProcessParameterInvalid(
            process="save_result",
            parameter="path",
            reason=f"{str(target)!r} exists; choose another path or allow overwriting.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{_owner_tag()}-{uuid.uuid4().hex[:8]}")
    with _removed_on_signal(tmp):
        try:
            yield tmp
            if target.exists():
                trash = Path(
                    tempfile.mkdtemp(
                        prefix=f".{target.name}.trash-{_owner_tag()}-", dir=target.parent
                    )
                )
                with _removed_on_signal(trash):
                    os.replace(target, trash / target.name)
                    _remove(trash)
            os.replace(tmp, target)
        finally:
            _remove(tmp)


# --- temporary siblings: owners, stale ones, signals ----------------------------------------

_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?:tmp|trash)-(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-\w+$")
_live: dict[Path, None] = {}  # temporary paths this process is writing
_signal_lock = threading.Lock()
_previous_handlers: dict[int, Any] = {}
_handler_users = 0


@functools.cache
def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:6]


def _owner_tag() -> str:
    return f"{os.getpid()}-{_host_tag()}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return True  # cannot tell (e.g. another platform): keep the sibling
    try:  # a zombie (killed, not yet reaped) is gone for good
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _remove_stale_siblings(target: Path) -> list[Path]:
    """Remove the temporary siblings of ``target`` left by processes of this host that are gone."""
    removed = []
    prefix = f".{target.name}."
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        match = _SIBLING.match(name)
        if match is None or match["name"] != target.name or match["host"] != _host_tag():
            continue
        if _process_alive(int(match["pid"])):
            continue
        path = target.parent / name
        _remove(path)
        removed.append(path)
    return removed


def _remove_live(signum: int, frame: Any) -> None:
    """The SIGINT/SIGTERM handler: remove the temporary paths, then what the signal did before."""
    for path in list(_live):
        for _ in range(3):  # worker threads may still be adding chunks while it goes
            _remove(path)
            if not os.path.lexists(path):
                break
        _interrupted[path] = None
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # SIGINT: KeyboardInterrupt; the writers' finally blocks run
        return
    signal.signal(signum, signal.SIG_DFL)  # the default action: end the process, as before
    os.kill(os.getpid(), signum)


_interrupted: dict[Path, None] = {}  # removed on a signal: removed again at exit


@atexit.register
def _remove_interrupted() -> None:
    """At exit, after the worker threads have finished: what they wrote after the signal."""
    for path in list(_interrupted):
        _remove(path)


@contextlib.contextmanager
def _removed_on_signal(path: Path) -> Iterator[None]:
    """Register ``path`` for removal on SIGINT/SIGTERM while the block runs."""
    global _handler_users
    _live[path] = None
    main = threading.current_thread() is threading.main_thread()
    if main:
        with _signal_lock:
            if _handler_users == 0:
                _install_handlers()
            _handler_users += 1
    try:
        yield
    finally:
        _live.pop(path, None)
        if main:
            with _signal_lock:
                _handler_users -= 1
                if _handler_users == 0:
                    _restore_handlers()


def _install_handlers() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            current = signal.getsignal(signum)
            if current == signal.SIG_IGN:
                continue  # ignored signals stay ignored
            _previous_handlers[signum] = signal.SIG_DFL if current is None else current
            signal.signal(signum, _remove_live)
        except (ValueError, OSError):  # not the main interpreter, or an unsupported signal
            _previous_handlers.pop(signum, None)


def _restore_handlers() -> None:
    for signum, previous in list(_previous_handlers.items()):
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signum) is _remove_live:
                signal.signal(signum, previous)
        del _previous_handlers[signum]


#: ``codec`` choices of :func:`write_zarr`; level ranges and defaults per codec.
CODECS = {"zstd": (1, 22, 3), "lz4": (1, 9, 5), "none": None}
#: Default codec of :func:`write_zarr` (zarr's own default: zstd level 3).
DEFAULT_CODEC = "zstd"
#: Default codec of ``deepfeatures indices compute``: the fastest to stream that still
#: compresses; measured per codec by ``benchmarks/bench_indices.py`` (streaming rows).
INDICES_CODEC = "lz4"


def zarr_compressors(codec: str = DEFAULT_CODEC, level: int | None = None) -> tuple | None:
    """zarr v3 compressors for a ``codec`` name (``"zstd"``, ``"lz4"``, ``"none"``) and level.

    ``zstd``: :class:`zarr.codecs.ZstdCodec` (level 1-22, default 3); ``lz4``:
    :class:`zarr.codecs.BloscCodec` with lz4 and byte shuffle (level 1-9, default 5);
    ``none``: uncompressed (``None``).
    """
    from zarr.codecs import BloscCodec, ZstdCodec

    if codec not in CODECS:
        raise ProcessParameterInvalid(
            process="save_result",
            parameter="codec",
            reason=f"expected one of {', '.join(CODECS)}, got {codec!r}.",
        )
    limits = CODECS[codec]
    if limits is None:
        if level is not None:
            raise ProcessParameterInvalid(
                process="save_result", parameter="level", reason="codec 'none' takes no level."
            )
        return None
    low, high, default = limits
    if level is None:
        level = default
    if isinstance(level, bool) or not isinstance(level, int) or not low <= level <= high:
        raise ProcessParameterInvalid(
            process="save_result",
            parameter="level",
            reason=f"codec {codec!r} takes an integer level {low}..{high}, got {level!r}.",
        )
    if codec == "zstd":
        return (ZstdCodec(level=level),)
    return (BloscCodec(cname="lz4", clevel=level, shuffle="shuffle"),)


def write_zarr(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    chunks: dict | None = None,
    progress: bool = False,
    codec: str = DEFAULT_CODEC,
    level: int | None = None,
) -> Path:
    """Write a cube to a zarr (v3) store atomically, CRS kept as a CF grid mapping.

    ``chunks``: output chunk sizes by dimension (default: the dask chunks, ``bands`` at most 32).
    ``codec``, ``level``: compression of the data variable, see :func:`zarr_compressors`.

    Without a dask.distributed client, a cube of many chunks is computed and written a few
    chunks at a time (:data:`REGION_CHUNKS`, see :func:`_regions`; one graph, culled per
    region), and memory freed by each is handed back to the OS (glibc ``malloc_trim``). With ``DEEPFEATURES_RELEASE_MEMORY=1`` large arrays are also
    served by ``mmap`` from then on, in the whole process (:mod:`openeo_deepfeatures.memory`),
    so freed tiles go back to the OS at once; otherwise the allocator's settings are left alone.
    """
    import rioxarray  # noqa: F401

    compressors = zarr_compressors(codec, level)  # bad choices fail before anything is written
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
    ds[name].encoding["compressors"] = compressors
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
                if release_memory_requested():
                    heap_for_large_arrays()
                _write_regions(ds[name], tmp, regions)
    return Path(path)


def _write_regions(da: xr.DataArray, store: Path, regions: list[dict[str, slice]]) -> None:
    """Compute and write ``da`` into the array ``da.name`` that ``to_zarr(compute=False)``
    created in ``store``, one region after another.

    The data are encoded as xarray's zarr backend encodes them; one task per dask block writes
    the block into the open zarr array (blocks cover whole zarr chunks, see
    :func:`_store_chunks`). The graph is built and optimised once; each region then runs only
    the tasks its blocks need (culled from that graph), so a region costs its own tasks, not a
    new ``to_zarr`` call or a new graph (each about 0.1 s for a graph of a few hundred tasks).
    """
    import dask
    import zarr
    from dask.base import get_scheduler
    from dask.optimization import cull
    from xarray.backends.zarr import encode_zarr_variable

    encoded = encode_zarr_variable(da.variable, name=da.name).data
    target = zarr.open_array(store=str(store), path=str(da.name), mode="r+", zarr_format=3)
    # every chunk is written: zarr would otherwise compare each chunk with the fill value
    # (a NaN scan of all data) to skip chunks that hold nothing else
    target = target.with_config({"write_empty_chunks": True})
    if target.shape != encoded.shape:
        raise RuntimeError(f"zarr array {da.name!r} has shape {target.shape}, not {encoded.shape}")

    def put(block: np.ndarray, block_info=None) -> np.ndarray:
        location = block_info[0]["array-location"]
        target[tuple(slice(a, b) for a, b in location)] = block
        return np.zeros((1,) * block.ndim, bool)

    marks = encoded.map_blocks(put, dtype=bool, chunks=tuple((1,) * len(c) for c in encoded.chunks))
    (marks,) = dask.optimize(marks)
    get = get_scheduler(collections=[marks])  # the configured local scheduler (threads by default)
    graph = dict(marks.__dask_graph__())
    keys = np.empty(marks.numblocks, dtype=object)
    for index in np.ndindex(*marks.numblocks):
        keys[index] = (marks.name, *index)
    edges = [np.cumsum((0, *c)) for c in encoded.chunks]
    for region in regions:
        blocks = []
        for dim, edge in zip(da.dims, edges, strict=True):
            part = region.get(dim, slice(None))
            lo, hi = part.indices(int(edge[-1]))[:2]
            blocks.append(
                slice(
                    int(np.searchsorted(edge, lo, "right")) - 1,
                    int(np.searchsorted(edge, hi, "left")),
                )
            )
        wanted = list(keys[tuple(blocks)].ravel())
        get(cull(graph, wanted)[0], wanted)
        release_memory()


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


#: Chunks (t, y, x blocks) computed and written together by :func:`write_zarr` (local
#: schedulers): enough to keep every core busy, few enough to bound memory.
REGION_CHUNKS = 4


def _distributed_client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _regions(da: xr.DataArray) -> list[dict[str, slice]] | None:
    """Boxes of up to ``REGION_CHUNKS`` chunks, in (t, y, x) order (None: not dask, or small).

    A box takes whole chunks along ``x`` first (up to ``REGION_CHUNKS``), then, where a whole
    row fits, several rows along ``y``, then, where a whole date chunk fits, several chunks
    along ``t``: a cube of one spatial chunk per date chunk is written ``REGION_CHUNKS`` date
    chunks at a time (in parallel), a large one a row segment at a time.

    Computing one box after another bounds memory by the box, whatever the cube's size:
    dask's ordering of overlapping graphs (halos) may otherwise compute every input chunk
    before the first output chunk. A distributed cluster schedules the whole graph.
    """
    if da.chunks is None or not {"y", "x"} <= set(da.dims):
        return None
    dims = [d for d in ("t", "y", "x") if d in da.dims]
    edges = {
        dim: [int(v) for v in np.cumsum((0, *da.chunks[da.get_axis_num(dim)]))] for dim in dims
    }
    n = {dim: len(edges[dim]) - 1 for dim in dims}
    if int(np.prod(list(n.values()))) <= REGION_CHUNKS:
        return None
    step, budget = {}, REGION_CHUNKS
    for dim in reversed(dims):  # x, y, t
        step[dim] = max(1, min(n[dim], budget))
        budget = budget // n[dim] if step[dim] == n[dim] else 1
    starts = [range(0, n[dim], step[dim]) for dim in dims]
    return [
        {
            dim: slice(edges[dim][i], edges[dim][min(i + step[dim], n[dim])])
            for dim, i in zip(dims, box, strict=True)
        }
        for box in itertools.product(*starts)
    ]


@contextlib.contextmanager
def _progress(enabled: bool, desc: str) -> Iterator[None]:
    if not enabled:
        yield
        return
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc, unit="task"):
        yield
