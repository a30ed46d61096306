"""Native implementations of the deepfeatures openEO processes.

One function per process; its name and parameters equal the spec in ``specs/<id>.json``
(a test binds them). Each calls the native API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from ..indices import compute_indices
from ..sentinel2 import DEFAULT_INVALID_SCL, preprocess_s2

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
    boa_offset: float | None = None,
    processing_baseline: str | float | Sequence[str | float] | None = None,
    mask: bool = True,
    invalid_scl: Sequence[int] = DEFAULT_INVALID_SCL,
    dilation: int = 0,
) -> xr.DataArray:
    return preprocess_s2(
        data,
        boa_offset=boa_offset,
        processing_baseline=processing_baseline,
        mask=mask,
        invalid_scl=invalid_scl,
        dilation=dilation,
    )


def _model(model: str | None) -> str | None:
    """A local path for ``model``: URLs are downloaded once into the user cache."""
    if model is None or not str(model).startswith(("https://", "http://")):
        return model
    from ..encoder.download import cached_model

    return str(cached_model(model))


def deepfeatures_embed(data: xr.DataArray, model: str | None = None) -> xr.DataArray:
    from ..feature_cube import embed

    return embed(data, _model(model))


def deepfeatures_feature_cube(data: xr.DataArray, model: str | None = None) -> xr.DataArray:
    from ..feature_cube import feature_cube

    return feature_cube(data, _model(model))
