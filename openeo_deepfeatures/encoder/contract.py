"""The model contract: everything inference needs to know about an encoder, stored in the model.

An :class:`EncoderContract` travels inside the ONNX file (``metadata_props``, one JSON value per
field, see :meth:`EncoderContract.to_metadata`) and is mirrored in a STAC item with the MLM
extension (:meth:`EncoderContract.stac_item`). Inference reads only the contract:

- ``channels``: the input channel names in order (spectral-index and/or band names);
- ``normalisation``: per channel ``x_n = clip((x - offset) / scale, -clip, clip)``, with
  ``offset``/``scale`` the mid-point and half-width of the training split's robust quantile range
  (q02..q98 by default); missing values (NaN, +-inf) become 0 and a validity mask says where a
  pixel-date has data (:meth:`Normalisation.apply`);
- ``inputs``: the ONNX inputs ``x`` (normalised values), ``valid`` (1 where the pixel-date has
  at least one finite channel), ``day`` (days since the first date of the window; the models use
  only differences, so any origin gives the same features) and ``doy`` (day of year, 0-based,
  fractional); :func:`time_inputs` computes ``day``/``doy`` from dates;
- ``spatial_radius`` / ``temporal_window``: the receptive field, i.e. the halo a tiled inference
  must add (``spatial_radius`` px on each side, ``temporal_radius`` acquisitions before and after);
- ``family``: ``dense`` (``(1, T, C, H, W) -> (1, T, k, H, W)`` for any T, H, W) or ``patch``
  (``(N, 11, C, 15, 15) -> (N, k)``, the DeepFeatures TransformerAE layout);
- ``features``: output names ``F01``..``Fk``; ``training``: provenance (sha256 of the training
  data and config, seed, metrics).

This module imports neither torch nor onnx.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BandMissing, ProcessParameterInvalid
from ..udf import feature_embedding as udf_kernel

__all__ = [
    "CONTRACT_VERSION",
    "FAMILIES",
    "INPUTS",
    "OUTPUTS",
    "TIME_ENCODING",
    "EncoderContract",
    "Normalisation",
    "sha256_file",
    "stac_item_path",
    "time_inputs",
]

CONTRACT_VERSION = "1"
FAMILIES = ("dense", "patch")
TIME_ENCODING = "day_gap+day_of_year"
INPUTS = ("x", "valid", "day", "doy")
OUTPUTS = ("features",)
LAYOUTS = {"dense": ("NTCHW", "NTKHW"), "patch": ("NTCHW", "NK")}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\- ]+[A-Za-z0-9]$")  # as the STAC MLM mlm:name
_PROCESS = "EncoderContract"


def _invalid(reason: str, parameter: str = "contract", process: str = _PROCESS):
    return ProcessParameterInvalid(process=process, parameter=parameter, reason=reason)


@dataclass(frozen=True)
class Normalisation:
    """Per-channel robust scaling: ``clip((x - offset) / scale, -clip, clip)``, NaN -> 0."""

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    clip: float = 4.0
    quantiles: tuple[float, float] = (0.02, 0.98)
    kind: str = "robust"

    def __post_init__(self) -> None:
        object.__setattr__(self, "offset", tuple(float(v) for v in self.offset))
        object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        object.__setattr__(self, "quantiles", tuple(float(v) for v in self.quantiles))
        object.__setattr__(self, "clip", float(self.clip))
        problems = self.problems()
        if problems:
            raise _invalid("normalisation: " + "; ".join(problems), "normalisation")

    def problems(self) -> list[str]:
        out = []
        if self.kind != "robust":
            out.append(f"kind must be 'robust', not {self.kind!r}")
        if len(self.offset) != len(self.scale) or not self.offset:
            out.append(
                f"offset ({len(self.offset)}) and scale ({len(self.scale)}) need one value per "
                "channel"
            )
        if not all(math.isfinite(v) for v in self.offset):
            out.append("offset has non-finite values")
        if not all(math.isfinite(v) and v > 0 for v in self.scale):
            out.append("scale must be finite and > 0")
        if not (math.isfinite(self.clip) and self.clip > 0):
            out.append(f"clip must be > 0, not {self.clip}")
        lo_hi = self.quantiles
        if len(lo_hi) != 2 or not (0 <= lo_hi[0] < lo_hi[1] <= 1):
            out.append(f"quantiles must be two increasing values in [0, 1], not {list(lo_hi)}")
        return out

    @classmethod
    def from_quantiles(
        cls,
        low: Sequence[float],
        high: Sequence[float],
        *,
        clip: float = 4.0,
        quantiles: tuple[float, float] = (0.02, 0.98),
    ) -> Normalisation:
        """Offset = mid-point, scale = half-width of ``[low, high]``: the range maps to [-1, 1].

        A constant channel (``high == low``) gets scale 1, so it maps to 0.
        """
        low = np.asarray(low, dtype=np.float64)
        high = np.asarray(high, dtype=np.float64)
        half = (high - low) / 2.0
        tiny = 1e-6 * np.maximum(1.0, np.abs(low) + np.abs(high))
        scale = np.where(half > tiny, half, 1.0)
        return cls(
            offset=tuple((low + high) / 2.0),
            scale=tuple(scale),
            clip=clip,
            quantiles=quantiles,
        )

    def apply(self, x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalise ``x`` whose channels lie on ``axis``; returns ``(x_n, valid)``, float32.

        ``x_n`` has NaN/inf replaced by 0; ``valid`` has size 1 on ``axis`` and is 1 where at
        least one channel is finite. The kernel is ``normalise`` of ``udf/feature_embedding.py``.
        """
        x = np.asarray(x)
        axis = axis % x.ndim
        n = len(self.offset)
        if x.shape[axis] != n:
            raise _invalid(
                f"the array has {x.shape[axis]} channels on axis {axis}, the model {n}.",
                "x",
                "normalise",
            )
        return udf_kernel.normalise(x, self.offset, self.scale, self.clip, axis=axis)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "quantiles": list(self.quantiles),
            "clip": self.clip,
            "offset": list(self.offset),
            "scale": list(self.scale),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalisation:
        if not isinstance(d, Mapping):
            raise _invalid(f"normalisation must be an object, not {type(d).__name__}")
        unknown = set(d) - {"kind", "quantiles", "clip", "offset", "scale"}
        missing = {"offset", "scale"} - set(d)
        if unknown or missing:
            raise _invalid(
                f"normalisation: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}",
                "normalisation",
            )
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except (TypeError, ValueError) as exc:
            raise _invalid(f"normalisation: {exc}", "normalisation") from None


