"""Training an encoder from a training cube: ``deepfeatures train CONFIG.toml`` (``train`` extra).

The config is read and checked by :func:`~openeo_deepfeatures.training.config.load_config`.

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

import contextlib
import copy
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..encoder.contract import EncoderContract
from ..errors import FeatureUnsupported
from .checkpoint import (
    CHECKPOINT,
    FORMAT,
    METRICS,
    load_checkpoint,
    save_checkpoint,
    write_metrics,
)
from .config import config_sha256, invalid, load_config
from .data import Split, TrainingData, crop, crop_sizes, load_data

__all__ = ["TrainResult", "train"]


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


def _evaluate(model, part: Split, cfg, size, device, *, dropout: float) -> dict[str, Any]:
    import torch

    rng = np.random.default_rng([cfg["train"]["seed"], 2**31 - 1])  # the same draw every epoch
    bs = cfg["train"]["batch_size"]
    total, total_mae, weight = 0.0, 0.0, 0.0
    err_sum, w_sum = None, None
    model.eval()
    with torch.no_grad():
        for start in range(0, len(part), bs):
            idx = np.arange(start, min(start + bs, len(part)))
            batch = crop(part, idx, size, None)
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
        raise invalid("train.device", "'cuda' was asked for, but torch sees no CUDA device.")
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


def _contract(cfg, data: TrainingData, model, state: Mapping[str, Any]) -> EncoderContract:
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
            "config_sha256": config_sha256(cfg),
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
    data = load_data(cfg)
    size = crop_sizes(cfg, data)
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
            if saved["config_sha256_no_epochs"] != config_sha256(cfg, ignore_epochs=True) or (
                saved["data_sha256"] != data.sha256
            ):
                raise invalid(
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
                batch = crop(data.train, idx, size, rng)
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
                raise invalid(
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
            save_checkpoint(
                ckpt_path,
                {
                    "format": FORMAT,
                    "format_version": 1,
                    "config": cfg,
                    "config_sha256": config_sha256(cfg),
                    "config_sha256_no_epochs": config_sha256(cfg, ignore_epochs=True),
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
            write_metrics(metrics_path, state["history"])
            bar.update(1)
            bar.set_postfix(train=f"{row['train_loss']:.4f}", val=f"{val['loss']:.4f}")
        bar.close()

    if not ckpt_path.exists():  # nothing trained (epochs already reached in a resumed run)
        raise invalid("train.epochs", "no epoch was trained.")
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
