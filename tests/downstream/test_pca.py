"""The index PCA: fitted on the training pixels only, projections NaN where the date is cloudy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline

from openeo_deepfeatures.downstream.models import robust_scaling
from openeo_deepfeatures.downstream.pca import fit_index_pca, project
from openeo_deepfeatures.errors import ProcessParameterInvalid


def _values(seed: int = 0) -> np.ndarray:
    """(t, c, y, x): two regions (left, right) with different channel structure, some clouds."""
    rng = np.random.default_rng(seed)
    t, c, ny, nx = 9, 7, 6, 8
    base = rng.normal(size=(t, 2, ny, nx))
    mixing = rng.normal(size=(c, 2))
    values = np.einsum("ck,tkyx->tcyx", mixing, base)
    values[:, :, :, 4:] += rng.normal(scale=3.0, size=(t, c, ny, 4)) * np.arange(c)[:, None, None]
    values[2, :, 1, 1] = np.nan  # a cloudy pixel-date
    values[4, 3, 2, 2] = np.inf  # a non-finite index value
    return values.astype(np.float32)


def _manual(values: np.ndarray, pixels: np.ndarray, k: int) -> Pipeline:
    t, c = values.shape[:2]
    rows = np.moveaxis(values.reshape(t, c, -1)[:, :, pixels], 1, 2).reshape(-1, c)
    rows = np.where(np.isfinite(rows), rows, np.nan)
    rows = rows[np.isfinite(rows).any(axis=1)]
    pipeline = Pipeline([*robust_scaling(), ("pca", PCA(k, random_state=0))])
    return pipeline.fit(rows.astype(np.float64))


def test_fitted_on_the_training_pixels_only():
    values = _values()
    left = np.flatnonzero((np.arange(48) % 8) < 4)  # the left half of the grid
    fitted = fit_index_pca(values, left, 3)
    manual = _manual(values, left, 3)
    np.testing.assert_allclose(
        np.abs(fitted.named_steps["pca"].components_),
        np.abs(manual.named_steps["pca"].components_),
        rtol=1e-6,
        atol=1e-8,
    )
    everywhere = _manual(values, np.arange(48), 3)
    assert not np.allclose(
        np.abs(fitted.named_steps["pca"].components_),
        np.abs(everywhere.named_steps["pca"].components_),
        atol=1e-3,
    )


def test_projection_shape_and_clouds():
    values = _values()
    fitted = fit_index_pca(values, np.arange(48), 2)
    out = project(values, fitted)
    assert out.shape == (9, 2, 6, 8)
    assert np.isnan(out[2, :, 1, 1]).all()
    assert np.isfinite(np.delete(out.reshape(9, 2, -1), 9, axis=2)[[0, 1, 3]]).all()
    row = values[0, :, 3, 5][None].astype(np.float64)
    np.testing.assert_allclose(out[0, :, 3, 5], fitted.transform(row)[0], rtol=1e-5)


@pytest.mark.parametrize("k", [0, 8])
def test_component_count_checked(k):
    with pytest.raises(ProcessParameterInvalid, match="components"):
        fit_index_pca(_values(), np.arange(48), k)


def test_subsampled_rows_are_seeded():
    values = _values()
    a = fit_index_pca(values, np.arange(48), 2, max_rows=100, seed=1)
    b = fit_index_pca(values, np.arange(48), 2, max_rows=100, seed=1)
    np.testing.assert_array_equal(
        a.named_steps["pca"].components_, b.named_steps["pca"].components_
    )
