"""Making encoders: training data cubes, training and export to ONNX with a model contract.

- :mod:`.cube` (with :mod:`.sampling` and :mod:`.cube_source`): training data cubes, tiles or
  DeepFeatures patches sampled from a spectral-index cube (``deepfeatures training-cube``);
- :mod:`.config`: the training config, checked against ``config.schema.json``;
- :mod:`.trainer` (with :mod:`.data` and :mod:`.checkpoint`): training (``deepfeatures train``);
- :mod:`.models`: the two encoder families (torch);
- :mod:`.onnx_export`: a checkpoint to ONNX and a STAC MLM item (``deepfeatures export``).

Training and export need the ``train`` extra (torch, onnx); they import torch only when called,
so this package imports without it. Inference (:mod:`openeo_deepfeatures.encoder`) never
imports torch.
"""

from __future__ import annotations

from .checkpoint import load_checkpoint
from .config import load_config
from .cube import (
    make_training_cube,
    open_training_cube,
    training_cube_provenance,
    training_cube_sha256,
)
from .onnx_export import ExportResult, export
from .trainer import TrainResult, train

__all__ = [
    "ExportResult",
    "TrainResult",
    "export",
    "load_checkpoint",
    "load_config",
    "make_training_cube",
    "open_training_cube",
    "train",
    "training_cube_provenance",
    "training_cube_sha256",
]
