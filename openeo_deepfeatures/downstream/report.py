"""Reporting an evaluation: the printed table, the honest one-paragraph note, the files.

:func:`write_evaluation` writes ``evaluation.csv``, ``evaluation.json`` (table, per-fold
scores, note, settings, software versions), ``evaluation_r2.png`` and ``evaluation_maps.png``
into a folder, all or nothing: every file is written to a temporary folder first and moved into
place when all of them are complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ProcessParameterInvalid
from ..versions import software_versions
from .options import PROCESS, input_set_label

if TYPE_CHECKING:
    from .evaluation import Evaluation

__all__ = ["FILES", "format_table", "summary_note", "write_evaluation"]

#: The files :func:`write_evaluation` writes, by role.
FILES = {
    "csv": "evaluation.csv",
    "json": "evaluation.json",
    "scores": "evaluation_r2.png",
    "maps": "evaluation_maps.png",
}
_VERSIONS = ("openeo-deepfeatures", "scikit-learn", "numpy", "xarray", "onnxruntime")
#: R2 differences within this many (paired, block-bootstrap) standard errors are a match.
SIGNIFICANT = 2.0


def format_table(table: pd.DataFrame) -> str:
    """The table as GitHub markdown (what ``deepfeatures evaluate`` prints)."""
    head = "| input set | model | inputs | R² | ± SE | MAE | RMSE | fit time (s) |"
    lines = [head, "|---|---|--:|--:|--:|--:|--:|--:|"]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {input_set_label(row.input_set, int(row.channels))} | {row.model} | "
            f"{int(row.n_inputs)} | {row.r2:.3f} | {row.r2_se:.3f} | {row.mae:.2f} | "
            f"{row.rmse:.2f} | {row.fit_time_s:.1f} |"
        )
    return "\n".join(lines)


def _best(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {s: rows.loc[rows["r2"].idxmax()] for s, rows in table.groupby("input_set", sort=False)}


def summary_note(result: Evaluation) -> str:
    """The features' best R2 next to each baseline's best, with the differences, in words.

    A difference is given with its block-bootstrap standard error (paired: the same
    resamples for both); within ``SIGNIFICANT`` standard errors it is called a match.
    """
    table = result.table
    best = _best(table)
    if "features" not in best:
        return ""
    f = best["features"]
    replicates = result.r2_replicates
    mine = replicates.sel(input_set="features", model=f.model).values
    lines = [
        f"{input_set_label('features', int(f.channels))}, {int(f.n_inputs)} inputs: R² "
        f"{f.r2:.3f} ({f.model}, MAE {f.mae:.2f})."
    ]
    for name in ("indices", "pca", "bands"):
        if name not in best:
            continue
        o = best[name]
        diff = float(f.r2 - o.r2)
        spread = float(np.nanstd(mine - replicates.sel(input_set=name, model=o.model).values))
        if abs(diff) <= SIGNIFICANT * spread:
            verdict = (
                f"the features match it ({diff:+.3f} ± {spread:.3f}, within "
                f"{SIGNIFICANT:g} standard errors)"
            )
        elif diff > 0:
            verdict = f"the features are better by {diff:.3f} ± {spread:.3f}"
        else:
            verdict = f"the features are worse by {-diff:.3f} ± {spread:.3f}"
        ratio = o.n_inputs / f.n_inputs if f.n_inputs else math.nan
        size = f", with {ratio:.0f}x fewer inputs" if ratio >= 1.5 else ""
        lines.append(
            f"{input_set_label(name, int(o.channels))}, {int(o.n_inputs)} inputs: R² "
            f"{o.r2:.3f} ({o.model}): {verdict}{size}."
        )
    return " ".join(lines)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_evaluation(
    result: Evaluation, directory: str | os.PathLike, *, overwrite: bool = False
) -> dict[str, Path]:
    """Write the table (CSV, JSON) and the figures into ``directory``; returns the paths by role.

    Refuses (:class:`~openeo_deepfeatures.errors.ProcessParameterInvalid`) when one of the
    files exists, unless ``overwrite``; on any failure nothing is left behind.
    """
    from .figures import plot_maps, plot_scores

    directory = Path(directory)
    paths = {role: directory / name for role, name in FILES.items()}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="output",
            reason=f"{', '.join(existing)} exist; choose another folder or allow overwriting.",
        )
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".evaluation.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        staged = {role: tmp / path.name for role, path in paths.items()}
        result.table.to_csv(staged["csv"], index=False, float_format="%.6g")
        payload = {
            "table": result.table.to_dict(orient="records"),
            "note": summary_note(result),
            "fold_scores": result.fold_scores.to_dict(orient="records"),
            "settings": result.settings,
            "software": software_versions(_VERSIONS),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        staged["json"].write_text(json.dumps(_clean(payload), indent=1, allow_nan=False) + "\n")
        target = result.target.attrs.get("long_name", "target")
        folds, block = result.settings.get("n_splits"), result.settings.get("block")
        title = f"{target}: out-of-fold R² ({folds}-fold CV, {block} x {block} px blocks)"
        plot_scores(result.table, staged["scores"], title=title)
        plot_maps(result, staged["maps"])
        for role, path in paths.items():
            os.replace(staged[role], path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths
