"""Training checkpoints (``checkpoint.pt``, torch) and the per-epoch metrics (``metrics.jsonl``).

``checkpoint.pt`` is written atomically after every epoch and holds everything to resume: the
config and its sha256, the weights (last and best), the optimizer state and the contract.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import ProcessParameterInvalid
from ..io import atomic_path

__all__ = ["CHECKPOINT", "FORMAT", "METRICS", "load_checkpoint"]

PROCESS = "train"
FORMAT = "openeo-deepfeatures-checkpoint"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    import torch

    with atomic_path(path, overwrite=True) as tmp:
        torch.save(payload, tmp)


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("".join(json.dumps(row) + "\n" for row in history), encoding="utf-8")


def load_checkpoint(path: str | os.PathLike, *, process: str = PROCESS) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (refuses other files)."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ProcessParameterInvalid(
            process=process, parameter="checkpoint", reason=f"{str(path)!r} is not a file."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        raise ProcessParameterInvalid(
            process=process,
            parameter="checkpoint",
            reason=f"{path.name} is not a readable checkpoint ({type(exc).__name__}).",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ProcessParameterInvalid(
            process=process,
            parameter="checkpoint",
            reason=f"{path.name} is not an openeo-deepfeatures training checkpoint.",
        )
    return payload
