"""One expression DAG for a set of indices: shared sub-expressions, folded constants.

Nodes are hash-consed, so a sub-expression that appears in many indices (``N + R``,
``(N - R)/(N + R)``, a kernel term) is a single node. Commutative operands are put in a
canonical order (exact in IEEE arithmetic) so ``N + R`` and ``R + N`` meet; operations on
constants only are folded in float64. The DAG compiles to a :class:`Program` (JSON-able
register code) that the numpy kernel in ``udf/spectral_indices.py`` runs block by block,
and emits openEO process-graph nodes (:mod:`.to_openeo`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .formula import Expr

__all__ = ["Dag", "Program", "compile_program"]

_COMMUTATIVE = {"add", "mul"}
_FOLD = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
    "neg": np.negative,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "ln": np.log,
    "log10": np.log10,
    "square": np.square,
}

Node = tuple  # ("band", label) | ("const", value) | (op, child_id, ...)


@dataclass
class Dag:
    """Hash-consed expression DAG. ``nodes[i]`` only refers to ids < i."""

    nodes: list[Node] = field(default_factory=list)
    _ids: dict[Node, int] = field(default_factory=dict)

    def _add(self, node: Node) -> int:
        found = self._ids.get(node)
        if found is not None:
            return found
        self.nodes.append(node)
        self._ids[node] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def band(self, label: str) -> int:
        return self._add(("band", label))

    def const(self, value: float) -> int:
        value = float(value)
        return self._add(("const", 0.0 if value == 0 else value))  # -0.0 and 0.0 meet

    def is_const(self, node_id: int) -> bool:
        return self.nodes[node_id][0] == "const"

    def value(self, node_id: int) -> float:
        return self.nodes[node_id][1]

    def op(self, name: str, *args: int) -> int:
        if all(self.is_const(a) for a in args):
            with np.errstate(all="ignore"):
                folded = _FOLD[name](*(np.float64(self.value(a)) for a in args))
            return self.const(float(folded))
        if name == "pow" and self.is_const(args[1]):
            exponent = self.value(args[1])
            if exponent == 1.0:
                return args[0]
            if exponent == 2.0:
                return self._add(("square", args[0]))
        if name in _COMMUTATIVE:
            args = tuple(sorted(args))
        return self._add((name, *args))

    def build(self, expr: Expr, env: Mapping[str, int]) -> int:
        """Add an expression tree; ``env`` maps each symbol to a node id."""
        kind = expr[0]
        if kind == "num":
            return self.const(expr[1])
        if kind == "sym":
            return env[expr[1]]
        return self.op(kind, *(self.build(child, env) for child in expr[1:]))

    def rbf_kernel(self, a: int, b: int) -> int:
        """``exp(-(a - b)^2 / (2 sigma^2))`` with ``sigma = 0.5 (a + b)`` (per pixel)."""
        sigma = self.op("mul", self.const(0.5), self.op("add", a, b))
        num = self.op("mul", self.const(-1.0), self.op("square", self.op("sub", a, b)))
        den = self.op("mul", self.const(2.0), self.op("square", sigma))
        return self.op("exp", self.op("div", num, den))


@dataclass(frozen=True)
class Program:
    """Register code for the block evaluator; plain data, travels as JSON to UDFs.

    ``instructions`` are ``[op, dst, src...]``; operands are ``["x", k]`` (input band k),
    ``["r", i]`` (scratch register i), ``["o", j]`` (output j) or ``["c", value]``.
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    n_registers: int
    instructions: tuple[tuple[Any, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "n_registers": self.n_registers,
            "instructions": [list(i) for i in self.instructions],
        }

    @property
    def n_ops(self) -> int:
        return len(self.instructions)


def compile_program(dag: Dag, roots: Sequence[tuple[str, int]]) -> Program:
    """Compile the DAG nodes reachable from ``roots`` (output name, node id) to a Program."""
    needed: set[int] = set()
    stack = [r for _, r in roots]
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        node = dag.nodes[n]
        if node[0] not in ("band", "const"):
            stack.extend(node[1:])
    order = sorted(needed)
    inputs = tuple(sorted({dag.nodes[n][1] for n in order if dag.nodes[n][0] == "band"}))
    last_use: dict[int, int] = {}
    for pos, n in enumerate(order):
        node = dag.nodes[n]
        if node[0] not in ("band", "const"):
            for child in node[1:]:
                last_use[child] = pos
    # An index whose root no other node reads is computed straight into its output; a root
    # that is also an operand (NDVI inside NDDI) stays in a working-precision register and is
    # copied out, so float32 rounding of outputs never feeds another index.
    slots: dict[int, list[int]] = {}
    for j, (_, root) in enumerate(roots):
        slots.setdefault(root, []).append(j)
    direct = {
        n: js[0]
        for n, js in slots.items()
        if n not in last_use and dag.nodes[n][0] not in ("band", "const")
    }

    def ref(n: int) -> list[Any]:
        node = dag.nodes[n]
        if node[0] == "band":
            return ["x", inputs.index(node[1])]
        if node[0] == "const":
            return ["c", node[1]]
        return ["r", reg_of[n]]

    reg_of: dict[int, int] = {}
    free: list[int] = []
    n_registers = 0
    instructions: list[tuple[Any, ...]] = []
    for pos, n in enumerate(order):
        node = dag.nodes[n]
        if node[0] in ("band", "const"):
            continue
        srcs = [ref(c) for c in node[1:]]
        for c in dict.fromkeys(node[1:]):
            if c in reg_of and last_use.get(c) == pos:
                free.append(reg_of.pop(c))
        if n in direct:
            out_j = direct[n]
            instructions.append((node[0], ["o", out_j], *srcs))
            instructions.extend(("copy", ["o", j], ["o", out_j]) for j in slots[n][1:])
            continue
        if free:
            reg = free.pop()
        else:
            reg = n_registers
            n_registers += 1
        reg_of[n] = reg
        instructions.append((node[0], ["r", reg], *srcs))
        instructions.extend(("copy", ["o", j], ["r", reg]) for j in slots.get(n, ()))
    for n, js in slots.items():
        if dag.nodes[n][0] in ("band", "const"):
            instructions.extend(("copy", ["o", j], ref(n)) for j in js)
    return Program(
        inputs=inputs,
        outputs=tuple(name for name, _ in roots),
        n_registers=n_registers,
        instructions=tuple(instructions),
    )
