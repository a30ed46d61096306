"""Do the features carry the information? Small models on temporal summaries, blocked CV.

:func:`evaluate` predicts a per-pixel target (e.g. tree-cover density) from the per-pixel
temporal summaries (:func:`~.summaries.temporal_summaries`) of up to four input sets:

- ``features``: the feature cube (k channels);
- ``indices``: all spectral indices of the SI cube;
- ``pca``: the PCA of the indices with k components, fitted inside each training fold;
- ``bands``: the reflectance bands;

with each model of :mod:`~.models`, in a spatially blocked cross-validation
(:func:`~.folds.spatial_folds`). Every fitted step (imputation, scaling, PCA, model, the
ridge penalty) sees the training pixels of its fold only. Scores are computed on the
out-of-fold predictions of all valid pixels.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

from ..errors import NoDataAvailable, ProcessParameterInvalid, TemporalExtentEmpty
from . import pca as _pca
from .folds import Fold, block_ids, spatial_folds
from .models import fit_model
from .options import DEFAULT_MODELS, DEFAULT_STATISTICS, INPUT_SETS, MODELS, PROCESS
from .summaries import as_time_cube, temporal_summaries
from .target import align_target, grid_mismatch

__all__ = ["BOOTSTRAP", "TABLE_COLUMNS", "Evaluation", "block_bootstrap_r2", "evaluate"]

#: Columns of :attr:`Evaluation.table`.
TABLE_COLUMNS = (
    "input_set",
    "model",
    "channels",
    "n_inputs",
    "r2",
    "r2_se",
    "mae",
    "rmse",
    "fit_time_s",
)
_PARAMETER = {"features": "features", "indices": "si_cube", "bands": "bands_cube"}
#: Block-bootstrap replicates behind ``r2_se``.
BOOTSTRAP = 500


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` found.

    ``table``: one row per input set and model (:data:`TABLE_COLUMNS`): R2, MAE and RMSE of
    the out-of-fold predictions of all valid pixels, ``r2_se`` the standard error of that R2
    by a block bootstrap (the CV blocks resampled with replacement); ``fold_scores``: scores
    per fold (with ``n_train``, ``n_test`` and the ridge ``alpha``; a fold whose blocks vary
    little has a low R2 whatever the model); ``r2_replicates``: the bootstrap R2s
    ``(input_set, model, replicate)``, the same resamples for every row, so differences
    between rows can be judged pairwise; ``predictions``: out-of-fold predictions
    ``(input_set, model, y, x)``; ``target``: the target on the features' grid; ``fold``: the
    test fold of each pixel (-1: target missing); ``settings``: everything to repeat it.
    """

    table: pd.DataFrame
    fold_scores: pd.DataFrame
    r2_replicates: xr.DataArray
    predictions: xr.DataArray
    target: xr.DataArray
    fold: xr.DataArray
    settings: dict[str, Any] = field(default_factory=dict)

    def best(self, input_set: str | None = None) -> pd.Series:
        """The row with the highest R2 (among ``input_set``'s rows if given)."""
        rows = self.table if input_set is None else self.table[self.table.input_set == input_set]
        if rows.empty:
            raise ProcessParameterInvalid(
                process=PROCESS,
                parameter="input_set",
                reason=f"{input_set!r} was not evaluated; evaluated: "
                f"{sorted(set(self.table.input_set))}.",
            )
        return rows.loc[rows["r2"].idxmax()]


def _timestamp(value: Any, parameter: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ProcessParameterInvalid(
            process=PROCESS, parameter=parameter, reason=f"{value!r} is not a date."
        ) from None
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _span(cube: xr.DataArray) -> str:
    times = pd.DatetimeIndex(cube["t"].values)
    return f"{times.min():%Y-%m-%d}..{times.max():%Y-%m-%d}"


def _common_period(
    cubes: dict[str, xr.DataArray], time_range: Sequence[Any] | None
) -> tuple[dict[str, xr.DataArray], list[str]]:
    """Cubes restricted to ``time_range`` (``[start, end)``) and to the dates all of them span."""
    if time_range is not None:
        if len(time_range) != 2:
            raise ProcessParameterInvalid(
                process=PROCESS, parameter="time_range", reason="give [start, end]."
            )
        start, end = (_timestamp(v, "time_range") for v in time_range)
        if start is not None and end is not None and not end > start:
            raise TemporalExtentEmpty(reason=f"time_range {list(time_range)}.")
        for name, cube in cubes.items():
            times = pd.DatetimeIndex(cube["t"].values)
            keep = np.ones(times.size, dtype=bool)
            if start is not None:
                keep &= times >= start
            if end is not None:
                keep &= times < end
            if not keep.any():
                raise NoDataAvailable(
                    reason=f"the {name} cube ({_span(cube)}) has no date in time_range "
                    f"{[str(v) for v in time_range]}."
                )
            cubes[name] = cube.isel(t=np.flatnonzero(keep))
    for name, cube in cubes.items():
        if cube.sizes["t"] == 0:
            raise NoDataAvailable(reason=f"the {name} cube has no dates.")
    first = max(pd.Timestamp(c["t"].values.min()) for c in cubes.values())
    last = min(pd.Timestamp(c["t"].values.max()) for c in cubes.values())
    if first > last:
        spans = ", ".join(f"{name} {_span(cube)}" for name, cube in cubes.items())
        other = next(n for n in cubes if n != "features")
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter=_PARAMETER[other],
            reason=f"the time ranges of the cubes do not overlap ({spans}): the features and "
            "the baselines must come from the same Sentinel-2 dates.",
        )
    out = {n: c.sel(t=slice(first, last)) for n, c in cubes.items()}
    return out, [f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}"]


