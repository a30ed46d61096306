"""PCA of the spectral indices per pixel and date: the linear baseline of the encoder.

Like the encoder, the PCA reduces the index channels of each clear pixel-date to ``k``
values, after the same kind of normalisation (median fill of missing channels, 2-98 % range
scaling, clipping). It is fitted on the pixel-dates of the training pixels of one fold only;
the projection of every pixel-date (NaN where the date is cloudy) is then summarised over time
like the features.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline

from ..errors import ProcessParameterInvalid
from .models import robust_scaling
from .options import PROCESS

__all__ = ["MAX_ROWS", "fit_index_pca", "project"]

#: Pixel-dates the PCA is fitted on at most (a seeded random subset beyond that).
MAX_ROWS = 50_000


def _rows(values: np.ndarray, pixels: np.ndarray | None) -> np.ndarray:
    """``(t, c, y, x)`` -> ``(t * n, c)`` rows of the given flat pixels (all when None).

    Non-finite values (an index's division by zero) become NaN: missing, like clouds.
    """
    t, c = values.shape[:2]
    flat = values.reshape(t, c, -1)
    if pixels is not None:
        flat = flat[:, :, pixels]
    rows = np.moveaxis(flat, 1, 2).reshape(-1, c)
    return np.where(np.isfinite(rows), rows, np.nan)


def _clear(rows: np.ndarray) -> np.ndarray:
    """Rows (pixel-dates) with at least one finite channel: cloudy ones are NaN throughout."""
    return np.isfinite(rows).any(axis=1)


def fit_index_pca(
    values: np.ndarray,
    train: np.ndarray,
    n_components: int,
    *,
    seed: int = 0,
    max_rows: int = MAX_ROWS,
) -> Pipeline:
    """Fit normalisation + PCA on the clear pixel-dates of the ``train`` pixels.

    ``values``: index cube ``(t, c, y, x)``; ``train``: flat (row-major ``(y, x)``) indices of the
    training pixels. Non-finite index values count as missing.
    """
    if not 1 <= n_components <= values.shape[1]:
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="pca_components",
            reason=f"{n_components} components of {values.shape[1]} indices: use 1..{values.shape[1]}.",
        )
    rows = _rows(values, np.asarray(train))
    rows = rows[_clear(rows)]
    if rows.shape[0] < n_components:
        raise ProcessParameterInvalid(
            process=PROCESS,
            parameter="si_cube",
            reason=f"only {rows.shape[0]} clear pixel-dates to fit a {n_components}-component PCA.",
        )
    if rows.shape[0] > max_rows:
        keep = np.random.default_rng(seed).choice(rows.shape[0], size=max_rows, replace=False)
        rows = rows[np.sort(keep)]
    pipeline = Pipeline([*robust_scaling(), ("pca", PCA(n_components, random_state=seed))])
    return pipeline.fit(rows.astype(np.float64))


def project(values: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """Project every pixel-date of ``values`` ``(t, c, y, x)``: ``(t, k, y, x)``, NaN if cloudy."""
    t, _, *spatial = values.shape
    rows = _rows(values, None)
    clear = _clear(rows)
    out = np.full((rows.shape[0], pipeline.named_steps["pca"].n_components_), np.nan, np.float32)
    out[clear] = pipeline.transform(rows[clear].astype(np.float64))
    n_pixels = int(np.prod(spatial))
    return np.moveaxis(out.reshape(t, n_pixels, -1), 2, 1).reshape(t, -1, *spatial)
