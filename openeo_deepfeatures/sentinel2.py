"""Sentinel-2 MSI Level-2A: band table, DN scaling by processing baseline, SCL masking.

Band labels follow the CDSE openEO collection ``SENTINEL2_L2A`` (``B01``..``B12``, ``B8A``,
``SCL``). Reflectance is ``(DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE`` with
``QUANTIFICATION_VALUE = 10000`` and ``BOA_ADD_OFFSET = -1000`` from processing baseline 04.00
(in operation since 2022-01-25), 0 before. DN 0 is nodata.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .errors import (
    BandMissing,
    DimensionNotAvailable,
    ProcessParameterInvalid,
)

__all__ = [
    "BANDS",
    "BASELINE_04_00_START",
    "DEFAULT_INVALID_SCL",
    "QUANTIFICATION_VALUE",
    "SCL_CLASSES",
    "Band",
    "boa_offset_for_baseline",
    "canonical_cube",
    "normalize_band_label",
    "preprocess_s2",
]

log = logging.getLogger(__name__)

QUANTIFICATION_VALUE = 10000.0
BOA_ADD_OFFSET_SINCE_04_00 = -1000.0
#: First acquisitions processed with baseline 04.00 (offset -1000) in the operational chain.
BASELINE_04_00_START = np.datetime64("2022-01-25")


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 MSI band: CDSE label, Awesome Spectral Indices symbol, S2A centre."""

    label: str
    asi: str
    common_name: str
    wavelength_nm: float  # Sentinel-2A central wavelength (ESA S2 spectral response v3)
    resolution_m: int


#: The L2A reflectance bands (B10 is not in L2A products). Wavelengths are the Sentinel-2A
#: central wavelengths as listed by Awesome Spectral Indices ``bands.json``.
BANDS: tuple[Band, ...] = (
    Band("B01", "A", "coastal", 442.7, 60),
    Band("B02", "B", "blue", 492.4, 10),
    Band("B03", "G", "green", 559.8, 10),
    Band("B04", "R", "red", 664.6, 10),
    Band("B05", "RE1", "rededge071", 704.1, 20),
    Band("B06", "RE2", "rededge075", 740.5, 20),
    Band("B07", "RE3", "rededge078", 782.8, 20),
    Band("B08", "N", "nir", 832.8, 10),
    Band("B8A", "N2", "nir08", 864.7, 20),
    Band("B09", "WV", "nir09", 945.1, 60),
    Band("B11", "S1", "swir16", 1613.7, 20),
    Band("B12", "S2", "swir22", 2202.4, 20),
)
BAND_BY_LABEL = {b.label: b for b in BANDS}
BAND_BY_ASI = {b.asi: b for b in BANDS}

#: Scene classification classes of the L2A SCL band.
SCL_CLASSES = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
#: SCL classes masked by default: no data, saturated, cloud shadow, clouds, cirrus.
DEFAULT_INVALID_SCL: tuple[int, ...] = (0, 1, 3, 8, 9, 10)

_ALIASES = {f"B{i}": f"B{i:02d}" for i in range(1, 13)} | {"B8a": "B8A", "b8a": "B8A"}
_BAND_DIMS = ("bands", "band")
_TIME_DIMS = ("t", "time")


def normalize_band_label(label: Hashable) -> Hashable:
    """Map common spellings (``B4``, ``b04``, ``B8a``) to the CDSE label (``B04``, ``B8A``)."""
    if not isinstance(label, str):
        return label
    if label in BAND_BY_LABEL or label == "SCL":
        return label
    up = label.upper()
    if up in BAND_BY_LABEL or up == "SCL":
        return up
    return _ALIASES.get(up, _ALIASES.get(label, label))