def _check_grids(cubes: dict[str, xr.DataArray]) -> None:
    reference = cubes["features"].isel(t=0, bands=0, drop=True)
    for name, cube in cubes.items():
        if name == "features":
            continue
        why = grid_mismatch(cube.isel(t=0, bands=0, drop=True), reference)
        if why is not None:
            raise ProcessParameterInvalid(
                process=PROCESS,
                parameter=_PARAMETER[name],
                reason=f"the {name} cube is not on the features' grid: {why}. Give the "
                "Sentinel-2 cube the features were made from (deepfeatures evaluate --s2).",
            )


def block_bootstrap_r2(
    observed: np.ndarray,
    predicted: np.ndarray,
    blocks: np.ndarray,
    *,
    replicates: int = BOOTSTRAP,
    seed: int = 0,
) -> np.ndarray:
    """R2 of ``predicted`` (``(rows, pixels)``) in ``replicates`` block-bootstrap resamples.

    Each resample draws as many blocks as there are, with replacement (the same draws for
    every row of ``predicted``); returns ``(rows, replicates)``.
    """
    predicted = np.atleast_2d(predicted)
    ids, inverse = np.unique(blocks, return_inverse=True)
    draws = np.random.default_rng(seed).integers(0, ids.size, size=(replicates, ids.size))
    weight = np.stack([np.bincount(d, minlength=ids.size) for d in draws]).astype(np.float64)
    n = np.bincount(inverse, minlength=ids.size)
    sy = np.bincount(inverse, observed, minlength=ids.size)
    syy = np.bincount(inverse, observed**2, minlength=ids.size)
    total = weight @ syy - (weight @ sy) ** 2 / (weight @ n)
    out = np.empty((predicted.shape[0], replicates))
    for i, pred in enumerate(predicted):
        sse = weight @ np.bincount(inverse, (observed - pred) ** 2, minlength=ids.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[i] = 1.0 - sse / total
    return out


def _matrix(summaries: xr.DataArray) -> tuple[np.ndarray, list[str]]:
    """``(pixels, inputs)`` of the summaries, without inputs that are missing everywhere."""
    x = summaries.values.reshape(summaries.sizes["inputs"], -1).T
    keep = np.isfinite(x).any(axis=0)
    labels = [str(v) for v in summaries["inputs"].values[keep]]
    return np.ascontiguousarray(x[:, keep]), labels


def _models(models: Sequence[str] | str) -> list[str]:
    names = [models] if isinstance(models, str) else list(models)
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names or len(set(names)) != len(names):
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="models",
            reason=f"{names}: give distinct model names out of {list(MODELS)}.",
        )
    return names


@dataclass
class _Inputs:
    """The summary matrices of the input sets, and what the per-fold PCA needs."""

    statistics: Sequence[str]
    matrices: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)
    channels: dict[str, list[str]] = field(default_factory=dict)
    si_values: np.ndarray | None = None
    si_cube: xr.DataArray | None = None

    def for_fold(self, name: str, fold: Fold, seed: int) -> tuple[np.ndarray, list[str]]:
        """``(pixels, inputs)`` of ``name``; for ``pca`` fitted on ``fold``'s training pixels."""
        if name != "pca":
            return self.matrices[name]
        pipeline = _pca.fit_index_pca(
            self.si_values, fold.train, len(self.channels["pca"]), seed=seed
        )
        cube = self.si_cube
        projected = xr.DataArray(
            _pca.project(self.si_values, pipeline),
            dims=("t", "bands", "y", "x"),
            coords={
                "t": cube["t"].values,
                "bands": self.channels["pca"],
                "y": cube["y"].values,
                "x": cube["x"].values,
            },
        )
        return _matrix(temporal_summaries(projected, self.statistics))


