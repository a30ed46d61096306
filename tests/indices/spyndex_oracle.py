"""spyndex as an independent oracle: same catalogue release, same constants."""

from __future__ import annotations

import warnings

import numpy as np
import spyndex

from openeo_deepfeatures.indices.resolve import ResolvedIndex


def spyndex_index(index: ResolvedIndex, bands: dict[str, np.ndarray]) -> np.ndarray:
    """Compute one index with spyndex in float64; non-finite results become NaN."""
    params: dict[str, object] = {}
    for symbol, label in index.bands.items():
        params[symbol] = bands[label].astype(np.float64)
    params.update(index.constants)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for symbol, (a, b) in index.kernels.items():
            va, vb = (params[a] if a in params else bands_value(a, bands)), params.get(b)
            va = np.asarray(va, dtype=np.float64)
            vb = np.asarray(vb, dtype=np.float64)
            params[symbol] = spyndex.computeKernel(
                "RBF", params={"a": va, "b": vb, "sigma": 0.5 * (va + vb)}
            )
        if index.name in spyndex.indices:
            value = spyndex.computeIndex(index.name, params=params)
        else:
            raise KeyError(index.name)
    value = np.asarray(value, dtype=np.float64)
    value = np.broadcast_to(value, next(iter(bands.values())).shape).copy()
    value[~np.isfinite(value)] = np.nan
    return value


def bands_value(symbol: str, bands: dict[str, np.ndarray]) -> np.ndarray:
    raise KeyError(symbol)
