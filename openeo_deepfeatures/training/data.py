"""The training cube read for training: the channels of a config, normalised by the robust
range of the train split, as arrays ready for batches (and crops of them for patch models)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..encoder.contract import Normalisation, time_inputs
from .config import invalid
from .cube import open_training_cube, training_cube_provenance


@dataclass
class Split:
    x: np.ndarray  # (n, t, c, h, w) float32 normalised, NaN -> 0
    valid: np.ndarray  # (n, t, 1, h, w) float32
    finite: np.ndarray  # (n, t, c, h, w) bool: entries that count in the loss
    day: np.ndarray  # (n, t) float32
    doy: np.ndarray  # (n, t) float32

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class TrainingData:
    train: Split
    validation: Split
    channels: list[str]
    normalisation: Normalisation
    sha256: str
    provenance: dict[str, Any]


def load_data(cfg: Mapping[str, Any]) -> TrainingData:
    ds = open_training_cube(cfg["data"]["cube"], verify=True)
    info = training_cube_provenance(ds)
    available = [str(c) for c in ds["channel"].values.tolist()]
    channels = cfg["data"]["channels"] or available
    missing = [c for c in channels if c not in available]
    if missing:
        raise invalid("data.channels", f"{missing} are not in the training cube {available}.")
    split = np.array([str(s) for s in ds["split"].values.tolist()])
    counts = {s: int((split == s).sum()) for s in ("train", "validation")}
    for name, n in counts.items():
        if n == 0:
            raise invalid(
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
            raise invalid(
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

    def prepare(x: np.ndarray, day: np.ndarray) -> Split:
        x_n, valid = normalisation.apply(x, axis=2)
        rel, doy = time_inputs(day)
        return Split(x_n, valid, np.isfinite(x), rel, doy)

    splits = {s: prepare(raw[s], days[s]) for s in counts}
    for name, part in splits.items():
        if not part.finite.any():
            raise invalid("data.cube", f"the {name} split has no valid (finite) values.")
    return TrainingData(
        train=splits["train"],
        validation=splits["validation"],
        channels=list(channels),
        normalisation=normalisation,
        sha256=str(info.get("content_sha256")),
        provenance=info,
    )


def crop_sizes(cfg: Mapping[str, Any], data: TrainingData) -> tuple[int, int, int] | None:
    """The patch (T, H, W) a patch model is trained on, or None (dense: whole samples)."""
    if cfg["model"]["family"] != "patch":
        return None
    t, h, w = cfg["model"]["patch_size"]
    have = data.train.x.shape
    if have[1] < t or have[3] < h or have[4] < w:
        raise invalid(
            "model.patch_size",
            f"{[t, h, w]} is larger than the training cube's samples (T, H, W) "
            f"{[have[1], have[3], have[4]]}.",
        )
    return t, h, w


def crop(part: Split, idx: np.ndarray, size, rng: np.random.Generator | None):
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
