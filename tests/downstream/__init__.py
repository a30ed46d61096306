"""Downstream evaluation tests; the demo subset they share (computed once per session)."""

from __future__ import annotations

import functools

import openeo_deepfeatures as odf
from openeo_deepfeatures.downstream import demo_inputs

DEMO_BANDS = ["B02", "B03", "B04", "B08", "B8A", "B11"]
#: 2018 only: the year of the tree-cover target, 34 dates.
YEAR = ("2018-01-01", "2019-01-01")
#: a fixed handful of the computable indices, to keep the tests fast
INDICES = odf.list_indices(bands=DEMO_BANDS)[:24]


@functools.lru_cache(maxsize=1)
def demo_2018() -> dict:
    """Features (shipped model), 24 indices, reflectance of the 2018 demo dates, and the target.

    The features are computed on all dates, then cut (the encoder's temporal context).
    """
    inputs = demo_inputs()
    out = {}
    for key, cube in inputs.items():
        if key == "target":
            out[key] = cube
            continue
        if key == "si_cube":
            cube = odf.compute_indices(inputs["bands_cube"], INDICES)
        cube = cube.sel(t=slice(YEAR[0], "2018-12-31"))
        out[key] = cube.compute()
    return out
