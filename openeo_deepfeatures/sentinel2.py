"""Sentinel-2 MSI Level-2A: band table, DN scaling by processing baseline, SCL masking.

Band labels follow the CDSE openEO collection ``SENTINEL2_L2A`` (``B01``..``B12``, ``B8A``,
``SCL``). Reflectance is ``(DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE`` with
``QUANTIFICATION_VALUE = 10000`` and ``BOA_ADD_OFFSET = -1000`` from processing baseline 04.00
(in operation since 2022-01-25), 0 before. DN 0 is nodata.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import xarray as xr

from .bands import (
    BAND_BY_ASI,
    BAND_BY_LABEL,
    BANDS,
    DEFAULT_INVALID_SCL,
    SCL_CLASSES,
    Band,
    normalize_band_label,
)
from .cube_input import VALUES_ATTR, canonical_cube, declared_nodata, format_labels
from .errors import (
    BandMissing,
    DimensionNotAvailable,
    ProcessParameterInvalid,
)

__all__ = [
    "BANDS",
    "BAND_BY_ASI",
    "BAND_BY_LABEL",
    "BASELINE_04_00_START",
    "DEFAULT_INVALID_SCL",
    "NODATA_DN",
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
#: Digital numbers that are never reflectance: 0 (no data in L2A products) and 65535 (the
#: no-data value of many openEO/CDSE and WorldCereal exports, and of saturated pixels).
NODATA_DN: tuple[int, ...] = (0, 65535)


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
    mask: bool | str = "auto",
    invalid_scl: Iterable[int] = DEFAULT_INVALID_SCL,
    dilation: int = 0,
    keep_scl: bool = False,
) -> xr.DataArray:
    """Sentinel-2 L2A digital numbers -> float32 surface reflectance, clouds masked.

    Parameters
    ----------
    cube
        DN cube with a ``bands`` (or ``band``) dimension, or a Dataset whose variables are the
        bands, as openEO backends write them: ``B02``, ``B2``, ``S2-L2A-B02``, ``B02_10m`` and
        STAC common names (``blue``, ``nir``) are understood (see
        :mod:`openeo_deepfeatures.cube_input`). Bands that are not Sentinel-2 L2A bands (``AOT``,
        ``WVP``, ``CLP``, angles) are dropped with one INFO line. All bands must share one grid:
        resampling is the caller's job.
    boa_offset
        BOA_ADD_OFFSET to apply to every date (e.g. ``-1000``). Overrides everything else.
    processing_baseline
        Baseline (``"04.00"``, ``"N0509"``) for all dates, or one per date. Without it the
        coordinate or attribute ``processing_baseline`` / ``s2:processing_baseline`` is used, and
        failing that the acquisition date (-1000 from 2022-01-25).
    mask
        ``"auto"`` (default): mask clouds with ``SCL`` when the cube has it, else say so once
        (WARNING) and mask nothing. ``True``: set pixels whose SCL class is in ``invalid_scl``
        (or outside the classes 0..11) to NaN in every band; needs ``SCL``. ``False``: no mask.
    invalid_scl
        SCL classes to mask; default no data, saturated, cloud shadow, cloud medium/high, cirrus.
    dilation
        Grow the invalid mask by this many pixels (disk), per date.
    keep_scl
        Keep the ``SCL`` band (unscaled) in the output; by default it is dropped.

    Returns
    -------
    xarray.DataArray
        float32 reflectance, same dimensions, lazy when the input is dask-backed. No-data is
        NaN: DN 0 and 65535, and the values the input declares (``_FillValue``,
        ``missing_value``, ``nodata``). Input already in reflectance (decoded with a CF
        ``scale_factor``) is masked but not scaled again.
    """
    process = "deepfeatures_preprocess_s2"
    cube = canonical_cube(cube, process)
    labels = [str(b) for b in cube["bands"].values]
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
    if mask not in (True, False, "auto"):
        raise ProcessParameterInvalid(
            process=process,
            parameter="mask",
            reason=f"expected true, false or 'auto', got {mask!r}.",
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
        log.info(
            "%s: bands %s are not Sentinel-2 L2A reflectance bands: dropped.",
            process,
            format_labels(unknown),
        )
    if not reflective:
        raise BandMissing(
            process=process,
            reason=(
                f"no Sentinel-2 reflectance band (B01..B12, B8A) in the cube; it has "
                f"{format_labels(labels)}. Load e.g. B02, B03, B04, B08 (and SCL)."
            ),
        )
    has_scl = "SCL" in labels
    if mask is True and not has_scl:
        raise BandMissing(
            process=process,
            reason=(
                f"cloud masking needs the 'SCL' band; the cube has {format_labels(labels)}. "
                "Load SCL too, or pass mask='auto' or mask=False to go without a cloud mask."
            ),
        )
    if mask == "auto" and not has_scl:
        log.warning(
            "%s: the cube has no SCL band (%s): clouds are NOT masked. Load SCL to mask them.",
            process,
            format_labels(labels),
        )
    use_mask = bool(mask) and has_scl
    already_reflectance = cube.attrs.get(VALUES_ATTR) == "reflectance"
    offsets = 0.0 if already_reflectance else _offsets(cube, boa_offset, processing_baseline)

    dn = cube.sel(bands=reflective)
    if np.issubdtype(dn.dtype, np.floating):
        dn = dn.astype(np.float32, copy=False)
    else:
        dn = dn.astype(np.float32)  # before adding the offset: no uint16 wrap-around
    nodata = [float(v) for v in (*NODATA_DN, *declared_nodata(cube))]
    if already_reflectance:
        refl = dn  # decoded with a CF scale factor: no-data is NaN already
    else:
        quantification = np.float32(QUANTIFICATION_VALUE)
        if isinstance(offsets, xr.DataArray):
            offsets = offsets.astype(np.float32)
        else:
            offsets = np.float32(offsets)
        refl = ((dn + offsets) / quantification).where(~dn.isin(sorted(set(nodata))))
    if use_mask:
        scl = cube.sel(bands="SCL", drop=True)
        bad = scl.isin(invalid) | scl.isnull() | ~scl.isin(list(SCL_CLASSES))
        if dilation:
            if not {"y", "x"} <= set(bad.dims):
                raise DimensionNotAvailable(
                    reason=f"process '{process}': dilation needs 'y' and 'x' dimensions, got {bad.dims}."
                )
            bad = _dilate(bad, int(dilation))
        refl = refl.where(~bad)
    refl = refl.astype(np.float32).transpose(*cube.dims)
    if keep_scl and has_scl:
        refl = xr.concat([refl, cube.sel(bands=["SCL"]).astype(np.float32)], dim="bands")
    dropped = ("scale_factor", "add_offset", "nodata", "_FillValue", "missing_value", "units")
    refl.attrs = {
        k: v
        for k, v in cube.attrs.items()
        if k not in dropped and not k.startswith("deepfeatures_")
    }
    scaling = (
        "reflectance as given (CF scale_factor)"
        if already_reflectance
        else "(DN + BOA_ADD_OFFSET) / 10000"
    )
    masking = "SCL masked" if use_mask else "no cloud mask"
    refl.attrs["processing"] = f"deepfeatures_preprocess_s2: {scaling}, {masking}"
    refl.name = cube.name
    return refl