def canonical_cube(cube: object, process: str) -> xr.DataArray:
    """Return ``cube`` with openEO dimension names (``t``, ``bands``) and CDSE band labels.

    Accepts an :class:`xarray.DataArray` with a ``bands``/``band`` dimension, or an
    :class:`xarray.Dataset` whose data variables are the bands (all on one grid).
    """
    if isinstance(cube, xr.Dataset):
        cube = _dataset_to_cube(cube, process)
    if not isinstance(cube, xr.DataArray):
        raise ProcessParameterInvalid(
            process=process,
            parameter="data",
            reason=f"expected an xarray.DataArray with a 'bands' dimension, got {type(cube).__name__}.",
        )
    renames = {}
    band_dims = [d for d in _BAND_DIMS if d in cube.dims]
    if not band_dims:
        raise DimensionNotAvailable(
            reason=(
                f"process '{process}' needs a 'bands' (or 'band') dimension; the cube has "
                f"dimensions {tuple(cube.dims)}. Build one with e.g. "
                "`dataset.to_dataarray(dim='bands')`."
            )
        )
    if band_dims[0] != "bands":
        renames["band"] = "bands"
    if "time" in cube.dims and "t" not in cube.dims:
        renames["time"] = "t"
    if renames:
        cube = cube.rename(renames)
    labels = [normalize_band_label(b) for b in cube["bands"].values.tolist()]
    if len(set(labels)) != len(labels):
        raise ProcessParameterInvalid(
            process=process, parameter="data", reason=f"duplicate band labels {labels}."
        )
    return cube.assign_coords(bands=labels)


def _dataset_to_cube(ds: xr.Dataset, process: str) -> xr.DataArray:
    variables = [v for v in ds.data_vars if ds[v].ndim >= 2]
    if not variables:
        raise DimensionNotAvailable(
            reason=f"process '{process}': the dataset has no raster variables."
        )
    dims = {v: ds[v].dims for v in variables}
    first = dims[variables[0]]
    odd = [v for v in variables if dims[v] != first]
    if odd:
        raise ProcessParameterInvalid(
            process=process,
            parameter="data",
            reason=(
                f"bands {odd} are on a different grid {[dims[v] for v in odd]} than "
                f"{variables[0]} {first}. Resample all bands to one grid first (for example "
                "with rioxarray's `reproject_match` or odc-geo); this function does not resample."
            ),
        )
    cube = ds[variables].to_dataarray(dim="bands")
    time_dims = [d for d in _TIME_DIMS if d in cube.dims]
    return cube.transpose(*time_dims, "bands", ...)  # openEO order: t, bands, y, x


def boa_offset_for_baseline(baseline: object) -> float:
    """BOA_ADD_OFFSET for a processing baseline like ``"04.00"``, ``"N0400"`` or ``5.09``."""
    text = str(baseline).strip().upper().lstrip("N")
    try:
        if "." in text:
            value = float(text)
        elif text.isdigit() and len(text) == 4:
            value = int(text) / 100.0
        else:
            value = float(text)
    except ValueError:
        raise ProcessParameterInvalid(
            process="deepfeatures_preprocess_s2",
            parameter="processing_baseline",
            reason=f"cannot read processing baseline {baseline!r}; use e.g. '04.00' or 'N0400'.",
        ) from None
    return BOA_ADD_OFFSET_SINCE_04_00 if value >= 4.0 else 0.0


