# /// script
# dependencies = ["numpy>=1.26", "xarray>=2024.1"]
# ///
"""Spectral indices kernel (openEO UDF file of openeo-deepfeatures).

Self-contained: numpy and xarray only. It runs a compiled index *program* (plain JSON data made
by ``openeo_deepfeatures.indices``: which bands in, which indices out, register code) over an
array, block by block, so every intermediate stays in the CPU cache and sub-expressions
shared by many indices are computed once. The package imports this very file for its native
path; on an openEO backend the program travels in the UDF ``context``::

    program = openeo_deepfeatures.indices.compile_indices(["NDVI", "EVI"], bands).to_dict()
    udf = openeo.UDF.from_file("spectral_indices.py", context={"program": program})
    si_cube = reflectance_cube.apply_dimension(udf, dimension="bands")

Context keys: ``program`` (required); ``precision`` (``"float64"``, default, or ``"float32"``)
and ``threads`` (default 1), see :func:`run_program`.

The cube holds reflectance (about 0..1: Sentinel-2 L2A digital numbers scaled by 1e-4 after the
processing-baseline offset) with a ``bands`` (or ``band``) dimension labelled with the
program's inputs; other dimensions are kept. The result has ``bands`` = the program's outputs.

Semantics: float32 arithmetic; NaN in -> NaN out; results that are not finite (division by
zero, overflow) are NaN; no floating-point warnings.
"""

# No `from __future__ import annotations`: openeo.udf.run_udf_code recognises apply_datacube by
# its annotations, and does not recognise the string "xarray.DataArray".

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray

__all__ = ["apply_datacube", "apply_metadata", "check_reflectance", "run_program"]

#: Pixels per block: registers x block x 4 bytes should fit in L2.
DEFAULT_BLOCK = 8192

_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
}
_UNARY = {
    "neg": np.negative,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.absolute,
    "ln": np.log,
    "log10": np.log10,
    "square": np.square,
}


