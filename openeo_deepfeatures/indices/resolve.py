"""Requested indices + constants + available bands -> a compiled :class:`~.dag.Program`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from numbers import Real
from typing import Any

from ..errors import BandMissing, FormulaInvalid, ProcessParameterInvalid
from ..sentinel2 import BAND_BY_ASI, BAND_BY_LABEL
from .catalogue import (
    EXTERNAL_INPUTS,
    IndexSpec,
    catalogue,
    global_constants,
    kernel_parts,
    unknown_index_error,
)
from .dag import Dag, Program, compile_program
from .formula import Expr, parse_formula, symbols

__all__ = ["ResolvedIndex", "build_dag", "resolve_indices"]

PROCESS = "deepfeatures_spectral_indices"


@dataclass(frozen=True)
class ResolvedIndex:
    """An index with its formula parsed and every symbol bound to a band or a number."""

    name: str
    expr: Expr
    bands: Mapping[str, str]  # symbol -> band label (incl. external inputs such as PAR)
    constants: Mapping[str, float]  # symbol -> value
    kernels: Mapping[str, tuple[str, str]]  # symbol -> (part a, part b)


def _check_constants(constants: Mapping[str, Any] | None, requested: Iterable[str]) -> tuple:
    """Validate ``constants``: ``{"L": 0.5}`` for all indices or ``{"SAVI": {"L": 0.5}}``.

    Returns a hashable, canonical form ``(global_items, per_index_items)``.
    """
    if constants is None:
        return ((), ())
    if not isinstance(constants, Mapping):
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="constants",
            reason=f"expected a mapping like {{'L': 0.5}}, got {type(constants).__name__}.",
        )
    requested = set(requested)
    flat: dict[str, float] = {}
    per_index: dict[str, dict[str, float]] = {}

    def number(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ProcessParameterInvalid(
                process=PROCESS,
                parameter="constants",
                reason=f"constant {key!r} must be a real number, got {value!r} ({type(value).__name__}).",
            )
        return float(value)

    for key, value in constants.items():
        if not isinstance(key, str):
            raise ProcessParameterInvalid(
                process=PROCESS, parameter="constants", reason=f"keys must be strings, got {key!r}."
            )
        if isinstance(value, Mapping):
            if key not in requested:
                raise ProcessParameterInvalid(
                    process=PROCESS,
                    parameter="constants",
                    reason=f"constants given for index {key!r}, which is not requested.",
                )
            per_index[key] = {k: number(f"{key}.{k}", v) for k, v in value.items()}
        else:
            flat[key] = number(key, value)
    return (
        tuple(sorted(flat.items())),
        tuple(sorted((k, tuple(sorted(v.items()))) for k, v in per_index.items())),
    )


def _bind(
    name: str,
    expr: Expr,
    labels: frozenset[str],
    flat: Mapping[str, float],
    mine: Mapping[str, float],
    defaults: Mapping[str, float | None],
) -> ResolvedIndex | str:
    """Bind the symbols of one formula; return a reason string when a band is missing."""
    bands: dict[str, str] = {}
    consts: dict[str, float] = {}
    kernels: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    global_defaults = global_constants()

    def bind(symbol: str, top: bool = True) -> None:
        if symbol in mine:
            consts[symbol] = mine[symbol]
        elif symbol in flat:
            consts[symbol] = flat[symbol]
        elif symbol in BAND_BY_LABEL or symbol in BAND_BY_ASI or symbol in EXTERNAL_INPUTS:
            label = BAND_BY_ASI[symbol].label if symbol in BAND_BY_ASI else symbol
            if label in labels:
                bands[symbol] = label
            else:
                missing.append(label)
        elif symbol in defaults and defaults[symbol] is not None:
            consts[symbol] = float(defaults[symbol])
        elif symbol in global_defaults and global_defaults[symbol] is not None:
            consts[symbol] = float(global_defaults[symbol])
        elif top and kernel_parts(symbol) is not None:
            parts = kernel_parts(symbol)
            kernels[symbol] = parts
            for p in parts:
                bind(p, top=False)
        else:
            raise FormulaInvalid(
                name=name,
                reason=(
                    f"symbol {symbol!r} is neither a band, a kernel term nor a constant with a "
                    "value; pass it in `constants`."
                ),
            )

    for symbol in sorted(symbols(expr)):
        bind(symbol)
    if missing:
        return f"{name} needs {sorted(set(missing))}"
    return ResolvedIndex(name, expr, bands, consts, kernels)


def build_dag(resolved: Sequence[ResolvedIndex]) -> tuple[Dag, list[tuple[str, int]]]:
    """One DAG for all indices; returns it with the (name, root node) pairs."""
    dag = Dag()
    roots = []
    for index in resolved:
        env: dict[str, int] = {}
        for symbol, label in index.bands.items():
            env[symbol] = dag.band(label)
        for symbol, value in index.constants.items():
            env[symbol] = dag.const(value)
        for symbol, (a, b) in index.kernels.items():
            env[symbol] = dag.rbf_kernel(env[a], env[b])
        roots.append((index.name, dag.build(index.expr, env)))
    return dag, roots


def resolve_indices(
    indices: Sequence[str] | None,
    labels: Iterable[str],
    constants: Mapping[str, Any] | None = None,
    custom: Mapping[str, str] | None = None,
) -> list[ResolvedIndex]:
    """Check and bind the requested indices against the bands present."""
    labels = frozenset(labels)
    cat = catalogue()
    custom = dict(custom or {})
    explicit = indices is not None
    if indices is None:
        names = list(cat) + list(custom)
    else:
        if isinstance(indices, str):
            indices = [indices]
        names = list(dict.fromkeys(indices))
        unknown = [n for n in names if n not in cat and n not in custom]
        if unknown:
            raise unknown_index_error(unknown, PROCESS)
    flat_items, per_items = _check_constants(constants, names)
    flat = dict(flat_items)
    per_index = {k: dict(v) for k, v in per_items}
    resolved: list[ResolvedIndex] = []
    problems: list[str] = []
    used: set[str] = set()
    for name in names:
        if name in custom:
            expr, defaults = parse_formula(custom[name], name), {}
        else:
            spec: IndexSpec = cat[name]
            expr, defaults = _parse_catalogue(name), spec.constants
        names_in_formula = symbols(expr)
        names_in_formula |= {p for s in names_in_formula for p in (kernel_parts(s) or ())}
        used |= names_in_formula
        stray = sorted(set(per_index.get(name, {})) - names_in_formula)
        if stray:
            raise ProcessParameterInvalid(
                process=PROCESS,
                parameter="constants",
                reason=f"{name} has no constant {stray}; its formula is {_formula(name, custom)!r}.",
            )
        bound = _bind(name, expr, labels, flat, per_index.get(name, {}), defaults)
        if isinstance(bound, str):
            problems.append(bound)
        else:
            resolved.append(bound)
    stray = sorted(set(flat) - used)
    if stray:
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="constants",
            reason=f"no requested index uses the constants {stray} (a typo?).",
        )
    if explicit and problems:
        have = sorted(labels)
        raise BandMissing(
            process=PROCESS,
            reason="; ".join(problems) + f". The cube has {have}.",
        )
    if not resolved:
        raise BandMissing(
            process=PROCESS,
            reason=f"no spectral index is computable from the bands {sorted(labels)}.",
        )
    return resolved


def _formula(name: str, custom: Mapping[str, str]) -> str:
    return custom[name] if name in custom else catalogue()[name].formula


@cache
def _parse_catalogue(name: str) -> Expr:
    return parse_formula(catalogue()[name].formula, name)


@lru_cache(maxsize=64)
def _compile_cached(key: str) -> Program:
    spec = json.loads(key)
    resolved = resolve_indices(spec["indices"], spec["labels"], spec["constants"], spec["custom"])
    dag, roots = build_dag(resolved)
    return compile_program(dag, roots)


def compile_indices(
    indices: Sequence[str] | None,
    labels: Iterable[str],
    constants: Mapping[str, Any] | None = None,
    custom: Mapping[str, str] | None = None,
) -> Program:
    """Resolve and compile (cached on the canonical request)."""
    # validate first so errors are raised with their own messages, then cache by a JSON key
    resolved = resolve_indices(indices, labels, constants, custom)
    key = json.dumps(
        {
            "indices": [r.name for r in resolved],
            "labels": sorted(set(labels)),
            "constants": _plain(constants),
            "custom": dict(sorted((custom or {}).items())),
        },
        sort_keys=True,
    )
    return _compile_cached(key)


def _plain(constants: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if constants is None:
        return None
    return {k: (dict(v) if isinstance(v, Mapping) else float(v)) for k, v in constants.items()}
