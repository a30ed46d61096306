"""Training an encoder from a training cube: ``deepfeatures train CONFIG.toml`` (``train`` extra).

A config (TOML file or dict) has five tables; every key is checked, unknown keys and impossible
values raise :class:`~openeo_deepfeatures.errors.ProcessParameterInvalid` naming the key
(``train.learning_rate``)::

    [data]
    cube = "training.zarr"          # a training cube (relative paths: from the config file)
    channels = ["NDVI", "NDMI"]     # optional subset, in this order (default: all)

    [model]
    family = "dense"                # or "patch"; other keys: see models.DEFAULTS
    latent = 6

    [normalisation]
    quantiles = [0.02, 0.98]        # robust range of each channel on the train split
    clip = 4.0

    [train]
    seed = 0
    epochs = 50
    batch_size = 8
    learning_rate = 1e-3
    patience = 5                    # early stopping on the validation loss

    [output]
    dir = "run"                     # checkpoint.pt and metrics.jsonl
    name = "deepfeatures-dense"

Loss: masked MAE on the normalised values of every finite entry (``spectral_angle_weight`` adds
the spectral angle), with ``input_dropout`` of the valid pixel-dates hidden from the input, so
the encoder learns to use the context. AdamW; early stopping on the validation loss (computed
with a fixed dropout draw, so epochs compare). Normalisation offsets/scales are the training
split's robust quantile ranges, stored in the checkpoint and the contract.

Reproducible: the same config and seed give the same weights on the same machine (per-epoch
random generators derived from the seed, deterministic torch algorithms). ``checkpoint.pt`` is
written atomically after every epoch and holds everything to resume; a run whose output folder
holds a checkpoint of the same config continues where it stopped (``epochs`` may grow).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FeatureUnsupported, ProcessParameterInvalid
from ..io import atomic_path
from .contract import EncoderContract, Normalisation, time_inputs

__all__ = ["CHECKPOINT", "FORMAT", "METRICS", "TrainResult", "add_cli", "load_config", "train"]

PROCESS = "train"
FORMAT = "openeo-deepfeatures-checkpoint"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
_REQUIRED = object()


def _invalid(parameter: str, reason: str) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=PROCESS, parameter=parameter, reason=reason)


# --------------------------------------------------------------------------- config checks


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(low: int, high: int | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if not _is_int(v) or v < low or (high is not None and v > high):
            top = "" if high is None else f" and <= {high}"
            return f"must be an integer >= {low}{top}, not {v!r}"
        return None

    return check


def _number(low: float, high: float | None = None, *, open_low: bool = False):
    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if ok:
            ok = (v > low if open_low else v >= low) and (high is None or v <= high)
        if not ok:
            sign = ">" if open_low else ">="
            top = "" if high is None else f" and <= {high}"
            return f"must be a number {sign} {low}{top}, not {v!r}"
        return None

    return check


def _choice(*options: str):
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {list(options)}, not {v!r}"

    return check


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) and v else f"must be a non-empty string, not {v!r}"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, not {v!r}"


def _name(v: Any) -> str | None:
    from .contract import _NAME

    if isinstance(v, str) and _NAME.match(v):
        return None
    return (
        f"must start with a letter, end with a letter or digit and hold only letters, digits, "
        f"'_', '.', '-' and spaces, not {v!r}"
    )


def _channels(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, list) or not v or not all(isinstance(c, str) and c for c in v):
        return f"must be a non-empty list of channel names, not {v!r}"
    if len(set(v)) != len(v):
        return "has duplicates"
    return None


def _int_list(low: int, *, odd: bool = False, length: int | None = None):
    def check(v: Any) -> str | None:
        good = isinstance(v, list) and v and all(_is_int(i) and i >= low for i in v)
        if good and length is not None:
            good = len(v) == length
        if good and odd:
            good = all(i % 2 == 1 for i in v)
        if not good:
            parts = [f"integers >= {low}"] + (["odd"] if odd else [])
            size = f"{length} " if length else ""
            return f"must be a list of {size}{', '.join(parts)}, not {v!r}"
        return None

    return check


def _odd_int(v: Any) -> str | None:
    if _is_int(v) and v >= 1 and v % 2 == 1:
        return None
    return f"must be an odd integer >= 1, not {v!r}"


def _quantiles(v: Any) -> str | None:
    ok = (
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(q, (int, float)) and not isinstance(q, bool) for q in v)
        and 0 <= v[0] < v[1] <= 1
    )
    return None if ok else f"must be two increasing numbers in [0, 1], not {v!r}"


_SCHEMA: dict[str, dict[str, tuple[Any, Callable[[Any], str | None]]]] = {
    "data": {"cube": (_REQUIRED, _string), "channels": (None, _channels)},
    "normalisation": {
        "quantiles": ([0.02, 0.98], _quantiles),
        "clip": (4.0, _number(0.0, open_low=True)),
        "max_values": (1_000_000, _int(1000)),
    },
    "train": {
        "seed": (0, _int(0, 2**63 - 1)),
        "epochs": (50, _int(1)),
        "batch_size": (8, _int(1)),
        "learning_rate": (1e-3, _number(0.0, 1.0, open_low=True)),
        "weight_decay": (1e-4, _number(0.0)),
        "patience": (5, _int(1)),
        "min_delta": (0.0, _number(0.0)),
        "input_dropout": (0.15, _number(0.0, 0.9)),
        "spectral_angle_weight": (0.0, _number(0.0)),
        "max_batches_per_epoch": (0, _int(0)),
        "device": ("auto", _choice("auto", "cpu", "cuda")),
        "threads": (0, _int(0)),
        "progress": (True, _bool),
    },
    "output": {
        "dir": (_REQUIRED, _string),
        "name": (None, _name),
        "model_version": ("0.1.0", _string),
        "resume": (True, _bool),
    },
}

_MODEL_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "latent": _int(1, 256),
    "width": _int(4, 1024),
    "spatial_dilations": _int_list(1),
    "temporal_dilations": _int_list(1),
    "fill_window": _odd_int,
    "decoder_width": _int(4, 1024),
    "latent_activation": _choice("none", "softplus"),
    "heads": _int(1, 64),
    "layers": _int(1, 32),
    "patch_size": _int_list(1, odd=True, length=3),
}

#: Keys that do not change the trained weights (left out of the config hash).
_NOT_HASHED = {("data", "cube"), ("train", "progress"), ("train", "threads"), ("output", None)}


def _check_model(table: Any) -> dict[str, Any]:
    from .models import DEFAULTS

    if not isinstance(table, dict):
        raise _invalid("model", f"must be a table, not {table!r}")
    family = table.get("family", "dense")
    if family not in DEFAULTS:
        raise _invalid("model.family", f"must be one of {sorted(DEFAULTS)}, not {family!r}")
    out: dict[str, Any] = {"family": family}
    for key, value in table.items():
        if key == "family":
            continue
        if key not in DEFAULTS[family]:
            raise _invalid(
                f"model.{key}",
                f"unknown key for a {family} model; known keys: {sorted(DEFAULTS[family])}.",
            )
        problem = _MODEL_CHECKS[key](value)
        if problem:
            raise _invalid(f"model.{key}", problem)
        out[key] = value
    hyper = {**DEFAULTS[family], **out}
    if family == "dense" and len(hyper["spatial_dilations"]) != len(hyper["temporal_dilations"]):
        raise _invalid(
            "model.temporal_dilations",
            f"needs as many entries as model.spatial_dilations ({len(hyper['spatial_dilations'])}).",
        )
    if family == "patch":
        if hyper["width"] % hyper["heads"]:
            raise _invalid("model.heads", f"must divide model.width ({hyper['width']}).")
        t, h, w = hyper["patch_size"]
        if h != w:
            raise _invalid("model.patch_size", f"needs square patches (H == W), not {[t, h, w]}.")
    return hyper


def load_config(config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Read (TOML path) and check a training config; returns it complete with defaults.

    Relative paths (``data.cube``, ``output.dir``) are taken from the config file's folder.
    """
    base = Path.cwd()
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise _invalid("config", f"cannot read {str(path)!r}: {exc.strerror}.") from None
        except tomllib.TOMLDecodeError as exc:
            raise _invalid("config", f"{path.name} is not valid TOML: {exc}.") from None
        base = path.resolve().parent
    elif isinstance(config, Mapping):
        raw = copy.deepcopy(dict(config))
    else:
        raise _invalid("config", f"must be a dict or the path of a TOML file, not {config!r}")
    unknown = sorted(set(raw) - set(_SCHEMA) - {"model"})
    if unknown:
        raise _invalid(unknown[0], f"unknown table; known: {sorted([*_SCHEMA, 'model'])}.")
    out: dict[str, Any] = {"model": _check_model(raw.get("model", {}))}
    for section, keys in _SCHEMA.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise _invalid(section, f"must be a table, not {table!r}")
        for key in table:
            if key not in keys:
                raise _invalid(f"{section}.{key}", f"unknown key; known keys: {sorted(keys)}.")
        values = {}
        for key, (default, check) in keys.items():
            if key not in table:
                if default is _REQUIRED:
                    raise _invalid(f"{section}.{key}", "is required.")
                values[key] = copy.deepcopy(default)
                continue
            problem = check(table[key])
            if problem:
                raise _invalid(f"{section}.{key}", problem)
            values[key] = table[key]
        out[section] = values
    out["data"]["cube"] = str((base / out["data"]["cube"]).resolve())
    out["output"]["dir"] = str((base / out["output"]["dir"]).resolve())
    if out["output"]["name"] is None:
        out["output"]["name"] = f"deepfeatures-{out['model']['family']}"
    return out