def _decode(program: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Instructions as (op, dst, srcs) with operands as (kind, index-or-value)."""
    code = []
    for op, dst, *srcs in program["instructions"]:
        if op not in _BINARY and op not in _UNARY and op != "copy":
            raise ValueError(f"unknown instruction {op!r} in spectral index program")
        operands = tuple((s[0], float(s[1]) if s[0] == "c" else int(s[1])) for s in srcs)
        code.append((op, (dst[0], int(dst[1])), operands))
    return code


class _Machine:
    """Per-thread staging buffers with the program bound to them: no lookups per block.

    Each block is copied into ``x`` (cast to the working precision), the bound program runs
    over fixed buffers, and ``y`` (float32) is copied out in one call.
    """

    def __init__(self, code, n_in: int, n_out: int, n_regs: int, block: int, dtype) -> None:
        self.x = np.zeros((n_in, block), dtype)
        self.y = np.zeros((n_out, block), np.float32)
        self.scratch = np.zeros((n_out, block), np.float32)
        regs = [np.zeros(block, dtype) for _ in range(n_regs)]
        where = {"x": self.x, "r": regs, "o": self.y}

        def get(operand):
            kind, i = operand
            return i if kind == "c" else where[kind][i]

        self.calls = []
        for op, dst, srcs in code:
            target = get(dst)
            if op == "copy":
                self.calls.append((np.copyto, (target, get(srcs[0])), {"casting": "same_kind"}))
            else:
                ufunc = _BINARY.get(op) or _UNARY[op]
                args = (*(get(s) for s in srcs), target)
                self.calls.append((ufunc, args, {"casting": "same_kind"}))

    def run(self) -> None:
        for func, args, kwargs in self.calls:
            func(*args, **kwargs)
        # inf -> NaN. Infinities are rare (division by exactly zero), so test first; then
        # y - y is 0 for finite y and NaN for +-inf or NaN.
        if np.isinf(self.y).any():
            np.subtract(self.y, self.y, out=self.scratch)
            np.add(self.y, self.scratch, out=self.y)


def run_program(
    program: dict[str, Any],
    x: np.ndarray,
    out: np.ndarray | None = None,
    *,
    block: int = DEFAULT_BLOCK,
    threads: int | None = 1,
    precision: str = "float64",
) -> np.ndarray:
    """Evaluate ``program`` on ``x`` of shape ``(n_outer, n_inputs, n_pixels)``.

    ``x[:, k]`` holds the band ``program["inputs"][k]`` (reflectance; float32 preferred,
    other float types are converted block by block). Returns ``out`` of shape
    ``(n_outer, n_outputs, n_pixels)``, float32, filled with ``program["outputs"]`` in order.
    ``threads``: worker threads (numpy releases the GIL); ``None`` for one per CPU.
    ``precision``: dtype of intermediate results. ``"float64"`` (default) keeps indices with
    cancellation (EVI, VARI, kEVI, …) accurate to float32 output precision; ``"float32"``
    is faster and loses up to ~1e-3 relative accuracy in such indices near their poles.
    """
    dtype = np.dtype(precision)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    code = _decode(program)
    n_in, n_out = len(program["inputs"]), len(program["outputs"])
    if x.ndim != 3 or x.shape[1] != n_in:
        raise ValueError(f"expected x of shape (n, {n_in}, pixels), got {x.shape}")
    n_outer, _, n_pix = x.shape
    if out is None:
        out = np.empty((n_outer, n_out, n_pix), dtype=np.float32)
    elif out.shape != (n_outer, n_out, n_pix) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(n_outer, n_out, n_pix)}")
    if n_out == 0 or n_pix == 0 or n_outer == 0:
        return out
    block = max(1, min(int(block), n_pix))
    tasks = [(i, p0) for i in range(n_outer) for p0 in range(0, n_pix, block)]
    n_regs = max(1, int(program["n_registers"]))
    if threads is None:
        threads = os.cpu_count() or 1
    threads = max(1, min(int(threads), len(tasks)))

    def work(chunk: list[tuple[int, int]]) -> None:
        machine = _Machine(code, n_in, n_out, n_regs, block, dtype)
        with np.errstate(all="ignore"):
            for i, p0 in chunk:
                n = min(block, n_pix - p0)
                machine.x[:, :n] = x[i, :, p0 : p0 + n]
                if n < block:
                    machine.x[:, n:] = 1.0  # keep the unused tail finite and cheap
                machine.run()
                out[i, :, p0 : p0 + n] = machine.y[:, :n]

    if threads == 1:
        work(tasks)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, [tasks[k::threads] for k in range(threads)]))
    return out


# --------------------------------------------------------------------------- the UDF

#: Sentinel-2 reflective band labels (inputs such as PAR are not reflectance).
_REFLECTIVE = re.compile(r"^B(0[1-9]|1[0-2]|8A)$")
#: A float cube whose typical value exceeds this is not reflectance but digital numbers.
_DN_MEDIAN_THRESHOLD = 2.0


class UdfError(Exception):
    """An error with a message that starts with its openEO-style code."""

    code = "Internal"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.code}: {message}")


class ProcessParameterMissing(UdfError, ValueError):
    code = "ProcessParameterMissing"


class ProcessParameterInvalid(UdfError, ValueError):
    code = "ProcessParameterInvalid"


class BandMissing(UdfError, ValueError):
    code = "BandMissing"


class DimensionNotAvailable(UdfError, ValueError):
    code = "DimensionNotAvailable"


def check_reflectance(x: np.ndarray) -> None:
    """Raise when a (sampled) float array looks like digital numbers rather than reflectance."""
    flat = x.reshape(-1)
    sample = flat[:: max(1, flat.size // 20000)]
    sample = sample[np.isfinite(sample) & (sample != 0)]
    if sample.size and float(np.median(sample)) > _DN_MEDIAN_THRESHOLD:
        raise ProcessParameterInvalid(
            f"the values look like Sentinel-2 digital numbers (median "
            f"{float(np.median(sample)):g}), not reflectance (about 0..1); scale them first "
            "(reflectance = (DN + offset) / 10000)."
        )


def _program(context: Any) -> dict[str, Any]:
    program = context.get("program") if isinstance(context, dict) else None
    if isinstance(program, str):
        program = json.loads(program)
    if not program:
        raise ProcessParameterMissing(
            "the UDF context has no 'program': give the compiled index program, "
            "{'program': openeo_deepfeatures.indices.compile_indices(indices, bands).to_dict()}."
        )
    if not isinstance(program, dict) or not {"inputs", "outputs", "instructions"} <= set(program):
        raise ProcessParameterInvalid(
            "context 'program' must be a compiled index program with 'inputs', 'outputs', "
            "'n_registers' and 'instructions'."
        )
    return program


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    """Spectral indices of a reflectance cube: ``bands`` become the program's outputs."""
    program = _program(context)
    cube = cube.rename({a: c for a, c in {"band": "bands", "time": "t"}.items() if a in cube.dims})
    if "bands" not in cube.dims:
        raise DimensionNotAvailable(
            f"the cube has dimensions {list(cube.dims)}; spectral indices need 'bands'."
        )
    have = {str(b) for b in cube["bands"].values}
    missing = [b for b in program["inputs"] if b not in have]
    if missing:
        raise BandMissing(
            f"the indices {', '.join(program['outputs'][:10])}"
            f"{' ...' if len(program['outputs']) > 10 else ''} need the bands {missing}; the "
            f"cube has {sorted(have)}."
        )
    if not np.issubdtype(cube.dtype, np.floating):
        raise ProcessParameterInvalid(
            f"integer data ({cube.dtype}) looks like digital numbers, not reflectance; scale it "
            "first (reflectance = (DN + offset) / 10000)."
        )
    selected = cube.sel(bands=list(program["inputs"]))
    axis = selected.get_axis_num("bands")
    values = np.asarray(selected.values)
    reflective = [i for i, b in enumerate(program["inputs"]) if _REFLECTIVE.match(b)]
    check_reflectance(np.take(values, reflective, axis=axis))
    pre, post = values.shape[:axis], values.shape[axis + 1 :]
    x = np.ascontiguousarray(values).reshape(
        int(np.prod(pre, dtype=np.int64)), values.shape[axis], int(np.prod(post, dtype=np.int64))
    )
    out = run_program(
        program,
        x,
        threads=context.get("threads", 1),
        precision=context.get("precision", "float64"),
    )
    coords = {k: v for k, v in cube.coords.items() if "bands" not in v.dims}
    coords["bands"] = list(program["outputs"])
    data = out.reshape((*pre, len(program["outputs"]), *post))
    return xarray.DataArray(data, dims=cube.dims, coords=coords, name="spectral_indices")


def apply_metadata(metadata, context: dict):
    """The input's metadata with the band labels renamed to the program's outputs."""
    dimension = "bands"
    if getattr(metadata, "has_band_dimension", lambda: False)():
        dimension = metadata.band_dimension.name
    return metadata.rename_labels(dimension=dimension, target=list(_program(context)["outputs"]))
