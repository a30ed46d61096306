"""Encoders: the model contract and loading ONNX encoders for inference (no torch).

``contract``, ``loader`` (one cached model loader: the UDF kernel's ``open_model``), ``inference``
and this module need no torch. Training data cubes, training and export to ONNX live in
:mod:`openeo_deepfeatures.training`.
"""

from __future__ import annotations

from .contract import (
    EncoderContract,
    Normalisation,
    sha256_file,
    stac_item_path,
    time_inputs,
)
from .loader import Encoder, load_encoder, read_onnx_metadata
from .shipped import DEFAULT_MODEL

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