@dataclass(frozen=True)
class EncoderContract:
    """What an encoder expects and produces; see the module docstring for the fields."""

    name: str
    family: str
    channels: tuple[str, ...]
    normalisation: Normalisation
    spatial_radius: int
    temporal_window: int
    features: tuple[str, ...]
    model_version: str = "0.1.0"
    patch_size: tuple[int, int, int] | None = None
    input_layout: str = ""
    output_layout: str = ""
    inputs: tuple[str, ...] = INPUTS
    outputs: tuple[str, ...] = OUTPUTS
    time_encoding: str = TIME_ENCODING
    training: Mapping[str, Any] = field(default_factory=dict)
    contract_version: str = CONTRACT_VERSION

    def __post_init__(self) -> None:
        for name in ("channels", "features", "inputs", "outputs"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise _invalid(f"{name} must be a list of strings, not {value!r}", name)
            object.__setattr__(self, name, tuple(value))
        if self.patch_size is not None:
            if not isinstance(self.patch_size, Iterable) or isinstance(self.patch_size, str):
                raise _invalid(f"patch_size must be [T, H, W], not {self.patch_size!r}")
            object.__setattr__(self, "patch_size", tuple(self.patch_size))
        if not isinstance(self.training, Mapping):
            raise _invalid(f"training must be an object, not {self.training!r}")
        if not isinstance(self.normalisation, Normalisation):
            object.__setattr__(self, "normalisation", Normalisation.from_dict(self.normalisation))
        if self.family in LAYOUTS:
            layouts = LAYOUTS[self.family]
            if not self.input_layout:
                object.__setattr__(self, "input_layout", layouts[0])
            if not self.output_layout:
                object.__setattr__(self, "output_layout", layouts[1])
        object.__setattr__(self, "training", dict(self.training))
        problems = self.problems()
        if problems:
            raise _invalid("; ".join(problems))

    # -- validation -------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Everything wrong with this contract (empty when valid)."""
        out: list[str] = []
        if self.contract_version != CONTRACT_VERSION:
            out.append(
                f"contract_version {self.contract_version!r} is not supported (this "
                f"library reads {CONTRACT_VERSION!r})"
            )
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            out.append(
                f"name {self.name!r} must start with a letter, end with a letter or digit "
                "and hold only letters, digits, '_', '.', '-' and spaces"
            )
        if not isinstance(self.model_version, str) or not self.model_version:
            out.append("model_version must be a non-empty string")
        if self.family not in FAMILIES:
            out.append(f"family must be one of {list(FAMILIES)}, not {self.family!r}")
        for name in ("channels", "features"):
            values = getattr(self, name)
            if not values or not all(isinstance(v, str) and v for v in values):
                out.append(f"{name} must be a non-empty list of non-empty strings")
            elif len(set(values)) != len(values):
                out.append(f"{name} has duplicates")
        if not isinstance(self.normalisation, Normalisation):
            out.append("normalisation must be a Normalisation")
        elif len(self.normalisation.offset) != len(self.channels):
            out.append(
                f"normalisation has {len(self.normalisation.offset)} channels, channels "
                f"{len(self.channels)}"
            )
        for name in ("spatial_radius", "temporal_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                out.append(f"{name} must be an integer >= 0, not {value!r}")
        if isinstance(self.temporal_window, int) and self.temporal_window % 2 != 1:
            out.append(
                f"temporal_window must be odd (a centred window), not {self.temporal_window}"
            )
        if (
            self.family in LAYOUTS
            and (self.input_layout, self.output_layout) != LAYOUTS[self.family]
        ):
            out.append(
                f"layouts of a {self.family} model are {LAYOUTS[self.family]}, not "
                f"{(self.input_layout, self.output_layout)}"
            )
        if self.family == "patch":
            side = 2 * self.spatial_radius + 1
            if self.patch_size != (self.temporal_window, side, side):
                out.append(
                    "a patch model needs patch_size (T, H, W) = (temporal_window, "
                    f"2 * spatial_radius + 1, 2 * spatial_radius + 1), not {self.patch_size}"
                )
        elif self.patch_size is not None:
            out.append("patch_size is only for patch models")
        if tuple(self.inputs) != INPUTS:
            out.append(f"inputs must be {list(INPUTS)}, not {list(self.inputs)}")
        if tuple(self.outputs) != OUTPUTS:
            out.append(f"outputs must be {list(OUTPUTS)}, not {list(self.outputs)}")
        if self.time_encoding != TIME_ENCODING:
            out.append(f"time_encoding must be {TIME_ENCODING!r}, not {self.time_encoding!r}")
        try:
            json.dumps(self.training, allow_nan=False)
        except (TypeError, ValueError) as exc:
            out.append(f"training must be JSON (no NaN): {exc}")
        return out

    # -- derived ----------------------------------------------------------------------
    @property
    def k(self) -> int:
        """Number of output features."""
        return len(self.features)

    @property
    def temporal_radius(self) -> int:
        """Acquisitions of context before and after a date (the temporal halo)."""
        return (self.temporal_window - 1) // 2

    def normalise(self, x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x_n, valid)`` for ``x`` with the contract's channels on ``axis``."""
        return self.normalisation.apply(x, axis)

    def check_channels(self, available: Iterable[str], *, process: str = "encode") -> None:
        """Raise :class:`BandMissing` when ``available`` lacks channels of the model."""
        have = {str(a) for a in available}
        missing = [c for c in self.channels if c not in have]
        if missing:
            raise BandMissing(
                process=process,
                reason=f"the model {self.name!r} needs {missing} (compute them first, e.g. "
                "with compute_indices(cube, indices=[...])).",
            )

    # -- (de)serialisation -----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Normalisation):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_metadata(self) -> dict[str, str]:
        """ONNX ``metadata_props``: one JSON value per field."""
        return {k: json.dumps(v, allow_nan=False) for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncoderContract:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(d))
        if missing:
            raise _invalid(f"missing fields {missing}")
        kwargs = {k: v for k, v in d.items() if k in names}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise _invalid(str(exc)) from None

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> EncoderContract:
        """Parse and validate ONNX ``metadata_props``; other keys in ``meta`` are ignored."""
        if "contract_version" not in meta:
            raise _invalid(
                "no DeepFeatures encoder contract in the model metadata (no 'contract_version'); "
                "export models with `deepfeatures export`."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        parsed: dict[str, Any] = {}
        for key in names & set(meta):
            try:
                parsed[key] = json.loads(meta[key])
            except (TypeError, json.JSONDecodeError):
                raise _invalid(f"metadata {key!r} is not JSON: {str(meta[key])[:80]!r}") from None
        return cls.from_dict(parsed)

    def replace(self, **changes: Any) -> EncoderContract:
        return dataclasses.replace(self, **changes)

    # -- STAC -------------------------------------------------------------------------
    def stac_item(
        self,
        model_path: str | os.PathLike,
        *,
        sha256: str | None = None,
        href: str | None = None,
        item_id: str | None = None,
        total_parameters: int | None = None,
        framework_version: str | None = None,
    ):
        """A :class:`pystac.Item` with the MLM extension describing the ONNX file."""
        from ..stac import mlm_model_item

        path = Path(model_path)
        c = len(self.channels)
        if self.family == "dense":
            x_shape = [-1, -1, c, -1, -1]
        else:
            t, h, w = self.patch_size
            x_shape = [-1, t, c, h, w]
        n, t = x_shape[:2]
        dims5 = ["batch", "time", "bands", "height", "width"]
        norm = self.normalisation
        inputs = [
            {
                "name": "x",
                "bands": list(self.channels),
                "shape": x_shape,
                "dim_order": dims5,
                "data_type": "float32",
                "description": (
                    f"Channels normalised per band ((x - mean) / stddev, then clipped to "
                    f"[-{norm.clip:g}, {norm.clip:g}]; NaN -> 0)."
                ),
                "value_scaling": [
                    {"type": "z-score", "mean": o, "stddev": s}
                    for o, s in zip(norm.offset, norm.scale, strict=True)
                ],
                "pre_processing_function": {
                    "format": "python",
                    "expression": "openeo_deepfeatures.encoder.contract:Normalisation.apply",
                },
            },
            {
                "name": "valid",
                "bands": [],
                "shape": [n, t, 1, x_shape[3], x_shape[4]],
                "dim_order": ["batch", "time", "channel", "height", "width"],
                "data_type": "float32",
                "description": "1 where the pixel-date has data, 0 where missing (clouds).",
            },
            {
                "name": "day",
                "bands": [],
                "shape": [n, t],
                "dim_order": ["batch", "time"],
                "data_type": "float32",
                "description": "Days since the first date of the window (only gaps matter).",
            },
            {
                "name": "doy",
                "bands": [],
                "shape": [n, t],
                "dim_order": ["batch", "time"],
                "data_type": "float32",
                "description": "Day of year (0-based, fractional) of each date.",
            },
        ]
        if self.family == "dense":
            out_shape, out_dims = (
                [-1, -1, self.k, -1, -1],
                ["batch", "time", "embedding", "height", "width"],
            )
        else:
            out_shape, out_dims = [-1, self.k], ["batch", "embedding"]
        outputs = [
            {
                "name": "features",
                "tasks": ["similarity-search"],
                "shape": out_shape,
                "dim_order": out_dims,
                "data_type": "float32",
                "description": f"Latent features {', '.join(self.features)} per pixel and date.",
            }
        ]
        properties = {f"deepfeatures:{k}": v for k, v in self.to_dict().items()}
        return mlm_model_item(
            item_id=item_id or path.stem,
            model_href=href or f"./{path.name}",
            name=self.name,
            architecture=(
                "dense spatio-temporal convolutional autoencoder"
                if self.family == "dense"
                else "TransformerAE (DeepFeatures patch layout)"
            ),
            tasks=["similarity-search"],
            inputs=inputs,
            outputs=outputs,
            bands=[{"name": ch, "description": "input channel"} for ch in self.channels],
            framework="PyTorch",
            framework_version=framework_version,
            total_parameters=total_parameters,
            artifact_type="torch.onnx.export",
            media_type="application/octet-stream; application=onnx",
            model_sha256=sha256,
            model_size=path.stat().st_size if path.exists() else None,
            description=f"DeepFeatures {self.family} encoder {self.name} {self.model_version}",
            properties=properties,
        )


def time_inputs(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(day, doy)`` model inputs for dates on the last axis.

    ``dates``: ``datetime64`` values or float days since 1970-01-01. ``day`` is days since the
    first date along the last axis, ``doy`` the 0-based fractional day of year; both float32.
    The kernel is ``time_inputs`` of ``udf/feature_embedding.py``.
    """
    dates = np.asarray(dates)
    if np.issubdtype(dates.dtype, np.datetime64):
        if np.isnat(dates).any():
            raise _invalid("dates contain NaT.", "dates", "time_inputs")
    elif not np.isfinite(dates.astype(np.float64)).all():
        raise _invalid("days contain NaN or inf.", "dates", "time_inputs")
    return udf_kernel.time_inputs(dates)


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256, read and hashed once per version of the file and process (the UDF
    kernel's ``file_sha256``, which the model loader uses too)."""
    return udf_kernel.file_sha256(path)


def stac_item_path(model_path: str | os.PathLike) -> Path:
    """Where the STAC MLM item of a model file lives: ``model.onnx`` -> ``model.stac.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + ".stac.json")
