"""Spatially blocked folds: no block on both sides, every pixel tested once, buffers, errors."""

from __future__ import annotations

import numpy as np
import pytest

from openeo_deepfeatures.downstream.folds import block_ids, spatial_folds
from openeo_deepfeatures.errors import ProcessParameterInvalid


def test_block_ids_cover_partial_edge_blocks():
    ids = block_ids((23, 17), 10)
    assert ids.shape == (23, 17)
    assert np.unique(ids).tolist() == list(range(6))  # 3 rows x 2 columns of blocks
    assert ids[0, 0] == 0 and ids[0, 16] == 1 and ids[22, 0] == 4 and ids[22, 16] == 5
    assert (ids[:10, :10] == 0).all() and (ids[20:, 10:] == 5).all()


def test_blocks_are_disjoint_and_every_pixel_is_tested_once():
    valid = np.ones((50, 50), dtype=bool)
    valid[:7, :] = False  # some missing target
    blocks = block_ids(valid.shape, 10).ravel()
    folds = spatial_folds(valid, block=10, n_splits=5, seed=3)
    assert len(folds) == 5
    tested = np.concatenate([f.test for f in folds])
    assert np.sort(tested).tolist() == np.flatnonzero(valid).tolist()
    for fold in folds:
        assert not set(fold.train) & set(fold.test)
        # no spatial leakage: the blocks of training and test pixels are disjoint
        assert not set(blocks[fold.train]) & set(blocks[fold.test])
        assert set(blocks[fold.test]) == set(fold.test_blocks)
        assert valid.ravel()[fold.train].all() and valid.ravel()[fold.test].all()
        # without a buffer, everything valid that is not tested is trained on
        assert fold.train.size + fold.test.size == valid.sum()


def test_buffer_keeps_training_pixels_away_from_test_pixels():
    valid = np.ones((40, 40), dtype=bool)
    folds = spatial_folds(valid, block=10, n_splits=4, buffer=3, seed=0)
    for fold in folds:
        ty, tx = np.divmod(fold.test, 40)
        ry, rx = np.divmod(fold.train, 40)
        chebyshev = np.maximum(np.abs(ry[:, None] - ty), np.abs(rx[:, None] - tx)).min(axis=1)
        assert chebyshev.min() == 4
    unbuffered = spatial_folds(valid, block=10, n_splits=4, buffer=0, seed=0)
    assert all(b.train.size < u.train.size for b, u in zip(folds, unbuffered, strict=True))


def test_deterministic_by_seed():
    valid = np.ones((50, 50), dtype=bool)
    a = spatial_folds(valid, seed=1)
    b = spatial_folds(valid, seed=1)
    c = spatial_folds(valid, seed=2)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.test, y.test) for x, y in zip(a, c, strict=True))


def test_too_few_blocks_with_valid_pixels():
    valid = np.zeros((50, 50), dtype=bool)
    valid[:10, :30] = True  # three blocks
    with pytest.raises(ProcessParameterInvalid, match=r"in 3 blocks.*at least 5 blocks"):
        spatial_folds(valid, block=10, n_splits=5)


def test_too_few_valid_pixels_per_fold():
    valid = np.zeros((50, 50), dtype=bool)
    valid[::10, ::10] = True  # one pixel per block: 5 test pixels per fold
    with pytest.raises(ProcessParameterInvalid, match=r"fold 0 has 5 valid test"):
        spatial_folds(valid, block=10, n_splits=5)


@pytest.mark.parametrize(
    ("options", "parameter"),
    [({"block": 0}, "block"), ({"n_splits": 1}, "n_splits"), ({"buffer": -1}, "buffer")],
)
def test_bad_options(options, parameter):
    with pytest.raises(ProcessParameterInvalid, match=parameter):
        spatial_folds(np.ones((20, 20), dtype=bool), **options)
