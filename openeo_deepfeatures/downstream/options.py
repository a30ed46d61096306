"""Names and defaults shared by the evaluation API and the ``deepfeatures evaluate`` command.

Kept free of scikit-learn, so the command line can be built without the ``downstream`` extra.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_STATISTICS",
    "INPUT_SETS",
    "MODELS",
    "PROCESS",
    "SEASONS",
    "input_set_label",
]

PROCESS = "evaluate"

#: The input sets, in table order: the feature cube, all spectral indices, the PCA of the
#: indices with as many components as there are features (fitted per training fold), and
#: the reflectance bands.
INPUT_SETS = ("features", "indices", "pca", "bands")

#: ``ridge``: standardised ridge regression, alpha chosen by an inner spatially blocked CV;
#: ``rf``: random forest; ``hgb``: histogram gradient boosting (slow with many inputs).
MODELS = ("ridge", "rf", "hgb")
DEFAULT_MODELS = ("ridge", "rf")

#: Meteorological seasons (months), each summarised by its median.
SEASONS = {"DJF": (12, 1, 2), "MAM": (3, 4, 5), "JJA": (6, 7, 8), "SON": (9, 10, 11)}

#: Per-pixel temporal summaries of each channel: mean, standard deviation, the 10/50/90 %
#: quantiles of all dates and the median of each season; NaN (clouds) are left out.
DEFAULT_STATISTICS = ("mean", "std", "q10", "q50", "q90", "DJF", "MAM", "JJA", "SON")


def input_set_label(input_set: str, channels: int) -> str:
    """Display name of an input set with its number of channels, e.g. ``features (k=6)``."""
    return {
        "features": f"features (k={channels})",
        "indices": f"indices ({channels})",
        "pca": f"PCA-{channels} of indices",
        "bands": f"bands ({channels})",
    }.get(input_set, f"{input_set} ({channels})")