def _config_sha256(cfg: Mapping[str, Any], *, ignore_epochs: bool = False) -> str:
    """sha256 of the keys that shape the weights (not paths, progress, threads, output)."""
    kept: dict[str, Any] = {}
    for section, table in cfg.items():
        if (section, None) in _NOT_HASHED:
            continue
        kept[section] = {
            k: v
            for k, v in table.items()
            if (section, k) not in _NOT_HASHED and not (ignore_epochs and k == "epochs")
        }
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- data


@dataclass
class _Split:
    x: np.ndarray  # (n, t, c, h, w) float32 normalised, NaN -> 0
    valid: np.ndarray  # (n, t, 1, h, w) float32
    finite: np.ndarray  # (n, t, c, h, w) bool: entries that count in the loss
    day: np.ndarray  # (n, t) float32
    doy: np.ndarray  # (n, t) float32

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class _Data:
    train: _Split
    validation: _Split
    channels: list[str]
    normalisation: Normalisation
    sha256: str
    provenance: dict[str, Any]


def _load_data(cfg: Mapping[str, Any]) -> _Data:
    from .training_cube import open_training_cube, training_cube_provenance

    ds = open_training_cube(cfg["data"]["cube"], verify=True)
    info = training_cube_provenance(ds)
    available = [str(c) for c in ds["channel"].values.tolist()]
    channels = cfg["data"]["channels"] or available
    missing = [c for c in channels if c not in available]
    if missing:
        raise _invalid("data.channels", f"{missing} are not in the training cube {available}.")
    split = np.array([str(s) for s in ds["split"].values.tolist()])
    counts = {s: int((split == s).sum()) for s in ("train", "validation")}
    for name, n in counts.items():
        if n == 0:
            raise _invalid(
                "data.cube",
                f"the training cube has no {name} samples (splits: "
                f"{ {s: int((split == s).sum()) for s in np.unique(split)} }); make one with "
                "more samples or another split.",
            )
    x_all = np.asarray(ds["x"].values, dtype=np.float32)[
        :, :, [available.index(c) for c in channels]
    ]
    raw = {s: x_all[split == s] for s in counts}
    days = {s: np.asarray(ds["day"].values[split == s]) for s in counts}

    norm_cfg = cfg["normalisation"]
    train_x = raw["train"]
    per_channel = np.moveaxis(train_x, 2, 0).reshape(len(channels), -1)
    rng = np.random.default_rng(cfg["train"]["seed"])
    low, high = [], []
    for name, values in zip(channels, per_channel, strict=True):
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise _invalid(
                "data.channels",
                f"channel {name!r} has no finite value in the train split; drop it.",
            )
        if values.size > norm_cfg["max_values"]:
            values = rng.choice(values, norm_cfg["max_values"], replace=False)
        q = np.quantile(values.astype(np.float64), norm_cfg["quantiles"])
        low.append(q[0])
        high.append(q[1])
    normalisation = Normalisation.from_quantiles(
        low, high, clip=norm_cfg["clip"], quantiles=tuple(norm_cfg["quantiles"])
    )

    def prepare(x: np.ndarray, day: np.ndarray) -> _Split:
        x_n, valid = normalisation.apply(x, axis=2)
        rel, doy = time_inputs(day)
        return _Split(x_n, valid, np.isfinite(x), rel, doy)

    splits = {s: prepare(raw[s], days[s]) for s in counts}
    for name, part in splits.items():
        if not part.finite.any():
            raise _invalid("data.cube", f"the {name} split has no valid (finite) values.")
    return _Data(
        train=splits["train"],
        validation=splits["validation"],
        channels=list(channels),
        normalisation=normalisation,
        sha256=str(info.get("content_sha256")),
        provenance=info,
    )


