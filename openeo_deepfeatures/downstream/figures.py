"""Figures of an evaluation (PNG, matplotlib's Agg canvas, no pyplot state).

- :func:`plot_scores`: R2 per input set and model (bars, block-bootstrap SE as whiskers);
- :func:`plot_maps`: observed target, out-of-fold predictions and residuals of the best
  combination and of the features' best model, and the CV folds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .options import input_set_label

if TYPE_CHECKING:
    from .evaluation import Evaluation

__all__ = ["plot_maps", "plot_scores"]

DPI = 100


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.savefig(path, format="png", dpi=DPI)
    return path


def plot_scores(table: pd.DataFrame, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Grouped bars of out-of-fold R2 per input set (x) and model (colour), ± its SE; PNG."""
    sets = list(dict.fromkeys(table["input_set"]))
    models = list(dict.fromkeys(table["model"]))
    fig = _figure(1.6 + 1.7 * len(sets), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for m, model in enumerate(models):
        rows = table[table.model == model].set_index("input_set").reindex(sets)
        pos = np.arange(len(sets)) + (m - (len(models) - 1) / 2) * width
        bars = ax.bar(
            pos,
            rows["r2"],
            width * 0.92,
            yerr=rows["r2_se"],
            capsize=3,
            label=model,
            color=f"C{m}",
            error_kw={"elinewidth": 0.8, "ecolor": "0.3"},
        )
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in rows["r2"]], fontsize=8, padding=2)
    first = table.drop_duplicates("input_set").set_index("input_set").reindex(sets)
    ax.set_xticks(
        np.arange(len(sets)),
        [
            f"{input_set_label(s, int(first.loc[s, 'channels']))}\n{int(first.loc[s, 'n_inputs'])} inputs"
            for s in sets
        ],
        fontsize=9,
    )
    low = min(0.0, float(np.nanmin(table["r2"] - table["r2_se"].fillna(0))) - 0.05)
    ax.set_ylim(low, 1.0)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_ylabel("out-of-fold R² ± block-bootstrap SE")
    ax.set_title(title or "Predicting the target from temporal summaries", fontsize=10)
    ax.legend(title="model", fontsize=8, title_fontsize=8, loc="lower right")
    ax.grid(axis="y", lw=0.4, alpha=0.5)
    ax.set_axisbelow(True)
    return _save(fig, path)


def plot_maps(result: Evaluation, path: str | os.PathLike) -> Path:
    """Maps: observed, predicted (best; features' best), CV folds, residuals; as PNG."""
    from matplotlib.colors import ListedColormap

    observed = result.target.values
    best = result.best()
    feat = result.best("features")
    finite = observed[np.isfinite(observed)]
    vmin, vmax = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    picks = []
    for row in (best, feat):
        pred = result.predictions.sel(input_set=row["input_set"], model=row["model"]).values
        channels = int(row["channels"])
        name = f"{input_set_label(str(row['input_set']), channels)} / {row['model']}"
        picks.append((name, pred, float(row["r2"]), float(row["mae"])))
    residual_max = max(np.nanmax(np.abs(p - observed)) for _, p, _, _ in picks)
    residual_max = float(residual_max) if np.isfinite(residual_max) else 1.0

    fig = _figure(11.5, 7.4)
    axes = fig.subplots(2, 3)
    units = result.target.attrs.get("units", "")
    label = result.target.attrs.get("long_name", "target")
    im = axes[0, 0].imshow(observed, vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
    axes[0, 0].set_title(f"observed: {label}", fontsize=9)
    for col, (name, pred, r2, mae) in enumerate(picks, start=1):
        axes[0, col].imshow(pred, vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
        kind = "best" if col == 1 else "features"
        axes[0, col].set_title(
            f"predicted ({kind}): {name}\nR² {r2:.3f}, MAE {mae:.2f}", fontsize=9
        )
        res = axes[1, col].imshow(
            pred - observed,
            vmin=-residual_max,
            vmax=residual_max,
            cmap="RdBu_r",
            interpolation="nearest",
        )
        axes[1, col].set_title(f"predicted - observed ({kind})", fontsize=9)
    fig.colorbar(im, ax=axes[0, :], shrink=0.8, label=units or None)
    fig.colorbar(res, ax=axes[1, 1:], shrink=0.8, label=units or None)

    folds = result.fold.values.astype(float)
    folds[folds < 0] = np.nan
    n = int(np.nanmax(folds)) + 1 if np.isfinite(folds).any() else 1
    cmap = ListedColormap([f"C{i % 10}" for i in range(n)])
    axes[1, 0].imshow(folds, cmap=cmap, vmin=-0.5, vmax=n - 0.5, interpolation="nearest")
    block = result.settings.get("block")
    axes[1, 0].set_title(f"test fold of each pixel ({block} x {block} px blocks)", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)