def _offsets(
    cube: xr.DataArray,
    boa_offset: float | None,
    processing_baseline: object,
) -> xr.DataArray | float:
    """The BOA offset per date, from the most explicit source available."""
    if boa_offset is not None:
        if isinstance(boa_offset, bool) or not isinstance(boa_offset, (int, float)):
            raise ProcessParameterInvalid(
                process="deepfeatures_preprocess_s2",
                parameter="boa_offset",
                reason=f"expected a number such as -1000 or 0, got {boa_offset!r}.",
            )
        return float(boa_offset)
    source: object = processing_baseline
    for name in ("processing_baseline", "s2:processing_baseline"):
        if source is None and name in cube.coords:
            source = cube.coords[name]
        if source is None and name in cube.attrs:
            source = cube.attrs[name]
    if source is not None:
        if isinstance(source, xr.DataArray):
            values = [boa_offset_for_baseline(v) for v in np.ravel(source.values)]
            return xr.DataArray(
                np.reshape(values, source.shape), dims=source.dims, coords=source.coords
            )
        if isinstance(source, (str, int, float)):
            return boa_offset_for_baseline(source)
        if isinstance(source, Sequence):
            if "t" not in cube.dims or len(source) != cube.sizes["t"]:
                raise ProcessParameterInvalid(
                    process="deepfeatures_preprocess_s2",
                    parameter="processing_baseline",
                    reason="a per-date list of baselines needs one entry per date of dimension 't'.",
                )
            return xr.DataArray([boa_offset_for_baseline(v) for v in source], dims=("t",))
        raise ProcessParameterInvalid(
            process="deepfeatures_preprocess_s2",
            parameter="processing_baseline",
            reason=f"expected a string, number or per-date list, got {type(source).__name__}.",
        )
    if "t" in cube.dims and np.issubdtype(cube["t"].dtype, np.datetime64):
        dates = cube["t"].values.astype("datetime64[D]")
        log.info(
            "No processing baseline given: BOA offset chosen by acquisition date "
            "(-1000 from %s). Pass processing_baseline= or boa_offset= for reprocessed data.",
            BASELINE_04_00_START,
        )
        return xr.DataArray(
            np.where(dates >= BASELINE_04_00_START, BOA_ADD_OFFSET_SINCE_04_00, 0.0),
            dims=("t",),
            coords={"t": cube["t"]},
        )
    raise ProcessParameterInvalid(
        process="deepfeatures_preprocess_s2",
        parameter="processing_baseline",
        reason=(
            "the cube has no dated 't' dimension and no processing baseline: pass "
            "processing_baseline='04.00' (or boa_offset=-1000 / 0)."
        ),
    )


def _dilate(mask: xr.DataArray, radius: int) -> xr.DataArray:
    """Binary dilation of a boolean (…, y, x) mask with a disk of ``radius`` pixels."""
    from scipy import ndimage

    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = (yy**2 + xx**2) <= radius**2
    footprint = disk.reshape((1,) * (mask.ndim - 2) + disk.shape)
    axes = (mask.get_axis_num("y"), mask.get_axis_num("x"))
    if axes != (mask.ndim - 2, mask.ndim - 1):
        mask = mask.transpose(..., "y", "x")

    def dilate(block: np.ndarray) -> np.ndarray:
        return ndimage.binary_dilation(block, structure=footprint)

    data = mask.data
    if hasattr(data, "map_overlap"):
        depth = {i: 0 for i in range(mask.ndim)} | {mask.ndim - 2: radius, mask.ndim - 1: radius}
        out = data.map_overlap(dilate, depth=depth, boundary="none", dtype=bool)
    else:
        out = dilate(np.asarray(data))
    return mask.copy(data=out)


