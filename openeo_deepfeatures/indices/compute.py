"""``compute_indices``: reflectance cube -> spectral-index cube, eager (numpy) or lazy (dask)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ProcessParameterInvalid
from ..sentinel2 import BAND_BY_LABEL, canonical_cube
from ..udf.spectral_indices import ENGINES, numba_available, run_program
from .catalogue import ASI_VERSION
from .resolve import PROCESS, compile_indices

__all__ = ["compute_indices", "evaluate_program"]

#: A float cube whose typical value exceeds this is not reflectance but digital numbers.
_DN_MEDIAN_THRESHOLD = 2.0
#: Input attributes that do not describe index values.
_DROPPED_ATTRS = ("scale_factor", "add_offset", "units", "nodata", "_FillValue", "long_name")


def _check_reflectance_sample(values: np.ndarray) -> None:
    """Raise when a (sampled) float array looks like DN rather than reflectance."""
    flat = values.reshape(-1)
    step = max(1, flat.size // 20000)
    sample = flat[::step]
    sample = sample[np.isfinite(sample) & (sample != 0)]
    if sample.size and float(np.median(sample)) > _DN_MEDIAN_THRESHOLD:
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="data",
            reason=(
                f"values look like Sentinel-2 digital numbers (median {float(np.median(sample)):g}), "
                "not reflectance (about 0..1). Convert first with "
                "`openeo_deepfeatures.preprocess_s2(cube)` (DN -> reflectance, clouds masked; "
                "CLI: --preprocess)."
            ),
        )


#: Largest output chunk (bytes) a dask task produces: 245 indices from 6 bands make a chunk
#: 40x larger than its input, so input chunks are split to keep memory bounded. 128 MiB:
#: streaming zarr -> zarr of (50, 244, 256, 256) took 6.5-6.8 s against 8.1-8.4 s with 64 MiB
#: (interleaved, lz4) for a peak of 0.71 GB against 0.62 GB; 256 MiB gained little more and
#: peaked at 1.00 GB.
MAX_OUTPUT_CHUNK_BYTES = 128 * 2**20


def _bounded_chunks(data: Any, band_axis: int, n_out: int) -> Any:
    """All bands in one chunk; other axes split so no output chunk exceeds the limit."""
    chunks = [max(c) for c in data.chunks]
    chunks[band_axis] = data.shape[band_axis]
    while True:
        pixels = int(np.prod([c for i, c in enumerate(chunks) if i != band_axis], dtype=np.int64))
        if pixels * n_out * 4 <= MAX_OUTPUT_CHUNK_BYTES:
            break
        axis = max((i for i in range(len(chunks)) if i != band_axis), key=lambda i: chunks[i])
        if chunks[axis] == 1:
            break
        chunks[axis] = (chunks[axis] + 1) // 2
    wanted = {i: c for i, c in enumerate(chunks) if c != max(data.chunks[i])}
    return data.rechunk(wanted) if wanted else data


def evaluate_program(
    program: dict[str, Any],
    data: Any,
    band_axis: int,
    *,
    threads: int | None,
    precision: str = "float64",
    engine: str = "auto",
) -> Any:
    """Run a compiled program over an n-d numpy or dask array along ``band_axis``."""
    n_out = len(program["outputs"])
    # the DN check looks at reflectance bands only (not at external inputs such as PAR)
    reflective = [i for i, label in enumerate(program["inputs"]) if label in BAND_BY_LABEL]

    def kernel(block: np.ndarray, threads: int | None = 1) -> np.ndarray:
        if not np.issubdtype(block.dtype, np.floating):
            block = block.astype(np.float32)
        _check_reflectance_sample(np.take(block, reflective, axis=band_axis))
        pre, post = block.shape[:band_axis], block.shape[band_axis + 1 :]
        x = np.ascontiguousarray(block).reshape(
            int(np.prod(pre, dtype=np.int64)),
            block.shape[band_axis],
            int(np.prod(post, dtype=np.int64)),
        )
        out = run_program(program, x, threads=threads, precision=precision, engine=engine)
        return out.reshape((*pre, n_out, *post))

    if hasattr(data, "map_blocks") and hasattr(data, "chunks"):
        data = _bounded_chunks(data, band_axis, n_out)
        chunks = tuple(c if i != band_axis else (n_out,) for i, c in enumerate(data.chunks))
        return data.map_blocks(
            kernel, dtype=np.float32, chunks=chunks, meta=np.array((), np.float32)
        )
    return kernel(np.asarray(data), threads=threads)


def compute_indices(
    cube: xr.DataArray | xr.Dataset,
    indices: Sequence[str] | str | None = None,
    *,
    constants: Mapping[str, Any] | None = None,
    formulas: Mapping[str, str] | None = None,
    threads: int | None = None,
    precision: str = "float64",
    engine: str = "auto",
) -> xr.DataArray:
    """Compute spectral indices from a Sentinel-2 reflectance cube.

    Parameters
    ----------
    cube
        Reflectance (about 0..1; see :func:`~openeo_deepfeatures.preprocess_s2` for DN) with a
        ``bands`` (or ``band``) dimension labelled like CDSE ``SENTINEL2_L2A`` (``B02``, ``B8A``…).
        Any other dimensions (``t``/``time``, ``y``, ``x``, …) are kept. numpy or dask.
    indices
        Awesome Spectral Indices short names (``"NDVI"``, ``"kNDVI"``, …). ``None``: every
        index computable from the bands present (see :func:`list_indices`).
    constants
        Override constants for all indices (``{"L": 0.5}``) or per index
        (``{"SAVI": {"L": 0.25}}``). Defaults are per index (SAVI L=0.5, EVI L=1); wavelengths
        (``lambdaN``…) come from the Sentinel-2A band table; ``PAR`` (for NIRvP) may be given
        here or as a band labelled ``PAR``.
    formulas
        Extra user-defined indices ``{"NAME": "formula"}`` (band labels, ASI symbols,
        constants; parsed with a whitelist, never evaluated).
    threads
        Worker threads for numpy input (default: one per CPU). Dask input uses dask's scheduler.
    precision
        Working precision of intermediate results: ``"float64"`` (default) gives every index
        to float32 output accuracy, also where terms nearly cancel (EVI, VARI, kEVI near their
        poles); ``"float32"`` is faster and loses up to ~1e-3 relative accuracy there.
    engine
        ``"numba"``: the program interpreter compiled by numba (a dependency; compiled
        once, then cached on disk); ``"numpy"``: one
        numpy ufunc per instruction (what the UDF runs where numba is absent); ``"auto"``
        (default): numba when importable. Both give every index to float32 output precision.

    Returns
    -------
    xarray.DataArray
        float32, same dimensions as the input with ``bands`` labelled by index names; lazy
        when the input is dask-backed. NaN where inputs are NaN or a result is undefined
        (division by zero, negative base of a fractional power).
    """
    cube = canonical_cube(cube, PROCESS)
    if np.issubdtype(cube.dtype, np.integer) or cube.dtype == bool:
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="data",
            reason=(
                f"integer data ({cube.dtype}) looks like Sentinel-2 digital numbers, not reflectance. "
                "Convert first with `openeo_deepfeatures.preprocess_s2(cube)` (CLI: --preprocess)."
            ),
        )
    if not np.issubdtype(cube.dtype, np.floating):
        raise ProcessParameterInvalid(
            process=PROCESS, parameter="data", reason=f"unsupported dtype {cube.dtype}."
        )
    labels = [str(b) for b in cube["bands"].values]
    if formulas is not None and not isinstance(formulas, Mapping):
        raise ProcessParameterInvalid(
            process=PROCESS, parameter="formulas", reason='expected {"NAME": "formula", ...}.'
        )
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="threads",
            reason=f"expected an integer >= 1, got {threads!r}.",
        )
    if precision not in ("float32", "float64"):
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="precision",
            reason=f"expected 'float32' or 'float64', got {precision!r}.",
        )
    if engine not in ENGINES:
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="engine",
            reason=f"expected one of {', '.join(map(repr, ENGINES))}, got {engine!r}.",
        )
    if engine == "numba" and not numba_available():
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="engine",
            reason=(
                "engine 'numba' needs numba: pip install numba, or use engine='numpy' (or 'auto')."
            ),
        )
    program = compile_indices(indices, labels, constants, formulas)
    selected = cube.sel(bands=list(program.inputs))
    axis = selected.get_axis_num("bands")
    data = evaluate_program(
        program.to_dict(), selected.data, axis, threads=threads, precision=precision, engine=engine
    )
    coords = {name: coord for name, coord in cube.coords.items() if "bands" not in coord.dims}
    coords["bands"] = list(program.outputs)
    out = xr.DataArray(data, dims=cube.dims, coords=coords, name="spectral_indices")
    out.attrs = {
        **{k: v for k, v in cube.attrs.items() if k not in _DROPPED_ATTRS},
        "long_name": "spectral indices",
        "source": f"Awesome Spectral Indices {ASI_VERSION}, computed by openeo-deepfeatures",
    }
    return out
