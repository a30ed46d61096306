# /// script
# dependencies = ["numpy>=1.26", "xarray>=2024.1"]
# ///
"""Spectral indices kernel (openEO UDF file of openeo-deepfeatures).

Self-contained: numpy only. It runs a compiled index *program* (plain JSON data made by
``openeo_deepfeatures.indices``: which bands in, which indices out, register code) over an
array, block by block, so every intermediate stays in the CPU cache and sub-expressions
shared by many indices are computed once. The package imports this very file for its native
path; on an openEO backend the program travels in the UDF ``context``.

Semantics: float32 arithmetic; NaN in -> NaN out; results that are not finite (division by
zero, overflow) are NaN; no floating-point warnings.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["run_program"]

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
