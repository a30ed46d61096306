"""The spectral-index catalogue: Awesome Spectral Indices (vendored, pinned) for Sentinel-2.

Adds what the raw catalogue leaves to the user: per-index constant defaults (SAVI ``L=0.5``,
EVI ``L=1``, WCI ``epsilon=1e-10``), wavelength constants from the Sentinel-2 band table,
and kernel "bands" (``kNR`` = RBF kernel of N and R with ``sigma = 0.5 (N + R)``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from .._json import loads_strict
from ..errors import IndexUnknown, ProcessParameterInvalid
from ..sentinel2 import BAND_BY_ASI, BAND_BY_LABEL, normalize_band_label

__all__ = [
    "ASI_VERSION",
    "EXTERNAL_INPUTS",
    "IndexSpec",
    "catalogue",
    "get_index",
    "global_constants",
    "kernel_parts",
    "list_indices",
    "unknown_index_error",
]

ASI_VERSION = "0.12.0"
PLATFORM = "Sentinel-2"
#: Inputs an index may take from the cube (a band with this label) or from ``constants``.
EXTERNAL_INPUTS = ("PAR",)

_KERNEL = re.compile(r"^k([A-Z][A-Z0-9]*?)([A-Z][A-Z0-9]*)$")

#: Per-index constant defaults that differ from the catalogue's global defaults.
#: SAVI-family indices use L = 0.5 (Huete 1988); the EVI family L = 1 (Huete et al. 2002);
#: the WCI water-colour indices epsilon = 1e-10 (as the catalogue's description of epsilon says).
INDEX_CONSTANT_DEFAULTS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "SAVI": {"L": 0.5},
        "GSAVI": {"L": 0.5},
        "MNLI": {"L": 0.5},
        "SARVI": {"L": 0.5},
        "IBI": {"L": 0.5},
        "SNDTI": {"L": 0.5},
        "EVI": {"L": 1.0},
        "EVI2": {"L": 1.0},
        "kEVI": {"L": 1.0},
        "WCI1": {"epsilon": 1e-10},
        "WCI2": {"epsilon": 1e-10},
    }
)
_WAVELENGTH_CONSTANTS = {f"lambda{b.asi}": b.wavelength_nm for b in BAND_BY_ASI.values()}


@cache
def _load_json(name: str) -> dict[str, Any]:
    text = resources.files("openeo_deepfeatures.data").joinpath("asi", name).read_text("utf-8")
    return loads_strict(text)


@dataclass(frozen=True)
class IndexSpec:
    """One spectral index, ready to compile for Sentinel-2."""

    short_name: str
    long_name: str
    formula: str
    application_domain: str
    reference: str
    symbols: tuple[str, ...]  # names used in the formula (ASI symbols)
    bands: tuple[str, ...]  # CDSE band labels needed, sorted
    constants: Mapping[str, float | None] = field(default_factory=dict)  # defaults
    external: tuple[str, ...] = ()  # inputs like PAR: a band of that label or a constant

    def computable_from(self, labels: Iterable[str]) -> bool:
        available = set(labels)
        return set(self.bands) <= available


def kernel_parts(symbol: str) -> tuple[str, str] | None:
    """``kNR`` -> ``("N", "R")``; ``kNL`` -> ``("N", "L")``."""
    if not symbol.startswith("k") or len(symbol) < 3:
        return None
    rest = symbol[1:]
    for i in range(1, len(rest)):
        a, b = rest[:i], rest[i:]
        if (a in BAND_BY_ASI or a in global_constants()) and (
            b in BAND_BY_ASI or b in global_constants()
        ):
            return a, b
    return None


@lru_cache(maxsize=1)
def global_constants() -> Mapping[str, float | None]:
    """The catalogue's constants (``L``, ``g``, ``C1``, ...) with their global defaults."""
    return MappingProxyType({k: v["default"] for k, v in _load_json("constants.json").items()})


