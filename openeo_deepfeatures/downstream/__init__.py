"""Downstream evaluation: do the features carry the information? (``downstream`` extra)

Small models (ridge, random forest, gradient boosting; scikit-learn) predict a per-pixel target
from per-pixel temporal summaries of the features, of all spectral indices, of their PCA and of
the raw bands, in a spatially blocked cross-validation::

    from openeo_deepfeatures.downstream import demo_inputs, evaluate, format_table
    result = evaluate(**demo_inputs())
    print(format_table(result.table))

The parts that need scikit-learn are imported on first use, so ``deepfeatures`` (and this
package's summaries and target checks) work without it; using them without scikit-learn raises
:class:`~openeo_deepfeatures.errors.FeatureUnsupported` with the install command.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import FeatureUnsupported
from .inputs import demo_inputs, inputs_from_s2
from .options import DEFAULT_MODELS, DEFAULT_STATISTICS, INPUT_SETS, MODELS
from .summaries import temporal_summaries
from .target import align_target, as_target, load_target

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_STATISTICS",
    "INPUT_SETS",
    "MODELS",
    "BlockedRidgeCV",
    "Evaluation",
    "Fold",
    "align_target",
    "as_target",
    "block_ids",
    "demo_inputs",
    "evaluate",
    "fit_index_pca",
    "format_table",
    "inputs_from_s2",
    "load_target",
    "make_model",
    "plot_maps",
    "plot_scores",
    "require_sklearn",
    "spatial_folds",
    "summary_note",
    "temporal_summaries",
    "write_evaluation",
]

#: Names imported on first use, by module (scikit-learn or matplotlib are imported there).
_LAZY = {
    "evaluation": ("Evaluation", "evaluate"),
    "folds": ("Fold", "block_ids", "spatial_folds"),
    "models": ("BlockedRidgeCV", "make_model"),
    "pca": ("fit_index_pca",),
    "report": ("format_table", "summary_note", "write_evaluation"),
    "figures": ("plot_maps", "plot_scores"),
}
_SOURCE = {name: module for module, names in _LAZY.items() for name in names}
_NEEDS_SKLEARN = ("evaluation", "folds", "models", "pca")


def require_sklearn() -> None:
    """Raise :class:`FeatureUnsupported` with the install command when scikit-learn is missing."""
    try:
        importlib.import_module("sklearn")
    except ModuleNotFoundError:
        raise FeatureUnsupported(
            reason="the downstream evaluation needs scikit-learn: "
            "pip install 'openeo-deepfeatures[downstream]' (or pip install scikit-learn)."
        ) from None


def __getattr__(name: str) -> Any:
    module = _SOURCE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module in _NEEDS_SKLEARN:
        require_sklearn()
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