def _load_inputs(
    cubes: dict[str, xr.DataArray], statistics: Sequence[str], k: int, say: Callable
) -> _Inputs:
    inputs = _Inputs(statistics=statistics)
    for name, cube in cubes.items():
        t0 = time.perf_counter()
        loaded = cube.compute()
        inputs.channels[name] = [str(b) for b in loaded["bands"].values.tolist()]
        inputs.matrices[name] = _matrix(temporal_summaries(loaded, statistics))
        if name == "indices":
            if not 1 <= k <= loaded.sizes["bands"]:
                raise ProcessParameterInvalid(
                    process=PROCESS,
                    parameter="pca_components",
                    reason=f"{k} components of {loaded.sizes['bands']} indices: use "
                    f"1..{loaded.sizes['bands']}.",
                )
            inputs.si_values = np.asarray(loaded.values, dtype=np.float32)
            inputs.si_cube = loaded
            inputs.channels["pca"] = [f"PC{i + 1}" for i in range(k)]
        say(
            f"{name}: {len(inputs.channels[name])} channels x {loaded.sizes['t']} dates -> "
            f"{len(inputs.matrices[name][1])} summaries ({time.perf_counter() - t0:.1f} s)"
        )
    return inputs


def _cross_validate(
    inputs: _Inputs,
    input_sets: list[str],
    names: list[str],
    folds: list[Fold],
    y: np.ndarray,
    groups: np.ndarray,
    *,
    seed: int,
    trees: int,
    threads: int | None,
    say: Callable,
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, int]]:
    """Out-of-fold predictions ``(set, model, pixel)``, per-fold scores, inputs per set."""
    predictions = np.full((len(input_sets), len(names), y.size), np.nan)
    per_fold: list[dict[str, Any]] = []
    n_inputs: dict[str, int] = {}
    for s, set_name in enumerate(input_sets):
        for fold in folds:
            t0 = time.perf_counter()
            x, labels = inputs.for_fold(set_name, fold, seed)
            prepare = time.perf_counter() - t0 if set_name == "pca" else 0.0
            n_inputs[set_name] = len(labels)
            for m, model in enumerate(names):
                t0 = time.perf_counter()
                fitted, info = fit_model(
                    model,
                    x[fold.train],
                    y[fold.train],
                    groups[fold.train],
                    seed=seed,
                    trees=trees,
                    n_jobs=threads,
                )
                fit_time = time.perf_counter() - t0 + prepare
                pred = fitted.predict(x[fold.test])
                predictions[s, m, fold.test] = pred
                per_fold.append(
                    {
                        "input_set": set_name,
                        "model": model,
                        "fold": fold.index,
                        "n_train": int(fold.train.size),
                        "n_test": int(fold.test.size),
                        "r2": float(r2_score(y[fold.test], pred)),
                        "mae": float(mean_absolute_error(y[fold.test], pred)),
                        "fit_time_s": fit_time,
                        **info,
                    }
                )
        tested = np.concatenate([f.test for f in folds])
        for m, model in enumerate(names):
            seconds = sum(
                r["fit_time_s"]
                for r in per_fold
                if (r["input_set"], r["model"]) == (set_name, model)
            )
            say(
                f"{set_name} / {model}: R2 {r2_score(y[tested], predictions[s, m, tested]):.3f} "
                f"({n_inputs[set_name]} inputs, fit {seconds:.1f} s)"
            )
    return predictions, per_fold, n_inputs


