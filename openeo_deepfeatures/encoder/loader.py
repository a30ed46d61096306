"""Loading encoders: the UDF kernel's model loader, with what only the package adds.

The loader itself (file digest, download cache, providers, one onnxruntime session per file,
sha256, providers and threads and process) is :func:`open_model` of ``udf/feature_embedding.py``,
the file the UDF runs on openEO backends; the package imports it as
``openeo_deepfeatures.udf.feature_embedding``. Here: shipped models by name, the full contract
(:class:`~openeo_deepfeatures.encoder.contract.EncoderContract`) checked against the graph, and
openEO-coded errors. URLs go through the execution policy in
:func:`~openeo_deepfeatures.encoder.download.cached_model`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProcessParameterInvalid, ProcessParameterMissing
from ..udf import feature_embedding as udf_kernel
from .contract import EncoderContract
from .shipped import SHIPPED_MODELS, shipped_model_path

__all__ = [
    "CPU",
    "CUDA",
    "Encoder",
    "as_encoder",
    "available_providers",
    "clear_session_cache",
    "get_session",
    "kernel_errors",
    "load_encoder",
    "read_onnx_metadata",
    "resolve_providers",
]

log = logging.getLogger(__name__)

CPU = udf_kernel.CPU
CUDA = udf_kernel.CUDA
_PROCESS = "load_encoder"


@contextlib.contextmanager
def kernel_errors(process: str, **parameters: str) -> Iterator[None]:
    """The UDF kernel's errors as openEO-coded ones of ``process``; ``parameters`` renames
    the kernel's parameter names (``model="path"``)."""
    try:
        yield
    except udf_kernel.UdfError as exc:
        parameter = parameters.get(exc.parameter, exc.parameter) or "model"
        raise ProcessParameterInvalid(
            process=process, parameter=parameter, reason=exc.reason
        ) from None


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


# --------------------------------------------------------------------------- providers


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (``onnxruntime-gpu``: CUDA...)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(
    providers: Sequence[str] | str | None = None, *, process: str = "embed"
) -> tuple[str, ...]:
    """The providers a session will use: CUDA then CPU when onnxruntime offers CUDA, else CPU
    (``None``), or the given ones, each of which must be available (else
    :class:`ProcessParameterInvalid` names the available ones)."""
    with kernel_errors(process):
        chosen = udf_kernel.resolve_providers(providers)
    if providers is None:
        log.info("onnxruntime providers: %s (available: %s)", list(chosen), available_providers())
    return chosen


# --------------------------------------------------------------------------- sessions


def get_session(
    path: str | os.PathLike,
    sha256: str,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
):
    """The cached ``onnxruntime.InferenceSession`` of a model in this process (the kernel's
    :func:`open_model`): one per ``(file, sha256, providers, threads)``; the file's sha256 is
    computed once per version of the file. ``threads``: onnxruntime intra-op threads
    (``None``: onnxruntime's default, one per core)."""
    chosen = resolve_providers(providers)
    with kernel_errors("embed", model="encoder"):
        return udf_kernel.open_model(path, sha256, providers=chosen, threads=threads).session


def clear_session_cache() -> None:
    """Forget the sessions and file digests of this process (e.g. after a model was replaced
    in place with the same modification time)."""
    udf_kernel.clear_caches()


# --------------------------------------------------------------------------- encoders


def _default_path() -> Path:
    path = shipped_model_path("default")
    if path is None:
        raise ProcessParameterMissing(
            "load_encoder(): no default encoder is shipped with this version of "
            "openeo-deepfeatures yet; pass the path of an ONNX encoder (make one with "
            "`deepfeatures train CONFIG.toml` and `deepfeatures export CHECKPOINT -o model.onnx`).",
            process=_PROCESS,
            parameter="path",
        )
    return path


def _model_path(path: str | os.PathLike | None) -> Path:
    if path is None:
        return _default_path()
    if isinstance(path, str) and path in SHIPPED_MODELS and not Path(path).exists():
        shipped = shipped_model_path(path)
        if shipped is None:
            raise ProcessParameterInvalid(
                process=_PROCESS,
                parameter="path",
                reason=f"the shipped model {path!r} is not installed with this package.",
            )
        return shipped
    path = Path(path)
    if not path.is_file():
        names = ", ".join(repr(n) for n in SHIPPED_MODELS)
        raise ProcessParameterInvalid(
            process=_PROCESS,
            parameter="path",
            reason=f"{str(path)!r} is not a file (nor a shipped model: {names}).",
        )
    return path


def load_encoder(
    path: str | os.PathLike | None = None,
    *,
    sha256: str | None = None,
    providers: list[str] | None = None,
) -> Encoder:
    """Open an ONNX encoder, check its sha256 (when given) and validate its contract.

    ``path``: an ONNX file, the name of a shipped model (``"default"``: B02, B03, B04, B08,
    B8A, B11; ``"s2-10m"``: B02, B03, B04, B08; see
    :data:`~openeo_deepfeatures.encoder.shipped.SHIPPED_MODELS`), or None for the default.
    The session is the one :func:`get_session` returns for the same file and providers (and
    the default threads), so a run opens and hashes its model once.

    Raises :class:`~openeo_deepfeatures.errors.ProcessParameterInvalid` for a missing file, a
    sha256 mismatch (truncated or altered file), a file that is not ONNX, or a model without a
    valid DeepFeatures contract or whose graph does not match its contract.
    """
    path = _model_path(path)
    chosen = resolve_providers(providers, process=_PROCESS)
    with kernel_errors(_PROCESS, model="path"):
        opened = udf_kernel.open_model(path, sha256, providers=chosen)
    session = opened.session
    contract = EncoderContract.from_metadata(opened.metadata)
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
    return Encoder(path=path, sha256=opened.sha256, contract=contract, session=session)


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (through the cached loader)."""
    with kernel_errors(_PROCESS, model="path"):
        return dict(udf_kernel.open_model(path).metadata)


def as_encoder(
    model: Encoder | str | os.PathLike | None, *, process: str = _PROCESS, parameter: str = "model"
) -> Encoder:
    """``model`` as an :class:`Encoder`: an Encoder as it is, else :func:`load_encoder` of it
    (a path, a shipped model's name, or None for the default)."""
    if isinstance(model, Encoder):
        return model
    if model is None or isinstance(model, (str, os.PathLike)):
        return load_encoder(model)
    raise ProcessParameterInvalid(
        process=process,
        parameter=parameter,
        reason=f"an Encoder, the path of an ONNX encoder or None, not {type(model).__name__}.",
    )
