"""The cubes an evaluation compares, made from one Sentinel-2 L2A cube (or the embedded demo).

``evaluate(**demo_inputs())`` runs the demo evaluation: the default encoder's features of the
demo cube, all spectral indices computable from its bands, its reflectance, and the 2018
tree-cover density on the same grid. Everything stays lazy until :func:`evaluate` loads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .options import PROCESS

__all__ = ["demo_inputs", "inputs_from_s2"]


def inputs_from_s2(
    s2_cube: xr.DataArray | xr.Dataset,
    *,
    features: xr.DataArray | None = None,
    model: Any = None,
) -> dict[str, xr.DataArray]:
    """``features``, ``si_cube`` and ``bands_cube`` (keyword arguments of :func:`evaluate`).

    ``s2_cube``: Sentinel-2 L2A, DN with ``SCL`` (preprocessed: reflectance, clouds NaN) or
    reflectance. ``si_cube``: every index computable from its bands. ``features``: given, or
    computed with ``model`` (default: the shipped model).
    """
    from ..features import feature_cube
    from ..indices import compute_indices
    from ..sentinel2 import canonical_cube, preprocess_s2

    cube = canonical_cube(s2_cube, PROCESS)
    labels = [str(b) for b in cube["bands"].values.tolist()]
    if "SCL" in labels or np.issubdtype(cube.dtype, np.integer):
        reflectance = preprocess_s2(cube, mask="SCL" in labels)
    else:
        reflectance = cube
    if features is None:
        features = feature_cube(cube, model=model)
    return {
        "features": features,
        "si_cube": compute_indices(reflectance),
        "bands_cube": reflectance,
    }


def demo_inputs(
    *, features: xr.DataArray | None = None, model: Any = None
) -> dict[str, xr.DataArray]:
    """:func:`inputs_from_s2` of the embedded demo cube, with its tree-cover ``target``."""
    from ..data import load_demo_cube, load_demo_tree_cover

    inputs = inputs_from_s2(load_demo_cube(), features=features, model=model)
    inputs["target"] = load_demo_tree_cover()
    return inputs