def evaluate(
    features: xr.DataArray,
    target: xr.DataArray,
    *,
    si_cube: xr.DataArray | None = None,
    bands_cube: xr.DataArray | None = None,
    models: Sequence[str] = DEFAULT_MODELS,
    statistics: Sequence[str] = DEFAULT_STATISTICS,
    time_range: Sequence[Any] | None = None,
    block: int = 10,
    n_splits: int = 5,
    buffer: int = 0,
    pca_components: int | None = None,
    reproject: bool = False,
    seed: int = 0,
    trees: int = 200,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Predict ``target`` from temporal summaries of the features and of the baselines.

    ``features``: feature cube ``(t, bands, y, x)``; ``target``: ``(y, x)`` on the same grid
    (NaN = unknown; on another grid or CRS an error, unless ``reproject``); ``si_cube``: the
    spectral indices of the same Sentinel-2 cube (gives the ``indices`` and ``pca`` sets);
    ``bands_cube``: its reflectance (the ``bands`` set). All cubes are cut to ``time_range``
    (``[start, end)``) and to their common dates, and loaded into memory.

    ``models``: out of :data:`~.options.MODELS`; ``statistics``: see
    :func:`~.summaries.parse_statistic`; ``block``, ``n_splits``, ``buffer``, ``seed``: the
    blocked CV (:func:`~.folds.spatial_folds`); ``pca_components``: k of the PCA (default: the
    number of features); ``trees``: trees (rf) or iterations (hgb); ``threads``: limit of the
    BLAS/OpenMP threads and the random forest's workers (default: the libraries' own);
    ``progress``: called with a line of text after each step.
    """
    from threadpoolctl import threadpool_limits

    say = progress or (lambda _line: None)
    names = _models(models)
    cubes = {"features": as_time_cube(features, "features")}
    if si_cube is not None:
        cubes["indices"] = as_time_cube(si_cube, "si_cube")
    if bands_cube is not None:
        cubes["bands"] = as_time_cube(bands_cube, "bands_cube")
    _check_grids(cubes)
    cubes, period = _common_period(cubes, time_range)
    aligned = align_target(target, cubes["features"], reproject=reproject)
    valid = np.isfinite(aligned.values)
    folds = spatial_folds(valid, block=block, n_splits=n_splits, buffer=buffer, seed=seed)
    groups = block_ids(valid.shape, block).ravel()
    y = aligned.values.ravel()
    say(
        f"target: {int(valid.sum())} of {valid.size} pixels valid; {len(folds)} folds of "
        f"{block} x {block} px blocks; dates {period[0]}..{period[1]}"
    )
    k = int(pca_components or cubes["features"].sizes["bands"])
    with threadpool_limits(limits=threads) if threads else contextlib.nullcontext():
        inputs = _load_inputs(cubes, statistics, k, say)
        input_sets = [s for s in INPUT_SETS if s in inputs.channels]
        predictions, per_fold, n_inputs = _cross_validate(
            inputs,
            input_sets,
            names,
            folds,
            y,
            groups,
            seed=seed,
            trees=trees,
            threads=threads,
            say=say,
        )

    observed = y[valid.ravel()]
    flat_predictions = predictions[:, :, valid.ravel()].reshape(-1, observed.size)
    replicates = block_bootstrap_r2(
        observed, flat_predictions, groups[valid.ravel()], seed=seed
    ).reshape(len(input_sets), len(names), -1)
    table_rows = []
    for s, set_name in enumerate(input_sets):
        for m, model in enumerate(names):
            pred = predictions[s, m, valid.ravel()]
            rows = [r for r in per_fold if (r["input_set"], r["model"]) == (set_name, model)]
            table_rows.append(
                {
                    "input_set": set_name,
                    "model": model,
                    "channels": len(inputs.channels[set_name]),
                    "n_inputs": n_inputs[set_name],
                    "r2": float(r2_score(observed, pred)),
                    "r2_se": float(np.nanstd(replicates[s, m], ddof=1)),
                    "mae": float(mean_absolute_error(observed, pred)),
                    "rmse": float(root_mean_squared_error(observed, pred)),
                    "fit_time_s": float(sum(r["fit_time_s"] for r in rows)),
                }
            )
    fold_map = np.full(valid.size, -1, dtype=np.int64)
    for fold in folds:
        fold_map[fold.test] = fold.index
    spatial = {"y": aligned["y"].values, "x": aligned["x"].values}
    settings = {
        "input_sets": input_sets,
        "models": names,
        "statistics": list(statistics),
        "channels": inputs.channels,
        "pca_components": k if "pca" in input_sets else None,
        "time_range": period,
        "dates": {n: int(c.sizes["t"]) for n, c in cubes.items()},
        "pixels": int(valid.size),
        "valid_pixels": int(valid.sum()),
        "block": int(block),
        "n_splits": int(n_splits),
        "buffer": int(buffer),
        "seed": int(seed),
        "trees": int(trees),
        "threads": threads,
        "bootstrap_replicates": BOOTSTRAP,
        "target": {key: str(v) for key, v in aligned.attrs.items()},
        "features": {
            key: str(v)
            for key, v in cubes["features"].attrs.items()
            if key in ("model_name", "model_version", "model_sha256", "model_family")
        },
    }
    return Evaluation(
        table=pd.DataFrame(table_rows, columns=list(TABLE_COLUMNS)),
        fold_scores=pd.DataFrame(per_fold),
        r2_replicates=xr.DataArray(
            replicates,
            dims=("input_set", "model", "replicate"),
            coords={"input_set": input_sets, "model": names},
            name="r2",
        ),
        predictions=xr.DataArray(
            predictions.reshape(len(input_sets), len(names), *valid.shape),
            dims=("input_set", "model", "y", "x"),
            coords={"input_set": input_sets, "model": names, **spatial},
            name="prediction",
        ),
        target=aligned,
        fold=xr.DataArray(
            fold_map.reshape(valid.shape), dims=("y", "x"), coords=spatial, name="fold"
        ),
        settings=settings,
    )
