"""Export a trained encoder to ONNX with its contract: ``deepfeatures export CHECKPOINT -o model.onnx``.

The ONNX graph maps the contract's inputs ``x``, ``valid``, ``day``, ``doy`` to ``features``
with dynamic axes (dense: batch, T, H, W; patch: batch). The contract goes into the file's
``metadata_props`` and a STAC item with the MLM extension is written beside it
(``model.stac.json``). Before anything is written, onnxruntime runs the graph on random inputs
of another shape than the one traced and must agree with torch to ``tolerance``; the number is
recorded in the contract (``training.export.parity_max_abs_diff``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from ..encoder.contract import EncoderContract, sha256_file, stac_item_path
from ..errors import FeatureUnsupported, OpenEOError, ProcessParameterInvalid
from ..io import atomic_path

__all__ = ["OPSET", "ExportResult", "export", "random_inputs"]

OPSET = 18
PROCESS = "export"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    stac_item: Path
    sha256: str
    contract: EncoderContract
    max_abs_diff: float


def random_inputs(
    contract: EncoderContract, *, n: int = 1, t: int = 12, h: int = 16, w: int = 16, seed: int = 0
) -> dict[str, np.ndarray]:
    """Plausible random model inputs (patch models: ``t, h, w`` from the contract)."""
    if contract.family == "patch":
        t, h, w = contract.patch_size
    rng = np.random.default_rng(seed)
    c = len(contract.channels)
    clip = contract.normalisation.clip
    valid = (rng.random((n, t, 1, h, w)) < 0.7).astype(np.float32)
    x = np.clip(rng.normal(size=(n, t, c, h, w)), -clip, clip).astype(np.float32) * valid
    gaps = rng.integers(1, 30, size=(n, t)).astype(np.float64)
    gaps[:, 0] = 0
    days = 17000 + rng.integers(0, 3000, size=(n, 1)) + np.cumsum(gaps, axis=1)
    from ..encoder.contract import time_inputs

    day, doy = time_inputs(days)
    return {"x": x, "valid": valid, "day": day, "doy": doy}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (missing torchvision ops, dynamic-axis renames)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"# The axis name", category=UserWarning)
            warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


def _to_onnx(model, contract: EncoderContract):
    import torch

    dim = torch.export.Dim
    n = dim("batch", min=1)
    if contract.family == "dense":
        t, h, w = dim("T", min=2), dim("H", min=1), dim("W", min=1)
        shapes = {
            "x": {0: n, 1: t, 3: h, 4: w},
            "valid": {0: n, 1: t, 3: h, 4: w},
            "day": {0: n, 1: t},
            "doy": {0: n, 1: t},
        }
        example = random_inputs(contract, n=2, t=9, h=10, w=11, seed=1)
    else:
        shapes = {"x": {0: n}, "valid": {0: n}, "day": {0: n}, "doy": {0: n}}
        example = random_inputs(contract, n=2, seed=1)
    args = tuple(torch.from_numpy(example[k]) for k in contract.inputs)
    with _quiet_exporter():
        program = torch.onnx.export(
            model,
            args,
            input_names=list(contract.inputs),
            output_names=list(contract.outputs),
            dynamic_shapes=shapes,
            opset_version=OPSET,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    return program.model_proto


def _parity(model, proto, contract: EncoderContract) -> float:
    """Largest |onnxruntime - torch| on random inputs shaped unlike the traced example."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    if contract.family == "dense":
        cases = [dict(n=1, t=15, h=23, w=17, seed=2), dict(n=1, t=4, h=5, w=30, seed=3)]
    else:
        cases = [dict(n=3, seed=2), dict(n=1, seed=3)]
    worst = 0.0
    for case in cases:
        feeds = random_inputs(contract, **case)
        onnx_out = session.run(list(contract.outputs), feeds)[0]
        with torch.no_grad():
            torch_out = model(*(torch.from_numpy(feeds[k]) for k in contract.inputs)).numpy()
        if onnx_out.shape != torch_out.shape:
            raise OpenEOError(
                f"export: onnxruntime returned shape {onnx_out.shape}, torch {torch_out.shape}."
            )
        worst = max(worst, float(np.abs(onnx_out - torch_out).max()))
    return worst


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def export(
    checkpoint: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    overwrite: bool = False,
    weights: str = "best",
    tolerance: float = 1e-4,
) -> ExportResult:
    """Export the ``best`` (or ``last``) weights of a training checkpoint to ONNX + STAC item."""
    try:
        import onnx
        import torch
    except ModuleNotFoundError as exc:
        raise FeatureUnsupported(
            reason=f"export needs {exc.name}: pip install 'openeo-deepfeatures[train]'."
        ) from None
    from ..stac import write_item
    from .checkpoint import load_checkpoint
    from .models import build_model

    if weights not in ("best", "last"):
        raise ProcessParameterInvalid(
            process=PROCESS, parameter="weights", reason=f"'best' or 'last', not {weights!r}."
        )
    out_path = Path(out_path)
    item_path = stac_item_path(out_path)
    for target in (out_path, item_path):
        if target.exists() and not overwrite:
            raise ProcessParameterInvalid(
                process=PROCESS,
                parameter="out_path",
                reason=f"{str(target)!r} exists; choose another path or pass overwrite=True.",
            )
    payload = load_checkpoint(checkpoint, process=PROCESS)
    contract = EncoderContract.from_dict(payload["contract"])
    model = build_model(payload["family"], payload["n_channels"], payload["hyper"])
    model.load_state_dict(payload["best_model" if weights == "best" else "model"])
    model.eval()

    proto = _to_onnx(model, contract)
    diff = _parity(model, proto, contract)
    if not diff <= tolerance:
        raise OpenEOError(
            f"export: onnxruntime and torch differ by {diff:.3g} (> {tolerance:g}); not written."
        )
    contract = contract.replace(
        training={
            **contract.training,
            "export": {
                "weights": weights,
                "opset": OPSET,
                "parity_max_abs_diff": diff,
                "torch": _version("torch"),
                "onnx": _version("onnx"),
                "onnxruntime": _version("onnxruntime"),
            },
        }
    )
    onnx.helper.set_model_props(proto, contract.to_metadata())
    proto.doc_string = f"DeepFeatures {contract.family} encoder {contract.name}"
    onnx.checker.check_model(proto)
    with (
        atomic_path(out_path, overwrite=overwrite) as tmp_model,
        atomic_path(item_path, overwrite=overwrite) as tmp_item,
    ):
        onnx.save_model(proto, tmp_model)
        digest = sha256_file(tmp_model)
        item = contract.stac_item(
            tmp_model,
            sha256=digest,
            href=f"./{out_path.name}",
            item_id=out_path.stem,
            total_parameters=sum(p.numel() for p in model.parameters()),
            framework_version=torch.__version__,
        )
        write_item(item, tmp_item, overwrite=True)
    return ExportResult(
        path=out_path, stac_item=item_path, sha256=digest, contract=contract, max_abs_diff=diff
    )