def preprocess_s2(
    cube: xr.DataArray | xr.Dataset,
    *,
    boa_offset: float | None = None,
    processing_baseline: str | float | Sequence[str] | None = None,
    mask: bool = True,
    invalid_scl: Iterable[int] = DEFAULT_INVALID_SCL,
    dilation: int = 0,
    keep_scl: bool = False,
) -> xr.DataArray:
    """Sentinel-2 L2A digital numbers -> float32 surface reflectance, clouds masked.

    Parameters
    ----------
    cube
        DN cube with a ``bands`` (or ``band``) dimension labelled like CDSE ``SENTINEL2_L2A``
        (``B02``, ``B8A``, ``SCL``, …; ``B2`` and friends are accepted), or a Dataset whose
        variables are the bands. All bands must share one grid: resampling is the caller's job.
    boa_offset
        BOA_ADD_OFFSET to apply to every date (e.g. ``-1000``). Overrides everything else.
    processing_baseline
        Baseline (``"04.00"``, ``"N0509"``) for all dates, or one per date. Without it the
        coordinate or attribute ``processing_baseline`` / ``s2:processing_baseline`` is used, and
        failing that the acquisition date (-1000 from 2022-01-25).
    mask
        Set pixels whose SCL class is in ``invalid_scl`` to NaN in every band (needs ``SCL``).
    invalid_scl
        SCL classes to mask; default no data, saturated, cloud shadow, cloud medium/high, cirrus.
    dilation
        Grow the invalid mask by this many pixels (disk), per date.
    keep_scl
        Keep the ``SCL`` band (unscaled) in the output; by default it is dropped.

    Returns
    -------
    xarray.DataArray
        float32 reflectance, same dimensions, lazy when the input is dask-backed. DN 0 is NaN.
    """
    process = "deepfeatures_preprocess_s2"
    cube = canonical_cube(cube, process)
    labels = list(cube["bands"].values)
    if not (np.issubdtype(cube.dtype, np.floating) or np.issubdtype(cube.dtype, np.integer)):
        raise ProcessParameterInvalid(
            process=process, parameter="data", reason=f"unsupported dtype {cube.dtype}."
        )
    if isinstance(dilation, bool) or not isinstance(dilation, (int, np.integer)) or dilation < 0:
        raise ProcessParameterInvalid(
            process=process,
            parameter="dilation",
            reason=f"expected an integer >= 0, got {dilation!r}.",
        )
    invalid = sorted({int(c) for c in invalid_scl})
    if any(c not in SCL_CLASSES for c in invalid):
        raise ProcessParameterInvalid(
            process=process,
            parameter="invalid_scl",
            reason=f"SCL classes are 0..11, got {invalid}.",
        )
    reflective = [b for b in labels if b in BAND_BY_LABEL]
    unknown = [b for b in labels if b not in BAND_BY_LABEL and b != "SCL"]
    if unknown:
        raise ProcessParameterInvalid(
            process=process,
            parameter="data",
            reason=f"bands {unknown} are not Sentinel-2 L2A bands (expected {[b.label for b in BANDS]} and SCL).",
        )
    if not reflective:
        raise BandMissing(
            process=process, reason="no reflectance band (B01..B12, B8A) in the cube."
        )
    if mask and "SCL" not in labels:
        raise BandMissing(
            process=process,
            reason="cloud masking needs the 'SCL' band; load it too, or pass mask=False.",
        )
    offsets = _offsets(cube, boa_offset, processing_baseline)

    dn = cube.sel(bands=reflective)
    if np.issubdtype(dn.dtype, np.floating):
        dn = dn.astype(np.float32, copy=False)
    else:
        dn = dn.astype(np.float32)  # before adding the offset: no uint16 wrap-around
    quantification = np.float32(QUANTIFICATION_VALUE)
    if isinstance(offsets, xr.DataArray):
        offsets = offsets.astype(np.float32)
    else:
        offsets = np.float32(offsets)
    refl = ((dn + offsets) / quantification).where(dn != 0)
    if mask:
        scl = cube.sel(bands="SCL", drop=True)
        bad = scl.isin(invalid) | scl.isnull()
        if dilation:
            if not {"y", "x"} <= set(bad.dims):
                raise DimensionNotAvailable(
                    reason=f"process '{process}': dilation needs 'y' and 'x' dimensions, got {bad.dims}."
                )
            bad = _dilate(bad, int(dilation))
        refl = refl.where(~bad)
    refl = refl.astype(np.float32).transpose(*cube.dims)
    if keep_scl and "SCL" in labels:
        refl = xr.concat([refl, cube.sel(bands=["SCL"]).astype(np.float32)], dim="bands")
    dropped = ("scale_factor", "add_offset", "nodata", "_FillValue", "units")
    refl.attrs = {k: v for k, v in cube.attrs.items() if k not in dropped}
    refl.attrs["processing"] = (
        "deepfeatures_preprocess_s2: (DN + BOA_ADD_OFFSET) / 10000, SCL masked"
    )
    refl.name = cube.name
    return refl
