"""Formula parser: index formulas -> expression trees, through ``ast`` and a whitelist.

Nothing is ever evaluated with ``eval``/``exec``: the formula is parsed to a Python AST,
every node is checked against a small whitelist (numbers, names, ``+ - * / **``, unary
minus/plus and a few named functions) and turned into plain tuples:

- ``("num", value)``
- ``("sym", name)``
- ``(op, child, ...)`` with op in :data:`BINARY_OPS` or :data:`UNARY_OPS`
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from pathlib import Path

from ..errors import FormulaInvalid

__all__ = [
    "BINARY_OPS",
    "FUNCTIONS",
    "UNARY_OPS",
    "Expr",
    "load_formulas",
    "parse_formula",
    "symbols",
]

Expr = tuple  # ("num", float) | ("sym", str) | (op, Expr, ...)

BINARY_OPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
UNARY_OPS = {"neg", "exp", "sqrt", "abs", "ln", "log10"}
#: Functions a (user) formula may call, and the unary op each becomes.
FUNCTIONS = {"exp": "exp", "sqrt": "sqrt", "abs": "abs", "log": "ln", "ln": "ln", "log10": "log10"}
_MAX_LENGTH = 4000
_MAX_DEPTH = 64


def parse_formula(text: str, name: str = "<formula>") -> Expr:
    """Parse one formula into an expression tree; raise :class:`FormulaInvalid` otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaInvalid(name=name, reason="a formula must be a non-empty string.")
    if len(text) > _MAX_LENGTH:
        raise FormulaInvalid(name=name, reason=f"longer than {_MAX_LENGTH} characters.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaInvalid(
            name=name, reason=f"syntax error at column {exc.offset}: {exc.msg}."
        ) from None
    return _convert(tree.body, name, 0)


def _convert(node: ast.AST, name: str, depth: int) -> Expr:
    if depth > _MAX_DEPTH:
        raise FormulaInvalid(name=name, reason=f"nested deeper than {_MAX_DEPTH} levels.")
    if isinstance(node, ast.Constant):
        value = node.value
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise FormulaInvalid(
                name=name, reason=f"only finite numbers are allowed, not {value!r}."
            )
        return ("num", float(value))
    if isinstance(node, ast.Name):
        if not node.id.isidentifier() or node.id.startswith("_"):
            raise FormulaInvalid(name=name, reason=f"name {node.id!r} is not allowed.")
        return ("sym", node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY_OPS:
        return (
            BINARY_OPS[type(node.op)],
            _convert(node.left, name, depth + 1),
            _convert(node.right, name, depth + 1),
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _convert(node.operand, name, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return operand
        if operand[0] == "num":
            return ("num", -operand[1])
        return ("neg", operand)
    if isinstance(node, ast.Call):
        func = node.func.id if isinstance(node.func, ast.Name) else None
        if func not in FUNCTIONS or node.keywords or len(node.args) != 1:
            shown = ast.unparse(node.func)
            raise FormulaInvalid(
                name=name,
                reason=f"call of {shown!r} is not allowed; allowed: {sorted(FUNCTIONS)} with one argument.",
            )
        return (FUNCTIONS[func], _convert(node.args[0], name, depth + 1))
    raise FormulaInvalid(
        name=name,
        reason=(
            f"{type(node).__name__} ({ast.unparse(node)!r}) is not allowed: formulas may use "
            "numbers, names, + - * / **, unary minus and " + ", ".join(sorted(FUNCTIONS)) + "."
        ),
    )


def symbols(expr: Expr) -> set[str]:
    """All names an expression uses."""
    if expr[0] == "sym":
        return {expr[1]}
    if expr[0] == "num":
        return set()
    out: set[str] = set()
    for child in expr[1:]:
        out |= symbols(child)
    return out


def load_formulas(path: str | Path) -> dict[str, str]:
    """Read user-defined indices from a JSON file ``{"NAME": "formula", ...}``.

    Formulas may use CDSE band labels (``B08``), Awesome Spectral Indices symbols (``N``),
    kernel symbols (``kNR``) and constants. Every formula is parsed (and so checked) here.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FormulaInvalid(
            name=str(path), reason=f"cannot read the formula file: {exc}"
        ) from None
    if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
        raise FormulaInvalid(
            name=str(path), reason='expected a JSON object {"NAME": "formula", ...} of strings.'
        )
    for key, text in data.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise FormulaInvalid(name=str(key), reason="index names must be identifiers.")
        parse_formula(text, key)
    return dict(data)
