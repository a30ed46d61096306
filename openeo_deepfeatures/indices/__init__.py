"""Spectral indices: catalogue, formula parser, shared-subexpression DAG, fused evaluator."""

from .catalogue import ASI_VERSION, IndexSpec, catalogue, get_index, list_indices
from .compute import compute_indices
from .formula import load_formulas, parse_formula
from .resolve import compile_indices

__all__ = [
    "ASI_VERSION",
    "IndexSpec",
    "catalogue",
    "compile_indices",
    "compute_indices",
    "get_index",
    "list_indices",
    "load_formulas",
    "parse_formula",
]
