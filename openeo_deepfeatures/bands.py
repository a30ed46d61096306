"""Sentinel-2 MSI Level-2A bands: the band table, SCL classes, and band names as users spell them.

Band labels follow the CDSE openEO collection ``SENTINEL2_L2A`` (``B01``..``B12``, ``B8A``,
``SCL``). :func:`normalize_band_label` maps the other spellings found in openEO, CDSE and STAC
cubes to those labels:

- ``B2``, ``b02``, ``B8a`` (case and zero padding);
- product prefixes and resolution suffixes: ``S2-L2A-B02``, ``SENTINEL2_L2A:B02``, ``B02_10m``,
  ``SCL_20m``;
- STAC common names (``eo:common_name``): ``blue``, ``nir``, ``nir08``, ``swir16``,
  ``rededge071`` …, and the Earth Search asset keys ``rededge1``..``rededge3``, ``scl``.

Anything else (``AOT``, ``WVP``, ``CLP``, angles, ``PAR``) is returned unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = [
    "BANDS",
    "BAND_BY_ASI",
    "BAND_BY_LABEL",
    "DEFAULT_INVALID_SCL",
    "SCL_CLASSES",
    "Band",
    "is_s2_label",
    "normalize_band_label",
]


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 MSI band: CDSE label, Awesome Spectral Indices symbol, S2A centre."""

    label: str
    asi: str
    common_name: str
    wavelength_nm: float  # Sentinel-2A central wavelength (ESA S2 spectral response v3)
    resolution_m: int


#: The L2A reflectance bands (B10 is not in L2A products). Wavelengths are the Sentinel-2A
#: central wavelengths as listed by Awesome Spectral Indices ``bands.json``; common names are
#: those of the STAC electro-optical extension (v1.1).
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

#: Lower-case spelling -> label: labels, unpadded numbers, STAC common names, Earth Search keys.
_SPELLINGS: dict[str, str] = (
    {b.label.lower(): b.label for b in BANDS}
    | {f"b{int(b.label[1:])}": b.label for b in BANDS if b.label[1:].isdigit()}
    | {b.common_name: b.label for b in BANDS}
    | {"rededge1": "B05", "rededge2": "B06", "rededge3": "B07", "scl": "SCL"}
)
#: A resolution suffix (``_10m``, ``-20m``) and the separators of product prefixes.
_RESOLUTION = re.compile(r"[_\-]\d{2}m$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s:/._\-]+")


def normalize_band_label(label: Hashable) -> Hashable:
    """The CDSE label (``B04``, ``B8A``, ``SCL``) of a band name, else the name unchanged.

    >>> [normalize_band_label(n) for n in ("B4", "S2-L2A-B02", "B8A_20m", "nir", "AOT")]
    ['B04', 'B02', 'B8A', 'B08', 'AOT']
    """
    if not isinstance(label, str):
        return label
    if label in BAND_BY_LABEL or label == "SCL":
        return label
    text = _RESOLUTION.sub("", label.strip())
    direct = _SPELLINGS.get(text.lower())
    if direct is not None:
        return direct
    tokens = [t for t in _SEPARATORS.split(text) if t]
    if len(tokens) > 1:  # S2-L2A-B02, SENTINEL2_L2A:B8A: the last token names the band
        found = _SPELLINGS.get(tokens[-1].lower())
        if found is not None and tokens[-1].lower() not in {b.common_name for b in BANDS}:
            return found
    return label


def is_s2_label(label: Hashable) -> bool:
    """Whether ``label`` (already normalised) is a Sentinel-2 L2A band or ``SCL``."""
    return label in BAND_BY_LABEL or label == "SCL"
