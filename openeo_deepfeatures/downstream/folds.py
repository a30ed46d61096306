"""Spatially blocked cross-validation folds over the pixels of a 2-D grid.

The grid is cut into square blocks of ``block`` x ``block`` pixels; whole blocks go to folds
(:class:`sklearn.model_selection.GroupKFold` with the block as group, shuffled with a seed), so a
test pixel never has a training pixel from its own block. ``buffer`` additionally removes from
training every pixel within ``buffer`` pixels (Chebyshev distance) of a test pixel, for targets
whose spatial autocorrelation reaches beyond a block border.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.model_selection import GroupKFold

from ..errors import ProcessParameterInvalid
from .options import PROCESS

__all__ = ["MIN_TEST_PIXELS", "MIN_TRAIN_PIXELS", "Fold", "block_ids", "spatial_folds"]

#: Fewest valid target pixels a fold's test set may have.
MIN_TEST_PIXELS = 10
#: Fewest valid target pixels a fold's training set may have.
MIN_TRAIN_PIXELS = 30


@dataclass(frozen=True)
class Fold:
    """One split: flat pixel indices (row-major over ``(y, x)``) and the blocks on each side."""

    index: int
    train: np.ndarray
    test: np.ndarray
    train_blocks: np.ndarray
    test_blocks: np.ndarray


def _invalid(reason: str, parameter: str = "target") -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=PROCESS, parameter=parameter, reason=reason)


def block_ids(shape: tuple[int, int], block: int) -> np.ndarray:
    """``(y, x)`` int array: the row-major number of the ``block`` x ``block`` square of a pixel."""
    if int(block) != block or block < 1:
        raise _invalid(f"block must be a positive number of pixels, not {block!r}.", "block")
    ny, nx = shape
    per_row = -(-nx // block)
    rows = np.arange(ny)[:, None] // block
    cols = np.arange(nx)[None, :] // block
    return (rows * per_row + cols).astype(np.int64)


def spatial_folds(
    valid: np.ndarray,
    *,
    block: int = 10,
    n_splits: int = 5,
    buffer: int = 0,
    seed: int = 0,
) -> list[Fold]:
    """Blocked folds over the pixels where ``valid`` (a ``(y, x)`` bool array) is true.

    Every valid pixel is tested exactly once. Raises
    :class:`~openeo_deepfeatures.errors.ProcessParameterInvalid` when the valid pixels are too
    few or too clustered for ``n_splits`` folds (fewer blocks with valid pixels than folds, fewer
    than ``MIN_TEST_PIXELS`` test or ``MIN_TRAIN_PIXELS`` training pixels in a fold, or training
    pixels in fewer than two blocks, which the inner cross-validation of ridge needs).
    """
    valid = np.asarray(valid, dtype=bool)
    if valid.ndim != 2:
        raise _invalid(f"the valid-pixel mask must be 2-D (y, x), not {valid.ndim}-D.")
    if int(n_splits) != n_splits or n_splits < 2:
        raise _invalid(f"n_splits must be an integer >= 2, not {n_splits!r}.", "n_splits")
    if int(buffer) != buffer or buffer < 0:
        raise _invalid(f"buffer must be a number of pixels >= 0, not {buffer!r}.", "buffer")
    blocks = block_ids(valid.shape, block)
    pixels = np.flatnonzero(valid)
    groups = blocks.ravel()[pixels]
    n_blocks = np.unique(groups).size
    if n_blocks < n_splits:
        raise _invalid(
            f"{pixels.size} valid target pixels in {n_blocks} blocks of {block} x {block} px: a "
            f"blocked {n_splits}-fold cross-validation needs valid pixels in at least {n_splits} "
            "blocks. Use a larger target area, smaller blocks or fewer folds."
        )
    splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    square = np.ones((2 * buffer + 1, 2 * buffer + 1), dtype=bool)
    folds = []
    for i, (train_pos, test_pos) in enumerate(splitter.split(pixels, groups=groups)):
        train, test = pixels[train_pos], pixels[test_pos]
        if buffer:
            test_mask = np.zeros(valid.size, dtype=bool)
            test_mask[test] = True
            near = ndimage.binary_dilation(test_mask.reshape(valid.shape), structure=square)
            train = train[~near.ravel()[train]]
        n_train_blocks = np.unique(blocks.ravel()[train]).size
        if test.size < MIN_TEST_PIXELS or train.size < MIN_TRAIN_PIXELS or n_train_blocks < 2:
            raise _invalid(
                f"fold {i} has {test.size} valid test and {train.size} training pixels in "
                f"{n_train_blocks} blocks (at least {MIN_TEST_PIXELS} test and "
                f"{MIN_TRAIN_PIXELS} training pixels in 2 blocks needed; {pixels.size} valid "
                f"target pixels in all). Use a larger target area, fewer folds"
                f"{' or a smaller buffer' if buffer else ''}."
            )
        folds.append(
            Fold(
                index=i,
                train=np.sort(train),
                test=np.sort(test),
                train_blocks=np.unique(blocks.ravel()[train]),
                test_blocks=np.unique(blocks.ravel()[test]),
            )
        )
    return folds
