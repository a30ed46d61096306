"""Which bands a model needs, the shipped models, and picking the one a cube can feed.

An encoder's contract lists its input channels (spectral-index names, or band labels). The
Sentinel-2 bands those channels are computed from are what a user has to load;
:func:`check_bands` says so at that level ("the model needs B8A, B11; the cube has B02, B03,
B04, B08, SCL"), never as a list of every affected index. :func:`choose_encoder` picks the
first shipped model (:data:`~openeo_deepfeatures.encoder.shipped.SHIPPED_MODELS`, in order of
preference) whose bands a cube has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache

from ..bands import BAND_BY_LABEL
from ..cube_input import format_labels
from ..errors import BandMissing
from .loader import load_encoder
from .shipped import SHIPPED_MODELS, shipped_model_path

__all__ = ["SHIPPED_MODELS", "bands_needed", "check_bands", "choose_encoder", "shipped_model_path"]

log = logging.getLogger(__name__)


def bands_needed(channels: Iterable[str]) -> tuple[str, ...]:
    """Sentinel-2 bands (CDSE labels, in band order) the channels are computed from."""
    return _bands_needed(tuple(str(c) for c in channels))


@cache
def _bands_needed(channels: tuple[str, ...]) -> tuple[str, ...]:
    from ..indices import catalogue

    known = catalogue()
    bands: set[str] = set()
    for channel in channels:
        if channel in BAND_BY_LABEL:
            bands.add(channel)
        elif channel in known:
            bands.update(known[channel].bands)
    return tuple(b for b in BAND_BY_LABEL if b in bands)


@cache
def _shipped_bands(name: str) -> tuple[str, ...] | None:
    """Bands a shipped model needs (read from its contract once per process; the session
    opened for it is the one a run with the default providers uses)."""
    if shipped_model_path(name) is None:
        return None
    return bands_needed(load_encoder(name).contract.channels)


def _describe_shipped(have: set[str]) -> str:
    options = []
    for name in SHIPPED_MODELS:
        needed = _shipped_bands(name)
        if needed is None:
            continue
        fits = (
            "fits this cube"
            if set(needed) <= have
            else "needs " + format_labels(b for b in needed if b not in have)
        )
        options.append(f"'{name}' ({format_labels(needed)}; {fits})")
    return "; ".join(options)


def check_bands(encoder, bands: Iterable[str], *, process: str) -> None:
    """Raise :class:`BandMissing` when the cube's ``bands`` cannot feed ``encoder``."""
    labels = [str(b) for b in bands]
    needed = bands_needed(encoder.contract.channels)
    missing = [b for b in needed if b not in labels]
    if missing:
        have = set(labels)
        raise BandMissing(
            process=process,
            reason=(
                f"the model {encoder.contract.name!r} needs bands {format_labels(missing)}; the "
                f"cube has {format_labels(labels)}. Load those bands, or use a model for the "
                f"bands you have. Shipped models (--model NAME / model='NAME'): "
                f"{_describe_shipped(have)}."
            ),
        )


def choose_encoder(bands: Iterable[str], *, process: str, providers=None):
    """The first shipped model whose bands the cube has (INFO line says which)."""
    labels = [str(b) for b in bands]
    have = set(labels)
    for name in SHIPPED_MODELS:
        needed = _shipped_bands(name)
        if needed is not None and set(needed) <= have:
            model = load_encoder(name, providers=providers)
            log.info(
                "%s: using the shipped model '%s' (%s, %d channels from %s).",
                process,
                name,
                model.contract.name,
                len(model.contract.channels),
                format_labels(needed),
            )
            return model
    raise BandMissing(
        process=process,
        reason=(
            f"no shipped model fits the cube's bands {format_labels(labels)}: "
            f"{_describe_shipped(have)}. Load the missing bands, or pass a model of your own."
        ),
    )