def _spec(entry: Mapping[str, Any]) -> IndexSpec | None:
    """Build the spec, or None when the index needs something Sentinel-2 does not have."""
    name = entry["short_name"]
    symbols = tuple(entry["bands"])
    consts = global_constants()
    bands: set[str] = set()
    constants: dict[str, float | None] = {}
    external: list[str] = []

    def use(symbol: str) -> bool:
        if symbol in BAND_BY_ASI:
            bands.add(BAND_BY_ASI[symbol].label)
        elif symbol in EXTERNAL_INPUTS:
            external.append(symbol)
        elif symbol in _WAVELENGTH_CONSTANTS:
            constants[symbol] = _WAVELENGTH_CONSTANTS[symbol]
        elif symbol in consts:
            constants[symbol] = INDEX_CONSTANT_DEFAULTS.get(name, {}).get(symbol, consts[symbol])
        else:
            return False
        return True

    for symbol in symbols:
        parts = kernel_parts(symbol)
        if parts is not None:
            # RBF kernel of the two parts; sigma = 0.5 (a + b) per pixel, no constant needed
            if not all(use(p) for p in parts):
                return None
            continue
        if not use(symbol):
            return None
    return IndexSpec(
        short_name=name,
        long_name=entry["long_name"],
        formula=entry["formula"],
        application_domain=entry["application_domain"],
        reference=entry["reference"],
        symbols=symbols,
        bands=tuple(sorted(bands, key=list(BAND_BY_LABEL).index)),
        constants=MappingProxyType(constants),
        external=tuple(external),
    )


@lru_cache(maxsize=1)
def catalogue() -> Mapping[str, IndexSpec]:
    """All Awesome Spectral Indices computable from Sentinel-2 MSI, by short name."""
    raw = _load_json("spectral-indices-dict.json")["SpectralIndices"]
    specs = {}
    for name, entry in raw.items():
        if PLATFORM not in entry["platforms"]:
            continue
        spec = _spec(entry)
        if spec is not None:
            specs[name] = spec
    return MappingProxyType(specs)


def unknown_index_error(names: Sequence[str], process: str) -> IndexUnknown:
    """``IndexUnknown`` for ``names``, with the catalogue's closest names as hints."""
    known = list(catalogue())
    hints = []
    for name in names:
        lowered = name.lower()
        # case slips and swapped letters first (NVDI -> NDVI), then difflib's similar names
        close = [k for k in known if k.lower() == lowered]
        close += [k for k in known if sorted(k.lower()) == sorted(lowered) and k not in close]
        close += [
            k for k in difflib.get_close_matches(name, known, n=3, cutoff=0.6) if k not in close
        ]
        close = close[:3]
        hints.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return IndexUnknown(
        process=process,
        reason=", ".join(hints) + ". See `openeo_deepfeatures.list_indices()` for the catalogue.",
    )


def get_index(name: str) -> IndexSpec:
    """The spec of one index (case-sensitive ASI short name)."""
    try:
        return catalogue()[name]
    except KeyError:
        raise unknown_index_error([name], "deepfeatures_spectral_indices") from None


def list_indices(
    platform: str = PLATFORM,
    bands: Iterable[str] | None = None,
    *,
    application_domain: str | Iterable[str] | None = None,
) -> list[str]:
    """Names of the spectral indices computable for ``platform``.

    With ``bands=[...]`` (CDSE labels such as ``B04``; ``B4`` works too; ``PAR`` for the
    external PAR input) only those computable from the given bands. ``application_domain``
    filters by the catalogue's domain (``vegetation``, ``water``, ``burn``, ``soil``, ``urban``,
    ``snow``, ``kernel``, …).
    """
    if platform != PLATFORM:
        raise ProcessParameterInvalid(
            process="deepfeatures_list_indices",
            parameter="platform",
            reason=f"only {PLATFORM!r} is supported (got {platform!r}).",
        )
    specs = catalogue().values()
    if application_domain is not None:
        domains = (
            {application_domain} if isinstance(application_domain, str) else set(application_domain)
        )
        specs = [s for s in specs if s.application_domain in domains]
    if bands is not None:
        labels = {normalize_band_label(b) for b in ([bands] if isinstance(bands, str) else bands)}
        specs = [s for s in specs if s.computable_from(labels) and set(s.external) <= labels]
    return sorted(s.short_name for s in specs)