def _crop_sizes(cfg: Mapping[str, Any], data: _Data) -> tuple[int, int, int] | None:
    """The patch (T, H, W) a patch model is trained on, or None (dense: whole samples)."""
    if cfg["model"]["family"] != "patch":
        return None
    t, h, w = cfg["model"]["patch_size"]
    have = data.train.x.shape
    if have[1] < t or have[3] < h or have[4] < w:
        raise _invalid(
            "model.patch_size",
            f"{[t, h, w]} is larger than the training cube's samples (T, H, W) "
            f"{[have[1], have[3], have[4]]}.",
        )
    return t, h, w


def _crop(part: _Split, idx: np.ndarray, size, rng: np.random.Generator | None):
    """Batch ``idx`` of ``part``, cropped to ``size`` at random (rng) or in the centre."""
    arrays = [part.x[idx], part.valid[idx], part.finite[idx], part.day[idx], part.doy[idx]]
    if size is None:
        return arrays
    t, h, w = size
    _, nt, _, nh, nw = part.x.shape
    if rng is None:
        starts = [((nt - t) // 2, (nh - h) // 2, (nw - w) // 2)] * len(idx)
    else:
        starts = list(
            zip(
                rng.integers(0, nt - t + 1, len(idx)),
                rng.integers(0, nh - h + 1, len(idx)),
                rng.integers(0, nw - w + 1, len(idx)),
                strict=True,
            )
        )
    out = [[] for _ in arrays]
    for i, (t0, y0, x0) in enumerate(starts):
        for j, a in enumerate(arrays[:3]):
            out[j].append(a[i, t0 : t0 + t, :, y0 : y0 + h, x0 : x0 + w])
        for j, a in enumerate(arrays[3:], start=3):
            out[j].append(a[i, t0 : t0 + t])
    return [np.stack(o) for o in out]


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    metrics: Path
    epochs: int
    best_epoch: int
    best_validation_loss: float
    stopped_early: bool
    contract: EncoderContract


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("openeo-deepfeatures", "torch", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _loss(model, batch, dropout: float, rng: np.random.Generator, sa_weight: float, device):
    """Masked MAE (+ spectral angle) of one batch; returns (loss, mae, per-channel |err| sums)."""
    import torch

    x, valid, finite, day, doy = batch
    keep = (rng.random(valid.shape) >= dropout).astype(np.float32) if dropout > 0 else 1.0

    def to(a: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    xt, vt, ft = to(x), to(valid), to(finite)
    kt = to(np.broadcast_to(keep, valid.shape).astype(np.float32))
    pred = model.reconstruct(xt * kt, vt * kt, to(day), to(doy))
    target, mask, weight = model.targets(xt, ft)
    w = mask.to(pred.dtype)
    if weight is not None:
        w = w * weight
    err = (pred - target).abs() * w
    mae = err.sum() / w.sum().clamp_min(1e-6)
    loss = mae
    channel_axis = 1 if pred.dim() == 4 else 2
    if sa_weight > 0:
        m = mask.to(pred.dtype)
        dot = (pred * target * m).sum(channel_axis)
        norms = (pred * m).norm(dim=channel_axis) * (target * m).norm(dim=channel_axis)
        cos = (dot / (norms + 1e-6)).clamp(-1 + 1e-6, 1 - 1e-6)
        has = m.amax(channel_axis)
        angle = (torch.acos(cos) * has).sum() / has.sum().clamp_min(1.0)
        loss = loss + sa_weight * angle
    dims = [d for d in range(err.dim()) if d != channel_axis]
    per_channel = (err.sum(dims), w.sum(dims))
    return loss, mae, per_channel


def _evaluate(model, part: _Split, cfg, size, device, *, dropout: float) -> dict[str, Any]:
    import torch

    rng = np.random.default_rng([cfg["train"]["seed"], 2**31 - 1])  # the same draw every epoch
    bs = cfg["train"]["batch_size"]
    total, total_mae, weight = 0.0, 0.0, 0.0
    err_sum, w_sum = None, None
    model.eval()
    with torch.no_grad():
        for start in range(0, len(part), bs):
            idx = np.arange(start, min(start + bs, len(part)))
            batch = _crop(part, idx, size, None)
            loss, mae, (e, w) = _loss(
                model, batch, dropout, rng, cfg["train"]["spectral_angle_weight"], device
            )
            total += float(loss) * len(idx)
            total_mae += float(mae) * len(idx)
            weight += len(idx)
            err_sum = e if err_sum is None else err_sum + e
            w_sum = w if w_sum is None else w_sum + w
    per_channel = (err_sum / w_sum.clamp_min(1e-6)).cpu().tolist()
    return {"loss": total / weight, "mae": total_mae / weight, "per_channel": per_channel}


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise _invalid("train.device", "'cuda' was asked for, but torch sees no CUDA device.")
    return torch.device(name)


@contextlib.contextmanager
def _deterministic(threads: int, device):
    """Deterministic torch algorithms (and a thread count) for the run; restored afterwards."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    threads_before = torch.get_num_threads()
    if device.type == "cuda":  # cuBLAS needs this before its first use to be deterministic
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_before)
        torch.set_num_threads(threads_before)


def _contract(cfg, data: _Data, model, state: Mapping[str, Any]) -> EncoderContract:
    rf = model.receptive_field()
    family = cfg["model"]["family"]
    prov = data.provenance
    return EncoderContract(
        name=cfg["output"]["name"],
        model_version=cfg["output"]["model_version"],
        family=family,
        channels=tuple(data.channels),
        normalisation=data.normalisation,
        spatial_radius=rf["spatial"],
        temporal_window=2 * rf["temporal"] + 1,
        features=tuple(f"F{i + 1:02d}" for i in range(cfg["model"]["latent"])),
        patch_size=tuple(cfg["model"]["patch_size"]) if family == "patch" else None,
        training={
            "data_sha256": data.sha256,
            "config_sha256": _config_sha256(cfg),
            "seed": cfg["train"]["seed"],
            "best_epoch": state["best_epoch"],
            "epochs": state["epoch"],
            "validation_loss": state["best_val"],
            "validation_mae_per_channel": dict(
                zip(data.channels, state["best_per_channel"], strict=True)
            ),
            "samples": {"train": len(data.train), "validation": len(data.validation)},
            "training_cube": {
                "kind": prov.get("kind"),
                "size": prov.get("size"),
                "source_sha256": (prov.get("source") or {}).get("sha256"),
            },
            "loss": "masked MAE on normalised values"
            + (" + spectral angle" if cfg["train"]["spectral_angle_weight"] > 0 else ""),
            "versions": _versions(),
        },
    )


def _save(path: Path, payload: dict[str, Any]) -> None:
    import torch

    with atomic_path(path, overwrite=True) as tmp:
        torch.save(payload, tmp)


def _write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
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


def train(
    config: Mapping[str, Any] | str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    resume: bool | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train an encoder as ``config`` says (see the module docstring); returns where it went.

    ``output``, ``resume`` and ``progress`` override ``output.dir``, ``output.resume`` and
    ``train.progress``.
    """
    try:
        import torch
    except ModuleNotFoundError:
        raise FeatureUnsupported(
            reason="training needs torch: pip install 'openeo-deepfeatures[train]'."
        ) from None
    from tqdm.auto import tqdm

    from .models import build_model

    cfg = load_config(config)
    if output is not None:
        cfg["output"]["dir"] = str(Path(output).resolve())
    if resume is not None:
        cfg["output"]["resume"] = bool(resume)
    if progress is not None:
        cfg["train"]["progress"] = bool(progress)
    out_dir = Path(cfg["output"]["dir"])
    ckpt_path, metrics_path = out_dir / CHECKPOINT, out_dir / METRICS
    tcfg = cfg["train"]
    device = _device(tcfg["device"])
    data = _load_data(cfg)
    size = _crop_sizes(cfg, data)
    hyper = {k: v for k, v in cfg["model"].items() if k != "family"}

    with _deterministic(tcfg["threads"], device):
        torch.manual_seed(tcfg["seed"])
        model = build_model(cfg["model"]["family"], len(data.channels), hyper).to(device)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=tcfg["learning_rate"], weight_decay=tcfg["weight_decay"]
        )
        state: dict[str, Any] = {
            "epoch": 0,
            "best_epoch": 0,
            "best_val": math.inf,
            "best_per_channel": [math.nan] * len(data.channels),
            "bad_epochs": 0,
            "stopped": False,
            "history": [],
        }
        best_weights = copy.deepcopy(model.state_dict())
        if ckpt_path.exists() and cfg["output"]["resume"]:
            saved = load_checkpoint(ckpt_path)
            if saved["config_sha256_no_epochs"] != _config_sha256(cfg, ignore_epochs=True) or (
                saved["data_sha256"] != data.sha256
            ):
                raise _invalid(
                    "output.dir",
                    f"{ckpt_path} is from another config or training cube; use another output "
                    "folder, or resume = false to start again.",
                )
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            best_weights = saved["best_model"]
            state = saved["state"]
        out_dir.mkdir(parents=True, exist_ok=True)

        n_train = len(data.train)
        bs = tcfg["batch_size"]
        n_batches = math.ceil(n_train / bs)
        if tcfg["max_batches_per_epoch"]:
            n_batches = min(n_batches, tcfg["max_batches_per_epoch"])
        bar = tqdm(
            total=tcfg["epochs"],
            initial=min(state["epoch"], tcfg["epochs"]),
            desc=f"train {cfg['model']['family']}",
            unit="epoch",
            disable=not tcfg["progress"],
            file=sys.stderr,
        )
        while state["epoch"] < tcfg["epochs"] and not state["stopped"]:
            epoch = state["epoch"]
            t0 = time.perf_counter()
            rng = np.random.default_rng([tcfg["seed"], epoch])
            order = rng.permutation(n_train)
            model.train()
            total = 0.0
            for b in range(n_batches):
                idx = np.sort(order[b * bs : (b + 1) * bs])
                batch = _crop(data.train, idx, size, rng)
                loss, _, _ = _loss(
                    model, batch, tcfg["input_dropout"], rng, tcfg["spectral_angle_weight"], device
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            val = _evaluate(
                model, data.validation, cfg, size, device, dropout=tcfg["input_dropout"]
            )
            recon = _evaluate(model, data.validation, cfg, size, device, dropout=0.0)
            if not (math.isfinite(total) and math.isfinite(val["loss"])):
                raise _invalid(
                    "train.learning_rate",
                    f"the loss became NaN or infinite in epoch {epoch + 1}; lower the learning "
                    "rate (the checkpoint of the epoch before is kept).",
                )
            state["epoch"] = epoch + 1
            improved = val["loss"] < state["best_val"] - tcfg["min_delta"]
            if improved:
                state.update(
                    best_val=val["loss"],
                    best_epoch=epoch + 1,
                    best_per_channel=recon["per_channel"],
                    bad_epochs=0,
                )
                best_weights = copy.deepcopy(model.state_dict())
            else:
                state["bad_epochs"] += 1
                state["stopped"] = state["bad_epochs"] >= tcfg["patience"]
            row = {
                "epoch": epoch + 1,
                "train_loss": total / n_batches,
                "validation_loss": val["loss"],
                "validation_mae": recon["mae"],
                "validation_mae_per_channel": dict(
                    zip(data.channels, recon["per_channel"], strict=True)
                ),
                "best": improved,
                "seconds": round(time.perf_counter() - t0, 3),
            }
            state["history"].append(row)
            contract = _contract(cfg, data, model, state)
            _save(
                ckpt_path,
                {
                    "format": FORMAT,
                    "format_version": 1,
                    "config": cfg,
                    "config_sha256": _config_sha256(cfg),
                    "config_sha256_no_epochs": _config_sha256(cfg, ignore_epochs=True),
                    "data_sha256": data.sha256,
                    "family": cfg["model"]["family"],
                    "n_channels": len(data.channels),
                    "hyper": hyper,
                    "model": model.state_dict(),
                    "best_model": best_weights,
                    "optimizer": optimizer.state_dict(),
                    "state": state,
                    "contract": contract.to_dict(),
                },
            )
            _write_metrics(metrics_path, state["history"])
            bar.update(1)
            bar.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{val['loss']:.4f}")
        bar.close()

    if not ckpt_path.exists():  # nothing trained (epochs already reached in a resumed run)
        raise _invalid("train.epochs", "no epoch was trained.")
    saved = load_checkpoint(ckpt_path)
    return TrainResult(
        checkpoint=ckpt_path,
        metrics=metrics_path,
        epochs=saved["state"]["epoch"],
        best_epoch=saved["state"]["best_epoch"],
        best_validation_loss=saved["state"]["best_val"],
        stopped_early=saved["state"]["stopped"],
        contract=EncoderContract.from_dict(saved["contract"]),
    )


# --------------------------------------------------------------------------- CLI


def _cmd_train(args: argparse.Namespace) -> int:
    result = train(
        args.config,
        output=args.output,
        resume=False if args.restart else None,
        progress=False if args.quiet else None,
    )
    if not args.quiet:
        print(
            f"trained {result.contract.family} encoder {result.contract.name!r}: "
            f"{result.epochs} epochs, best {result.best_epoch} "
            f"(validation loss {result.best_validation_loss:.4f})"
            f"{', stopped early' if result.stopped_early else ''} -> {result.checkpoint}",
            file=sys.stderr,
        )
    return 0


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """``deepfeatures train CONFIG.toml``."""
    p = subparsers.add_parser(
        "train",
        help="train an encoder from a training cube (needs the `train` extra: torch)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("config", help="training config (TOML)")
    p.add_argument("-o", "--output", help="output folder (overrides [output] dir)")
    p.add_argument("--restart", action="store_true", help="start again even if a checkpoint exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
    return p
