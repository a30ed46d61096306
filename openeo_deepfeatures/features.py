"""Feature Data Cubes: Sentinel-2 in, features out, written as zarr + STAC + a quicklook.

:func:`feature_cube` chains DN -> reflectance (:func:`~openeo_deepfeatures.preprocess_s2`) ->
the spectral indices the model's contract asks for (:func:`~openeo_deepfeatures.compute_indices`)
-> :func:`embed`, lazily end to end. :func:`write_feature_cube` writes the result atomically as
zarr (v3, CRS as a CF grid mapping, provenance attributes), a STAC Item (datacube and
projection extensions) and a quicklook PNG (three features as RGB, and their time series).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
import pandas as pd
import xarray as xr

from .errors import ProcessParameterInvalid
from .versions import software_versions

if TYPE_CHECKING:
    from .encoder import Encoder

__all__ = [
    "FeatureCubeFiles",
    "embed",
    "feature_cube",
    "quicklook",
    "write_feature_cube",
]

#: What ``model=`` accepts: an opened encoder, an ONNX path, a shipped model's name, or None.
Model = Union["Encoder", str, os.PathLike, None]
#: What ``tile=`` accepts: pixels in y and x, or sizes per dimension (``t``, ``y``, ``x``).
Tile = int | Mapping[str, int | None] | None

PROVENANCE_ATTR = "deepfeatures_provenance"
#: Coordinate on ``t`` of a feature cube: the share of pixels with data per date.
VALID_FRACTION = "valid_fraction"
VALID_FRACTION_DESCRIPTION = "share of pixels with data (not masked, in any band) per date, 0..1"
#: The quicklook's time series shows dates with at least this ``valid_fraction``.
QUICKLOOK_MIN_VALID = 0.5
_VERSIONS = ("openeo-deepfeatures", "onnxruntime", "numpy", "xarray", "dask", "zarr")


def embed(
    si_cube: xr.DataArray,
    *,
    model: Model = None,
    providers: Sequence[str] | None = None,
    tile: Tile = None,
    threads: int | None = None,
    batch_size: int | None = None,
) -> xr.DataArray:
    """Features ``(t, bands=F01..Fk, y, x)`` float32 of a spectral-index cube.

    ``model``: an :class:`~openeo_deepfeatures.encoder.Encoder` (see
    :func:`~openeo_deepfeatures.load_encoder`), the path of an ONNX encoder, a shipped model's
    name (``"default"``, ``"s2-10m"``), or None for the default model. Its contract decides
    the channels (picked by name from ``bands``), their normalisation, the spatial halo and
    the temporal context.

    ``providers``: onnxruntime execution providers in order of preference (default CUDA when
    available, else CPU). ``tile``: pixels in y and x (an int) or ``{"t": dates, "y": px,
    "x": px}`` (``"t": None``: the whole series in one tile). ``threads``: onnxruntime
    intra-op threads per session. ``batch_size``: windows per onnxruntime call (patch models
    only). See :func:`openeo_deepfeatures.encoder.inference.embed` for the details.
    """
    from .encoder.inference import embed as run

    return run(
        si_cube, model, providers=providers, tile=tile, threads=threads, batch_size=batch_size
    )


def _needs_preprocessing(cube: xr.DataArray) -> bool:
    from .cube_input import VALUES_ATTR

    bands = {str(b) for b in cube["bands"].values}
    return (
        "SCL" in bands
        or np.issubdtype(cube.dtype, np.integer)
        or cube.attrs.get(VALUES_ATTR) in ("DN", "reflectance")
    )


def feature_cube(
    s2_cube: xr.DataArray | xr.Dataset,
    *,
    model: Model = None,
    providers: Sequence[str] | None = None,
    preprocess: bool | None = None,
    mask: bool | Literal["auto"] = "auto",
    tile: Tile = None,
    threads: int | None = None,
    batch_size: int | None = None,
) -> xr.DataArray:
    """Sentinel-2 L2A cube -> Feature Data Cube, lazy end to end.

    ``s2_cube``: DN or reflectance, as a DataArray with a ``bands`` dimension or a Dataset
    with one variable per band, in the spellings openEO backends write (``B02``,
    ``S2-L2A-B02``, ``B02_10m``, ``blue``; see :mod:`openeo_deepfeatures.cube_input`); bands
    the job does not need (``AOT``, ``WVP``, angles) are ignored.

    ``model``: an :class:`~openeo_deepfeatures.encoder.Encoder`, an ONNX path, a shipped
    model's name (``"default"``, ``"s2-10m"``), or None: the first shipped model whose bands
    the cube has (an INFO line says which). A model that needs bands the cube lacks is a
    :class:`~openeo_deepfeatures.errors.BandMissing` naming those bands.

    ``preprocess``: DN -> reflectance and cloud mask first (default: when the cube has an
    ``SCL`` band, integer values, or metadata saying what its values are). ``mask``: the
    cloud mask of :func:`~openeo_deepfeatures.preprocess_s2` (``"auto"``: with SCL when the
    cube has it). ``tile``, ``threads``, ``batch_size``, ``providers``: see :func:`embed`.
    Only the spectral indices the model needs are computed, tile by tile inside the
    embedding (:func:`~openeo_deepfeatures.encoder.inference.embed_reflectance`), so memory
    is bounded by the tile size.

    The result has a coordinate ``valid_fraction`` on ``t``: the share of pixels with data
    (not masked, in any band) per date. The features are defined everywhere, clouds
    included (see :func:`embed`), so this is what tells a clear date from a cloudy one; the
    quicklook shows the clearest date.
    """
    from .bands import BAND_BY_LABEL
    from .cube_input import canonical_cube
    from .encoder.inference import embed_reflectance
    from .encoder.loader import as_encoder
    from .encoder.selection import check_bands, choose_encoder
    from .sentinel2 import preprocess_s2

    process = "feature_cube"
    cube = canonical_cube(s2_cube, process)
    present = [str(b) for b in cube["bands"].values]
    reflective = [b for b in present if b in BAND_BY_LABEL]
    if model is None:
        encoder = choose_encoder(present, process=process, providers=providers)
    else:
        encoder = as_encoder(model, process=process)
        check_bands(encoder, present, process=process)
    if preprocess if preprocess is not None else _needs_preprocessing(cube):
        cube = preprocess_s2(cube, mask=mask)
    else:
        cube = cube.sel(bands=reflective)
    # the indices are computed inside each tile: the index cube never exists whole
    features = embed_reflectance(
        cube, encoder, providers=providers, threads=threads, tile=tile, batch_size=batch_size
    )
    valid = cube.notnull().any("bands").mean(("y", "x"), dtype=np.float32)
    valid.attrs["long_name"] = VALID_FRACTION_DESCRIPTION
    return features.assign_coords({VALID_FRACTION: valid})


@dataclass(frozen=True)
class FeatureCubeFiles:
    """What :func:`write_feature_cube` wrote."""

    zarr: Path
    item: Path | None
    quicklook: Path | None


def provenance(features: xr.DataArray, source: str | None) -> dict[str, Any]:
    """Where a feature cube comes from: model, channels, software, input, time."""
    attrs = features.attrs
    channels = attrs.get("channels")
    return {
        "model": attrs.get("model_name"),
        "model_version": attrs.get("model_version"),
        "model_family": attrs.get("model_family"),
        "model_sha256": attrs.get("model_sha256"),
        "channels": channels.split(",") if isinstance(channels, str) else channels,
        "features": [str(b) for b in features["bands"].values],
        "input": source,
        "software": software_versions(_VERSIONS),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_feature_cube(
    features: xr.DataArray,
    path: str | Path,
    *,
    overwrite: bool = False,
    stac: bool = True,
    quicklook_png: bool = True,
    source: str | None = None,
    progress: bool = False,
) -> FeatureCubeFiles:
    """Write ``features`` to ``path`` (zarr v3) with ``<stem>.stac.json`` and ``<stem>.png``.

    Each file is written to a temporary name and moved into place; if a later file fails,
    the ones already written are removed again, so a failure leaves nothing behind.
    """
    from .io import write_zarr
    from .stac import write_item

    path = Path(path)
    if path.suffix != ".zarr":
        raise ProcessParameterInvalid(
            process="write_feature_cube", parameter="path", reason=f"{path}: use a .zarr path."
        )
    item_path = path.with_suffix(".stac.json") if stac else None
    png_path = path.with_suffix(".png") if quicklook_png else None
    for other in (item_path, png_path):
        if other is not None and other.exists() and not overwrite:
            raise ProcessParameterInvalid(
                process="write_feature_cube",
                parameter="path",
                reason=f"{other} exists; pass overwrite=True.",
            )
    out = features.copy()
    out.attrs = dict(features.attrs)
    out.attrs[PROVENANCE_ATTR] = json.dumps(provenance(features, source))
    write_zarr(out.rename("features"), path, overwrite=overwrite, progress=progress)
    written: list[Path] = [path]
    try:
        stored = xr.open_zarr(path, consolidated=False, decode_coords="all")["features"]
        if png_path is not None:
            quicklook(stored, png_path, overwrite=overwrite)
            written.append(png_path)
        if item_path is not None:
            write_item(_item(stored, path), item_path, overwrite=overwrite)
            written.append(item_path)
    except BaseException:
        for done in written:
            shutil.rmtree(done) if done.is_dir() else done.unlink(missing_ok=True)
        raise
    return FeatureCubeFiles(path, item_path, png_path)


def _item(features: xr.DataArray, path: Path):
    from .stac import ZARR, cube_item

    prov = json.loads(features.attrs.get(PROVENANCE_ATTR, "{}"))
    return cube_item(
        features,
        item_id=path.stem,
        href=f"./{path.name}",
        media_type=ZARR,
        description="DeepFeatures latent features per pixel and date",
        properties={f"deepfeatures:{k}": v for k, v in prov.items() if v is not None},
    )


def _stretch(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    lo, hi = np.percentile(finite, [2, 98])
    scaled = (values - lo) / (hi - lo if hi > lo else 1.0)
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0)


def quicklook(
    features: xr.DataArray,
    path: str | Path,
    *,
    date: Any = None,
    bands: tuple[str, str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """PNG: three features as RGB at ``date`` and their time series.

    ``date`` (nearest is taken) defaults to the clearest date: the largest ``valid_fraction``
    (see :func:`feature_cube`), else the first date. With ``valid_fraction``, the time series
    shows the dates with at least :data:`QUICKLOOK_MIN_VALID` of their pixels valid (features
    of cloudy dates are the encoder's gap filling, not observations).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .io import atomic_path

    labels = [str(b) for b in features["bands"].values]
    rgb_bands = list(bands or labels[:3])
    valid = features.coords.get(VALID_FRACTION)
    valid = None if valid is None else np.asarray(valid.values, dtype=float)
    if date is None:
        index = 0 if valid is None else int(np.nanargmax(valid))
    else:
        index = int(
            pd.DatetimeIndex(features["t"].values).get_indexer(
                [pd.Timestamp(date)], method="nearest"
            )[0]
        )
    when = pd.Timestamp(features["t"].values[index])
    rgb = np.stack([_stretch(features.isel(t=index).sel(bands=b).values) for b in rgb_bands], -1)
    shown = np.ones(features.sizes["t"], bool) if valid is None else valid >= QUICKLOOK_MIN_VALID
    series = features.isel(t=np.flatnonzero(shown)).median(("y", "x")).compute()

    fig, (ax_map, ax_ts) = plt.subplots(
        1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 1.6]}, layout="constrained"
    )
    ax_map.imshow(rgb, interpolation="nearest")
    ax_map.set_title(f"{'/'.join(rgb_bands)} as RGB, {when:%Y-%m-%d}", fontsize=10)
    ax_map.set_axis_off()
    times = pd.DatetimeIndex(series["t"].values)
    for label in labels:
        ax_ts.plot(times, series.sel(bands=label).values, marker=".", lw=0.8, ms=3, label=label)
    ax_ts.axvline(when, color="0.6", lw=0.8, ls="--")
    title = "spatial median per date"
    if valid is not None:
        title += (
            f" ({int(shown.sum())} of {shown.size} dates with >= {QUICKLOOK_MIN_VALID:.0%} "
            "valid pixels)"
        )
    ax_ts.set_title(title, fontsize=10)
    ax_ts.legend(ncol=min(len(labels), 4), fontsize=8)
    ax_ts.tick_params(labelsize=8)
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
