"""Downstream models: the fast blocked ridge CV equals scikit-learn's GridSearchCV; pipelines."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold

from openeo_deepfeatures.downstream.models import ALPHAS, BlockedRidgeCV, fit_model, make_model
from openeo_deepfeatures.errors import ProcessParameterInvalid


@pytest.mark.parametrize(("n", "p"), [(150, 12), (45, 90)])  # primal and dual solutions
def test_blocked_ridge_equals_grid_search(n, p):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, p))
    y = x[:, :3] @ np.array([2.0, -1.0, 0.5]) + rng.normal(scale=2.0, size=n)
    groups = np.arange(n) % 9
    ours = BlockedRidgeCV().fit(x, y, groups=groups)
    oracle = GridSearchCV(
        Ridge(),
        {"alpha": list(ALPHAS)},
        cv=GroupKFold(3),
        scoring="neg_mean_squared_error",
    ).fit(x, y, groups=groups)
    assert ours.alpha_ == oracle.best_params_["alpha"]
    np.testing.assert_allclose(ours.cv_mse_, -oracle.cv_results_["mean_test_score"], rtol=1e-9)
    x_new = rng.normal(size=(7, p))
    np.testing.assert_allclose(ours.predict(x_new), oracle.predict(x_new), rtol=1e-10)


def test_blocked_ridge_needs_two_groups():
    x = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(ProcessParameterInvalid, match="one block"):
        BlockedRidgeCV().fit(x, x[:, 0], groups=np.zeros(30))


def test_ridge_pipeline_is_robust_to_extreme_inputs():
    """Inputs are clipped to their training range: a wild value cannot throw a prediction off."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = 10 * x[:, 0] + rng.normal(size=200)
    model, info = fit_model("ridge", x, y, np.arange(200) % 8)
    assert info["alpha"] in ALPHAS
    wild = x[:3].copy()
    wild[:, 0] = [1e9, -1e9, np.nan]  # and a missing value, imputed by the training median
    pred = model.predict(wild)
    assert np.isfinite(pred).all()
    assert np.abs(pred).max() < 10 * np.abs(y).max()


@pytest.mark.parametrize("name", ["rf", "hgb"])
def test_tree_models_are_seeded(name):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(120, 6))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = np.nan_to_num(x[:, 0]) + rng.normal(scale=0.1, size=120)
    a, _ = fit_model(name, x, y, None, seed=4, trees=15)
    b, _ = fit_model(name, x, y, None, seed=4, trees=15)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    assert np.corrcoef(a.predict(x), y)[0, 1] > 0.8


def test_unknown_model():
    with pytest.raises(ProcessParameterInvalid, match="unknown model 'svm'"):
        make_model("svm")
