"""Encoders: the model contract and loading ONNX encoders for inference (no torch).

Training data cubes, training and export to ONNX live in :mod:`openeo_deepfeatures.training`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProcessParameterInvalid, ProcessParameterMissing
from .contract import (
    EncoderContract,
    Normalisation,
    read_onnx_metadata,
    sha256_file,
    stac_item_path,
    time_inputs,
)

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderContract",
    "Normalisation",
    "load_encoder",
    "read_onnx_metadata",
    "sha256_file",
    "stac_item_path",
    "time_inputs",
]

#: The default encoder shipped as package data (``openeo_deepfeatures/data/<DEFAULT_MODEL>``).
DEFAULT_MODEL = "encoder/default.onnx"
_PROCESS = "load_encoder"


@dataclass(frozen=True)
class Encoder:
    """An ONNX encoder whose contract was read and validated."""

    path: Path
    sha256: str
    contract: EncoderContract
    session: Any = field(repr=False, compare=False)

    def run(self, x: np.ndarray, valid: np.ndarray, day: np.ndarray, doy: np.ndarray) -> np.ndarray:
        """One onnxruntime call on already normalised inputs (see the contract's ``inputs``)."""
        feeds = {
            "x": np.ascontiguousarray(x, dtype=np.float32),
            "valid": np.ascontiguousarray(valid, dtype=np.float32),
            "day": np.ascontiguousarray(day, dtype=np.float32),
            "doy": np.ascontiguousarray(doy, dtype=np.float32),
        }
        return self.session.run(list(self.contract.outputs), feeds)[0]


def _default_path() -> Path:
    path = resources.files("openeo_deepfeatures.data").joinpath(*DEFAULT_MODEL.split("/"))
    if not path.is_file():
        raise ProcessParameterMissing(
            "load_encoder(): no default encoder is shipped with this version of "
            "openeo-deepfeatures yet; pass the path of an ONNX encoder (make one with "
            "`deepfeatures train CONFIG.toml` and `deepfeatures export CHECKPOINT -o model.onnx`).",
            process=_PROCESS,
            parameter="path",
        )
    return Path(str(path))


def load_encoder(
    path: str | os.PathLike | None = None,
    *,
    sha256: str | None = None,
    providers: list[str] | None = None,
) -> Encoder:
    """Open an ONNX encoder, check its sha256 (when given) and validate its contract.

    ``path``: an ONNX file, the name of a shipped model (``"default"``: B02, B03, B04, B08,
    B8A, B11; ``"s2-10m"``: B02, B03, B04, B08; see
    :data:`~openeo_deepfeatures.encoder.selection.SHIPPED_MODELS`), or None for the default.

    Raises :class:`~openeo_deepfeatures.errors.ProcessParameterInvalid` for a missing file, a
    sha256 mismatch (truncated or altered file), a file that is not ONNX, or a model without a
    valid DeepFeatures contract or whose graph does not match its contract.
    """
    from .selection import SHIPPED_MODELS, shipped_model_path

    if path is None:
        path = _default_path()
    elif isinstance(path, str) and path in SHIPPED_MODELS and not Path(path).exists():
        shipped = shipped_model_path(path)
        if shipped is None:
            raise ProcessParameterInvalid(
                process=_PROCESS,
                parameter="path",
                reason=f"the shipped model {path!r} is not installed with this package.",
            )
        path = shipped
    path = Path(path)
    if not path.is_file():
        names = ", ".join(repr(n) for n in SHIPPED_MODELS)
        raise ProcessParameterInvalid(
            process=_PROCESS,
            parameter="path",
            reason=f"{str(path)!r} is not a file (nor a shipped model: {names}).",
        )
    digest = sha256_file(path)
    if sha256 is not None and digest != str(sha256).strip().lower():
        raise ProcessParameterInvalid(
            process=_PROCESS,
            parameter="sha256",
            reason=(
                f"{path.name} has sha256 {digest}, expected {sha256}: the file is truncated, "
                "altered or another model."
            ),
        )
    from .contract import _session

    session = _session(path, process=_PROCESS, providers=providers)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    contract = EncoderContract.from_metadata(meta)
    names_in = [i.name for i in session.get_inputs()]
    names_out = [o.name for o in session.get_outputs()]
    if sorted(names_in) != sorted(contract.inputs) or names_out[:1] != list(contract.outputs):
        raise ProcessParameterInvalid(
            process=_PROCESS,
            parameter="path",
            reason=(
                f"{path.name}: the graph has inputs {names_in} and outputs {names_out}, its "
                f"contract says {list(contract.inputs)} -> {list(contract.outputs)}."
            ),
        )
    x_shape = next(i.shape for i in session.get_inputs() if i.name == "x")
    if isinstance(x_shape[2], int) and x_shape[2] != len(contract.channels):
        raise ProcessParameterInvalid(
            process=_PROCESS,
            parameter="path",
            reason=(
                f"{path.name}: the graph takes {x_shape[2]} channels, its contract lists "
                f"{len(contract.channels)}."
            ),
        )
    return Encoder(path=path, sha256=digest, contract=contract, session=session)
