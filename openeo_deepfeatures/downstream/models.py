"""The small downstream models: standardised ridge (alpha by inner blocked CV), random forest,
histogram gradient boosting; scikit-learn pipelines fitted on one training fold at a time.

Every preprocessing step (median imputation of missing summaries, robust scaling) is a pipeline
step, so it is fitted on the training pixels of the fold only. Seeds are fixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, RobustScaler, StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ProcessParameterInvalid
from .options import MODELS, PROCESS

__all__ = ["ALPHAS", "CLIP", "BlockedRidgeCV", "fit_model", "make_model", "robust_scaling"]

#: Ridge penalties searched by the inner cross-validation (on standardised inputs).
ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
#: Inputs are scaled by their 2-98 % range on the training pixels and clipped to ±CLIP ranges
#: (as the encoder contract normalises its channels): a few extreme index values must not
#: dominate a linear model.
CLIP = 4.0


class BlockedRidgeCV(RegressorMixin, BaseEstimator):
    """Ridge regression whose ``alpha`` is chosen by a grouped (spatially blocked) inner CV.

    Gives the same ``alpha_`` and predictions as ``GridSearchCV(Ridge(), {"alpha": alphas},
    cv=GroupKFold(n_splits), scoring="neg_mean_squared_error").fit(X, y, groups=groups)``, but
    solves each inner fold once for all alphas (one eigendecomposition of the centred Gram
    matrix, primal or dual, whichever is smaller) instead of once per alpha: with a thousand
    inputs it is an order of magnitude faster. Without ``groups`` the inner folds are
    ``KFold(n_splits)``.
    """

    def __init__(self, alphas: Sequence[float] = ALPHAS, n_splits: int = 3) -> None:
        self.alphas = alphas
        self.n_splits = n_splits

    @staticmethod
    def _path_mse(
        x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, alphas
    ) -> np.ndarray:
        mean_x, mean_y = x_fit.mean(axis=0), y_fit.mean()
        xc, yc = x_fit - mean_x, y_fit - mean_y
        n, p = xc.shape
        if n >= p:  # primal: (Xc'Xc + a I) w = Xc'y
            lam, vec = np.linalg.eigh(xc.T @ xc)
            proj = vec.T @ (xc.T @ yc)
            weights = vec @ (proj[:, None] / (np.clip(lam, 0, None)[:, None] + alphas[None]))
        else:  # dual: w = Xc' (Xc Xc' + a I)^-1 y
            lam, vec = np.linalg.eigh(xc @ xc.T)
            proj = vec.T @ yc
            dual = vec @ (proj[:, None] / (np.clip(lam, 0, None)[:, None] + alphas[None]))
            weights = xc.T @ dual
        pred = (x_val - mean_x) @ weights + mean_y
        return np.mean((pred - y_val[:, None]) ** 2, axis=0)

    def fit(self, X, y, groups=None) -> BlockedRidgeCV:
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        alphas = np.asarray(self.alphas, dtype=np.float64)
        if alphas.ndim != 1 or alphas.size == 0 or not np.all(alphas > 0):
            raise ProcessParameterInvalid(
                process=PROCESS, parameter="alphas", reason="give positive ridge penalties."
            )
        if groups is None:
            splitter = KFold(n_splits=self.n_splits)
        else:
            n_groups = np.unique(groups).size
            if n_groups < 2:
                raise ProcessParameterInvalid(
                    process=PROCESS,
                    parameter="target",
                    reason="the training pixels of a fold lie in one block: the inner "
                    "cross-validation of ridge needs at least two.",
                )
            splitter = GroupKFold(n_splits=min(self.n_splits, n_groups))
        mse = [
            self._path_mse(X[fit], y[fit], X[val], y[val], alphas)
            for fit, val in splitter.split(X, y, groups)
        ]
        self.cv_mse_ = np.mean(mse, axis=0)
        self.alpha_ = float(alphas[int(np.argmin(self.cv_mse_))])
        self.ridge_ = Ridge(alpha=self.alpha_).fit(X, y)
        self.coef_, self.intercept_ = self.ridge_.coef_, self.ridge_.intercept_
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "ridge_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.ridge_.predict(X)


def robust_scaling() -> list[tuple[str, Any]]:
    """Pipeline steps: median imputation, 2-98 % range scaling, clipping to ±CLIP."""
    return [
        ("impute", SimpleImputer(strategy="median")),
        ("robust", RobustScaler(quantile_range=(2.0, 98.0))),
        ("clip", FunctionTransformer(np.clip, kw_args={"a_min": -CLIP, "a_max": CLIP})),
    ]


def make_model(
    name: str, *, seed: int = 0, trees: int = 200, n_jobs: int | None = None
) -> Pipeline:
    """An unfitted pipeline for a model name of :data:`~.options.MODELS`.

    ``trees``: trees of the random forest, boosting iterations of ``hgb``.
    """
    if name == "ridge":
        steps = [*robust_scaling(), ("scale", StandardScaler()), ("ridge", BlockedRidgeCV())]
    elif name == "rf":
        forest = RandomForestRegressor(
            n_estimators=trees, max_features="sqrt", n_jobs=n_jobs, random_state=seed
        )
        steps = [("impute", SimpleImputer(strategy="median")), ("rf", forest)]
    elif name == "hgb":
        boosting = HistGradientBoostingRegressor(
            max_iter=trees, learning_rate=0.05, early_stopping=False, random_state=seed
        )
        steps = [("hgb", boosting)]  # handles NaN itself
    else:
        raise ProcessParameterInvalid(
            process=PROCESS, parameter="models", reason=f"unknown model {name!r}; use {MODELS}."
        )
    return Pipeline(steps)


def fit_model(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    seed: int = 0,
    trees: int = 200,
    n_jobs: int | None = None,
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit model ``name`` on ``(x, y)``; ``groups`` (the spatial blocks) drive ridge's inner CV.

    Returns the fitted pipeline and what it chose (``alpha`` for ridge).
    """
    model = make_model(name, seed=seed, trees=trees, n_jobs=n_jobs)
    if name == "ridge":
        model.fit(x, y, ridge__groups=groups)
        return model, {"alpha": model.named_steps["ridge"].alpha_}
    model.fit(x, y)
    return model, {}
