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

Context keys: ``program`` (required); ``precision`` (``"float64"``, default, or ``"float32"``),
``threads`` (default 1) and ``engine`` (``"auto"``, default, ``"numpy"`` or ``"numba"``), see
:func:`run_program`.

Two engines run the same program. ``numpy`` (always there) calls one ufunc per instruction over
blocks of pixels. ``numba`` (used where numba is importable; optional, never required) is one
interpreter of the program, compiled once by numba and cached on disk: it runs the instructions
over small blocks whose registers stay in the CPU cache, fuses the casts and the inf -> NaN
pass, releases the GIL, and maps ``x ** 0.5`` to a square root. The program stays data (no
code is generated from it); both engines compute every index to float32 output precision.

The cube holds reflectance (about 0..1: Sentinel-2 L2A digital numbers scaled by 1e-4 after the
processing-baseline offset) with a ``bands`` (or ``band``) dimension labelled with the
program's inputs; other dimensions are kept. The result has ``bands`` = the program's outputs.

Semantics: float32 arithmetic; NaN in -> NaN out; results that are not finite (division by
zero, overflow) are NaN; no floating-point warnings.
"""

# No `from __future__ import annotations`: openeo.udf.run_udf_code recognises apply_datacube by
# its annotations, and does not recognise the string "xarray.DataArray".

import functools
import hashlib
import json
import os
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import xarray

__all__ = [
    "ENGINES",
    "apply_datacube",
    "apply_metadata",
    "check_reflectance",
    "numba_available",
    "numba_cache_dir",
    "resolve_engine",
    "run_program",
]

#: Pixels per block of the numpy engine: registers x block x 4 bytes should fit in L2.
DEFAULT_BLOCK = 8192
#: Pixels per block of the numba engine: (inputs + registers + constants) x block x 8 bytes
#: stays in L2 (a program of 244 indices has about 150 rows: 300 KB).
NUMBA_BLOCK = 256
#: ``engine`` values: "auto" is "numba" where numba is importable, else "numpy".
ENGINES = ("auto", "numpy", "numba")

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
    block: int | None = None,
    threads: int | None = 1,
    precision: str = "float64",
    engine: str = "auto",
) -> np.ndarray:
    """Evaluate ``program`` on ``x`` of shape ``(n_outer, n_inputs, n_pixels)``.

    ``x[:, k]`` holds the band ``program["inputs"][k]`` (reflectance; float32 preferred,
    other float types are converted block by block). Returns ``out`` of shape
    ``(n_outer, n_outputs, n_pixels)``, float32, filled with ``program["outputs"]`` in order.
    ``threads``: worker threads (both engines release the GIL); ``None`` for one per CPU.
    ``precision``: dtype of intermediate results. ``"float64"`` (default) keeps indices with
    cancellation (EVI, VARI, kEVI, …) accurate to float32 output precision; ``"float32"``
    is faster and loses up to ~1e-3 relative accuracy in such indices near their poles.
    ``engine``: ``"numba"`` (compiled interpreter, needs numba), ``"numpy"`` or ``"auto"``
    (numba where importable). ``block``: pixels per block (default per engine).
    """
    dtype = np.dtype(precision)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    engine = resolve_engine(engine)
    n_in, n_out = len(program["inputs"]), len(program["outputs"])
    if x.ndim != 3 or x.shape[1] != n_in:
        raise ValueError(f"expected x of shape (n, {n_in}, pixels), got {x.shape}")
    n_outer, _, n_pix = x.shape
    if out is None:
        out = np.empty((n_outer, n_out, n_pix), dtype=np.float32)
    elif out.shape != (n_outer, n_out, n_pix) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(n_outer, n_out, n_pix)}")
    if engine == "numba":
        code, consts, n_rows_regs = _encoded(program)  # validates the instructions
    else:
        code = _decode(program)
    if n_out == 0 or n_pix == 0 or n_outer == 0:
        return out
    if block is None:
        block = NUMBA_BLOCK if engine == "numba" else DEFAULT_BLOCK
    block = max(1, min(int(block), n_pix))
    tasks = [(i, p0) for i in range(n_outer) for p0 in range(0, n_pix, block)]
    n_regs = max(1, int(program["n_registers"]))
    if threads is None:
        threads = os.cpu_count() or 1
    threads = max(1, min(int(threads), len(tasks)))

    if engine == "numba":
        kernel = _numba_kernel()
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float32)  # float16 and the like: exact in float32
        x = np.ascontiguousarray(x)
        n_rows = n_in + n_rows_regs + 1
        consts = consts.astype(dtype)  # constants round like numpy's (weak) Python scalars

        def work(chunk: list[tuple[int, int]]) -> None:
            buffer = np.empty((n_rows, block), dtype)
            tasks_rows = np.asarray(chunk, np.int64)
            kernel(x, out, code, consts, n_in, n_rows_regs, tasks_rows, buffer)

        # contiguous runs of blocks per thread (neighbouring pixels, sequential memory)
        step = -(-len(tasks) // threads)
        chunks = [tasks[k : k + step] for k in range(0, len(tasks), step)]
    else:

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

        chunks = [tasks[k::threads] for k in range(threads)]

    if len(chunks) == 1:
        work(chunks[0])
    else:
        with ThreadPoolExecutor(len(chunks)) as pool:
            list(pool.map(work, chunks))
    return out


# --------------------------------------------------------------------------- numba engine


def numba_available() -> bool:
    """Whether the ``numba`` engine can run here (numba importable; imported on first call)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_engine(engine: str) -> str:
    """``"numpy"`` or ``"numba"`` for an ``engine`` argument; ``"auto"``: numba if available."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto":
        return "numba" if numba_available() else "numpy"
    if engine == "numba" and not numba_available():
        raise ImportError(
            "engine='numba' needs numba (pip install numba); engine='numpy' runs without it."
        )
    return engine


_OPCODES = {
    "copy": 0,
    "add": 1,
    "sub": 2,
    "mul": 3,
    "div": 4,
    "pow": 5,
    "neg": 6,
    "exp": 7,
    "sqrt": 8,
    "abs": 9,
    "ln": 10,
    "log10": 11,
    "square": 12,
}
#: Powers with a constant exponent that need no ``pow``: ``x ** 0.5`` (13 of the 18 powers in
#: the catalogue) is a square root, exact to IEEE rounding; integer exponents are products.
_POW_CONST = {0.5: 13, 3.0: 14, 4.0: 15, -1.0: 16}
#: Constant operands are encoded below this value while the program is encoded.
_CONST = -(10**9)


def _encoded(program: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """The program as int64 rows ``[op, dst, a, b, mode]``, its constants and its register
    count (cached per program).

    Operands index rows of the work buffer (inputs ``0..n_in-1``, registers after them) or,
    as destination or copy source, output ``j`` as ``-(j + 1)``. ``mode`` 1: ``b`` indexes the
    constants; 2: ``a`` does; 0: neither.
    """
    key = hashlib.sha256(json.dumps(program, sort_keys=True).encode()).hexdigest()
    return _encode_cached(key, json.dumps(program))


@functools.lru_cache(maxsize=64)
def _encode_cached(key: str, text: str) -> tuple[np.ndarray, np.ndarray, int]:
    program = json.loads(text)
    n_in = len(program["inputs"])
    instructions = program["instructions"]
    for op, *_ in instructions:
        if op not in _OPCODES:
            raise ValueError(f"unknown instruction {op!r} in spectral index program")
    # Registers are allocated again so that no instruction writes a row it reads: a loop
    # whose output aliases an input is not vectorised by LLVM (its runtime check fails).
    last_read: dict[int, int] = {}
    writes: list[int | None] = []
    version: dict[int, int] = {}  # program register -> instruction that last wrote it
    for q, (_, dst, *srcs) in enumerate(instructions):
        for kind, value in srcs:
            if kind == "r":
                last_read[version[int(value)]] = q
        if dst[0] == "r":
            version[int(dst[1])] = q
            writes.append(q)
        else:
            writes.append(None)
    row_of: dict[int, int] = {}  # writing instruction -> register row
    live: dict[int, int] = {}  # program register -> writing instruction (current value)
    free: list[int] = []
    n_regs = 0
    consts: dict[float, int] = {}
    rows = []
    for q, (op, dst, *srcs) in enumerate(instructions):
        args = []
        for kind, value in srcs:
            if kind == "x":
                args.append(int(value))
            elif kind == "r":
                args.append(n_in + row_of[live[int(value)]])
            elif kind == "o":
                args.append(-(int(value) + 1))
            elif kind == "c":
                args.append(_CONST - consts.setdefault(float(value), len(consts)))
            else:
                raise ValueError(f"unknown operand {[kind, value]!r} in spectral index program")
        if dst[0] == "r":
            if free:
                row = free.pop()
            else:
                row, n_regs = n_regs, n_regs + 1
            row_of[q] = row
            target = n_in + row
        elif dst[0] == "o":
            target = -(int(dst[1]) + 1)
        else:
            raise ValueError(f"unknown destination {dst!r} in spectral index program")
        for value in dict.fromkeys(int(v) for k, v in srcs if k == "r"):
            w = live[value]
            if last_read.get(w) == q and w in row_of:
                free.append(row_of.pop(w))
        if dst[0] == "r":
            live[int(dst[1])] = q
            if q not in last_read:  # written, never read
                free.append(row_of.pop(q))
        code = _OPCODES[op]
        if op == "pow" and srcs[1][0] == "c":
            code = _POW_CONST.get(float(srcs[1][1]), code)
            if code != _OPCODES["pow"]:
                args = args[:1]
        mode = 0
        if len(args) == 2 and args[1] <= _CONST:
            mode, args[1] = 1, _CONST - args[1]
        elif len(args) == 2 and args[0] <= _CONST:
            mode, args[0] = 2, _CONST - args[0]
        elif args and args[0] <= _CONST:  # a constant copied (or transformed: folded here)
            value = float(srcs[0][1])
            if op != "copy":
                with np.errstate(all="ignore"):
                    value = float(_UNARY[op](np.float64(value)))
            code, mode = _OPCODES["copy"], 2
            args[0] = consts.setdefault(value, len(consts))
        args += [0, 0]
        rows.append([code, target, args[0], args[1], mode])
    code_rows = np.asarray(rows, np.int64).reshape(-1, 5)
    code_rows.flags.writeable = False
    values = np.asarray(sorted(consts, key=consts.__getitem__), np.float64)
    values.flags.writeable = False
    return code_rows, values, n_regs


def _blocks(x, out, code, consts, n_in, n_regs, tasks, work):  # pragma: no cover - numba
    """Run ``code`` over the pixel blocks ``tasks`` (rows ``[i, p0]``); compiled by numba.

    ``work`` holds one row per input and register, and a scratch row for results that go
    to an output (cast to float32 there, +-inf -> NaN). ``consts`` has ``work``'s dtype.
    """
    block = work.shape[1]
    n_pix = x.shape[2]
    scratch = work.shape[0] - 1
    for t in range(tasks.shape[0]):
        i = tasks[t, 0]
        p0 = tasks[t, 1]
        n = min(block, n_pix - p0)
        for b in range(n_in):
            for k in range(n):
                work[b, k] = x[i, b, p0 + k]
        for q in range(code.shape[0]):
            op = code[q, 0]
            d = code[q, 1]
            a = code[q, 2]
            s = code[q, 3]
            mode = code[q, 4]
            if op == 0 and a < 0:  # output -> output
                j, j_src = -d - 1, -a - 1
                for k in range(n):
                    out[i, j, p0 + k] = out[i, j_src, p0 + k]
                continue
            r = d if d >= 0 else scratch
            if mode == 0:
                if op == 1:
                    for k in range(n):
                        work[r, k] = work[a, k] + work[s, k]
                elif op == 2:
                    for k in range(n):
                        work[r, k] = work[a, k] - work[s, k]
                elif op == 3:
                    for k in range(n):
                        work[r, k] = work[a, k] * work[s, k]
                elif op == 4:
                    for k in range(n):
                        work[r, k] = work[a, k] / work[s, k]
                elif op == 5:
                    for k in range(n):
                        work[r, k] = work[a, k] ** work[s, k]
                elif op == 13:
                    for k in range(n):
                        # as pow(x, 0.5): +0 for -0, +inf for -inf, NaN below zero
                        work[r, k] = np.inf if work[a, k] == -np.inf else np.sqrt(work[a, k]) + 0.0
                elif op == 12:
                    for k in range(n):
                        work[r, k] = work[a, k] * work[a, k]
                elif op == 14:
                    for k in range(n):
                        work[r, k] = work[a, k] * work[a, k] * work[a, k]
                elif op == 15:
                    for k in range(n):
                        y = work[a, k] * work[a, k]
                        work[r, k] = y * y
                elif op == 16:
                    for k in range(n):
                        work[r, k] = 1.0 / work[a, k]
                elif op == 0:
                    for k in range(n):
                        work[r, k] = work[a, k]
                elif op == 6:
                    for k in range(n):
                        work[r, k] = -work[a, k]
                elif op == 7:
                    for k in range(n):
                        work[r, k] = np.exp(work[a, k])
                elif op == 8:
                    for k in range(n):
                        work[r, k] = np.sqrt(work[a, k])
                elif op == 9:
                    for k in range(n):
                        work[r, k] = abs(work[a, k])
                elif op == 10:
                    for k in range(n):
                        work[r, k] = np.log(work[a, k])
                elif op == 11:
                    for k in range(n):
                        work[r, k] = np.log10(work[a, k])
            elif mode == 1:  # row op constant
                c = consts[s]
                if op == 1:
                    for k in range(n):
                        work[r, k] = work[a, k] + c
                elif op == 2:
                    for k in range(n):
                        work[r, k] = work[a, k] - c
                elif op == 3:
                    for k in range(n):
                        work[r, k] = work[a, k] * c
                elif op == 4:
                    for k in range(n):
                        work[r, k] = work[a, k] / c
                elif op == 5:
                    for k in range(n):
                        work[r, k] = work[a, k] ** c
            else:  # constant op row, or a constant copied / transformed
                c = consts[a]
                if op == 1:
                    for k in range(n):
                        work[r, k] = c + work[s, k]
                elif op == 2:
                    for k in range(n):
                        work[r, k] = c - work[s, k]
                elif op == 3:
                    for k in range(n):
                        work[r, k] = c * work[s, k]
                elif op == 4:
                    for k in range(n):
                        work[r, k] = c / work[s, k]
                elif op == 5:
                    for k in range(n):
                        work[r, k] = c ** work[s, k]
                elif op == 0:
                    for k in range(n):
                        work[r, k] = c
            if d < 0:
                j = -d - 1
                for k in range(n):
                    y = np.float32(work[r, k])
                    out[i, j, p0 + k] = np.nan if np.isinf(y) else y


#: The module name under which the compiled kernel is cached on disk (numba's cache refers to
#: the module by name, so the same file loaded under another name compiles in memory instead).
_CACHED_AS = "openeo_deepfeatures.udf.spectral_indices"
_NUMBA_CONFIG = threading.Lock()


def numba_cache_dir() -> Path:
    """Where the compiled kernel is cached: ``$NUMBA_CACHE_DIR`` when set (numba's own setting),
    else ``$XDG_CACHE_HOME/openeo-deepfeatures/numba`` (``~/.cache/...``), beside the models of
    ``feature_embedding.cache_dir``; without a writable home, a folder in the temporary
    directory. Never beside this file: an installed package stays as pip wrote it (a cache left
    in ``site-packages/openeo_deepfeatures/`` outlives ``pip uninstall`` and then shadows a later
    editable install as a namespace package)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = base / "openeo-deepfeatures" / "numba"
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError:  # numba would otherwise fall back to caching beside this file
        return Path(tempfile.gettempdir()) / "openeo-deepfeatures-numba"
    return home


@functools.lru_cache(maxsize=1)
def _numba_kernel():
    """:func:`_blocks` compiled by numba, once per process (about 2 s; from the disk cache,
    :func:`numba_cache_dir`, about 0.1 s when this file is imported as the package's module)."""
    import numba

    options = {"nogil": True, "error_model": "numpy", "boundscheck": False}
    if __name__ != _CACHED_AS:
        return numba.njit(**options)(_blocks)
    # numba places a function's cache when the function is decorated: in numba.config.CACHE_DIR
    # if set, else beside the source file. Set it for this one decoration, then restore it.
    with _NUMBA_CONFIG:
        saved = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = str(numba_cache_dir())
        try:
            return numba.njit(cache=True, **options)(_blocks)
        finally:
            numba.config.CACHE_DIR = saved


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
        engine=context.get("engine", "auto"),
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
