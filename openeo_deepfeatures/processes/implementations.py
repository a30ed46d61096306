"""Native implementations of the deepfeatures openEO processes.

One function per process; its name and parameters equal the spec in ``specs/<id>.json``
(a test binds them). Each calls the native API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from ..indices import compute_indices
from ..sentinel2 import DEFAULT_INVALID_SCL, canonical_cube, preprocess_s2

__all__ = [
    "deepfeatures_embed",
    "deepfeatures_feature_cube",
    "deepfeatures_preprocess_s2",
    "deepfeatures_spectral_indices",
]


def deepfeatures_spectral_indices(
    data: xr.DataArray,
    indices: Sequence[str] | None = None,
    constants: Mapping[str, Any] | None = None,
    formulas: Mapping[str, str] | None = None,
) -> xr.DataArray:
    return compute_indices(data, indices, constants=constants, formulas=formulas)


def deepfeatures_preprocess_s2(
    data: xr.DataArray,
    bands: Sequence[str] | None = None,
    boa_offset: float | None = None,
    processing_baseline: str | float | Sequence[str | float] | None = None,
    mask: bool = True,
    invalid_scl: Sequence[int] = DEFAULT_INVALID_SCL,
    dilation: int = 0,
) -> xr.DataArray:
    if bands is not None:
        data = _filter_bands(data, [*bands, "SCL"] if mask else bands)
    return preprocess_s2(
        data,
        boa_offset=boa_offset,
        processing_baseline=processing_baseline,
        mask=mask,
        invalid_scl=invalid_scl,
        dilation=dilation,
    )


def _model(model: str | None, sha256: str | None):
    """The encoder of ``model``: URLs are downloaded once into the user cache; ``sha256``
    (when given) must match the file. Paths and URLs go through the run's execution policy."""
    from ..encoder import load_encoder
    from ..encoder.selection import SHIPPED_MODELS
    from ..policy import current_policy

    if model is not None:
        text = str(model)
        if "://" in text and not text.lower().startswith("file:"):
            from ..encoder.download import cached_model

            model = str(cached_model(text, policy=current_policy()))
        elif text not in SHIPPED_MODELS:  # shipped models by name are package data
            model = str(current_policy().check_read(text, what="the model"))
    return load_encoder(model, sha256=sha256)


def deepfeatures_embed(
    data: xr.DataArray, model: str | None = None, model_sha256: str | None = None
) -> xr.DataArray:
    from ..features import embed

    return embed(data, model=_model(model, model_sha256))


def deepfeatures_feature_cube(
    data: xr.DataArray, model: str | None = None, model_sha256: str | None = None
) -> xr.DataArray:
    from ..features import feature_cube

    # no model named: the shipped model whose bands the cube has
    chosen = None if model is None and model_sha256 is None else _model(model, model_sha256)
    return feature_cube(data, model=chosen)


def _filter_bands(data: xr.DataArray, bands: Sequence[str]) -> xr.DataArray:
    """``data`` with the ``bands`` labels only (BandMissing names the absent ones)."""
    from ..cube_input import format_labels
    from ..errors import BandMissing

    cube = canonical_cube(data, "deepfeatures_preprocess_s2")
    have = [str(b) for b in cube["bands"].values]
    missing = [b for b in bands if b not in have]
    if missing:
        raise BandMissing(
            process="deepfeatures_preprocess_s2",
            reason=f"the cube has no band(s) {format_labels(missing)}; it has {format_labels(have)}.",
        )
    return cube.sel(bands=list(bands))
