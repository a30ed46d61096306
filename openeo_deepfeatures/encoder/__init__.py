"""Encoders: the model contract, loading ONNX encoders, and (``train`` extra) training/export.

``contract``, ``loader`` and this module need no torch; ``models``, ``train`` and ``export``
import torch and are imported only when used (``from openeo_deepfeatures.encoder.train import
train``).
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
from .training_cube import make_training_cube, open_training_cube

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "EncoderContract",
    "Normalisation",
    "load_encoder",
    "make_training_cube",
    "open_training_cube",
    "read_onnx_metadata",
    "sha256_file",
    "stac_item_path",
    "time_inputs",
]
