"""Which samples a training cube holds: the options, the validity rules and the block-wise
train/validation/test split (see :mod:`openeo_deepfeatures.training.cube` for the rules)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import NoDataAvailable, ProcessParameterInvalid

if TYPE_CHECKING:
    from .cube_source import Source

PROCESS = "make_training_cube"
SPLITS = ("train", "validation", "test")
#: Default sample size (T, H, W) per kind.
DEFAULT_SIZE = {"tile": (16, 32, 32), "patch": (11, 15, 15)}
KINDS = tuple(DEFAULT_SIZE)


def invalid(parameter: str, reason: str, process: str = PROCESS) -> ProcessParameterInvalid:
    return ProcessParameterInvalid(process=process, parameter=parameter, reason=reason)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _positive_ints(value: Any, parameter: str, lengths: tuple[int, ...]) -> tuple[int, ...]:
    items = tuple(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if items is None or len(items) not in lengths or not all(_is_int(v) and v >= 1 for v in items):
        want = " or ".join(str(n) for n in lengths)
        raise invalid(parameter, f"expected {want} integers >= 1, got {value!r}.")
    return tuple(int(v) for v in items)


def block_text(block: tuple[int | None, int, int]) -> str:
    t, h, w = block
    return f"{h}x{w} px" if t is None else f"{t} dates x {h}x{w} px"


@dataclass(frozen=True)
class Options:
    kind: str
    size: tuple[int, int, int]
    n_samples: int
    seed: int
    min_clear_fraction: float
    max_gap_days: float | None
    split: tuple[float, float, float]
    block: tuple[int | None, int, int]
    stride: tuple[int, int, int]


def check_options(
    kind: Any,
    size: Any,
    n_samples: Any,
    seed: Any,
    min_clear_fraction: Any,
    max_gap_days: Any,
    split: Any,
    block: Any,
    stride: Any,
) -> Options:
    if kind not in KINDS:
        raise invalid("kind", f"expected one of {list(KINDS)}, got {kind!r}.")
    size = DEFAULT_SIZE[kind] if size is None else _positive_ints(size, "size", (3,))
    if kind == "patch" and any(n % 2 == 0 for n in size):
        raise invalid(
            "size",
            f"patches are centred on their target pixel and date, so T, H, W must be odd; "
            f"got {size}.",
        )
    if not _is_int(n_samples) or n_samples < 1:
        raise invalid("n_samples", f"expected an integer >= 1, got {n_samples!r}.")
    if not _is_int(seed) or seed < 0:
        raise invalid("seed", f"expected an integer >= 0, got {seed!r}.")
    if not _is_number(min_clear_fraction) or not 0 <= min_clear_fraction <= 1:
        raise invalid(
            "min_clear_fraction", f"expected a number in [0, 1], got {min_clear_fraction!r}."
        )
    if max_gap_days is not None and (
        not _is_number(max_gap_days) or not math.isfinite(max_gap_days) or max_gap_days <= 0
    ):
        raise invalid(
            "max_gap_days", f"expected a number of days > 0 (or None), got {max_gap_days!r}."
        )
    fractions = tuple(split) if isinstance(split, (list, tuple, np.ndarray)) else None
    if (
        fractions is None
        or len(fractions) != len(SPLITS)
        or not all(_is_number(f) and math.isfinite(f) and f >= 0 for f in fractions)
    ):
        raise invalid(
            "split",
            f"expected three fractions >= 0 for {'/'.join(SPLITS)}, got {split!r}.",
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise invalid("split", f"the fractions {list(fractions)} sum to {sum(fractions):g}, not 1.")
    T, H, W = size
    if block is None:
        block3: tuple[int | None, int, int] = (None, 2 * H, 2 * W)
    else:
        given = _positive_ints(block, "block", (2, 3))
        block3 = (None, *given) if len(given) == 2 else given  # type: ignore[assignment]
    bt, bh, bw = block3
    if bh < H or bw < W or (bt is not None and bt < T):
        raise invalid(
            "block",
            f"a sample must fit in one split block; blocks of {block_text(block3)} are "
            f"smaller than the sample size {size} (T, H, W).",
        )
    stride = (1, 1, 1) if stride is None else _positive_ints(stride, "stride", (3,))
    return Options(
        kind=kind,
        size=size,  # type: ignore[arg-type]
        n_samples=int(n_samples),
        seed=int(seed),
        min_clear_fraction=float(min_clear_fraction),
        max_gap_days=None if max_gap_days is None else float(max_gap_days),
        split=tuple(float(f) for f in fractions),  # type: ignore[arg-type]
        block=block3,
        stride=stride,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- selection


def allocate(total: int, fractions: Sequence[float]) -> list[int]:
    """Split ``total`` by ``fractions`` (largest remainder), at least 1 for each positive one."""
    raw = [total * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0:
            donor = max(range(len(counts)), key=lambda k: (counts[k], -k))
            counts[donor] -= 1
            counts[i] += 1
    return counts


@dataclass
class Selection:
    t0: np.ndarray
    y0: np.ndarray
    x0: np.ndarray
    block: np.ndarray
    split: np.ndarray  # index into SPLITS
    counts: dict[str, Any]
    blocks: dict[str, list[int]]
    block_grid: dict[str, int]


def select(source: Source, clear: np.ndarray, opts: Options) -> Selection:
    nt, _, ny, nx = source.shape
    T, H, W = opts.size
    for name, n, have in (("dates", T, nt), ("rows", H, ny), ("columns", W, nx)):
        if n > have:
            raise invalid(
                "size",
                f"the sample size {opts.size} (T, H, W) needs {n} {name}; the cube has {have}.",
            )
    bt, bh, bw = opts.block
    st, sy, sx = opts.stride
    ot = np.arange(0, nt - T + 1, st)
    oy = np.arange(0, ny - H + 1, sy)
    ox = np.arange(0, nx - W + 1, sx)
    grid = (ot.size, oy.size, ox.size)

    fit_t = np.ones(ot.size, bool) if bt is None else (ot // bt) == ((ot + T - 1) // bt)
    fit_y = (oy // bh) == ((oy + H - 1) // bh)
    fit_x = (ox // bw) == ((ox + W - 1) // bw)
    fits = fit_t[:, None, None] & fit_y[None, :, None] & fit_x[None, None, :]
    n_bt = 1 if bt is None else -(-nt // bt)
    n_by, n_bx = -(-ny // bh), -(-nx // bw)
    tb = np.zeros(ot.size, np.int64) if bt is None else ot // bt
    block_id = (tb[:, None, None] * n_by + (oy // bh)[None, :, None]) * n_bx + (ox // bw)[
        None, None, :
    ]

    removed: dict[str, int] = {"straddle_block": int((~fits).sum())}
    keep = fits.copy()
    if opts.max_gap_days is not None and T > 1:
        gaps = np.lib.stride_tricks.sliding_window_view(np.diff(source.day), T - 1)[ot]
        gap_ok = (gaps.max(axis=1) <= opts.max_gap_days)[:, None, None]
        removed["max_gap_days"] = int((keep & ~gap_ok).sum())
        keep &= gap_ok
    if opts.min_clear_fraction > 0:
        table = np.zeros((nt + 1, ny + 1, nx + 1), np.int64)
        table[1:, 1:, 1:] = clear.cumsum(0, dtype=np.int64).cumsum(1).cumsum(2)
        a, b, c = np.ix_(ot, oy, ox)
        n_clear = (
            table[a + T, b + H, c + W]
            - table[a, b + H, c + W]
            - table[a + T, b, c + W]
            - table[a + T, b + H, c]
            + table[a, b, c + W]
            + table[a, b + H, c]
            + table[a + T, b, c]
            - table[a, b, c]
        )
        clear_ok = n_clear >= opts.min_clear_fraction * (T * H * W) - 1e-9
        removed["min_clear_fraction"] = int((keep & ~clear_ok).sum())
        keep &= clear_ok
    if opts.kind == "patch":
        target_ok = clear[np.ix_(ot + T // 2, oy + H // 2, ox + W // 2)]
        removed["target_clear"] = int((keep & ~target_ok).sum())
        keep &= target_ok

    positive = [i for i, f in enumerate(opts.split) if f > 0]
    fitting_blocks = np.unique(block_id[fits])
    valid_blocks = np.unique(block_id[keep])
    counts: dict[str, Any] = {
        "candidates": int(fits.size),
        "removed": removed,
        "valid": int(keep.sum()),
    }

    def shortage(what: str) -> NoDataAvailable:
        parts = [f"{removed['straddle_block']} straddle split blocks of {block_text(opts.block)}"]
        if "max_gap_days" in removed:
            parts.append(
                f"{removed['max_gap_days']} span a gap > max_gap_days={opts.max_gap_days:g}"
            )
        if "min_clear_fraction" in removed:
            parts.append(
                f"{removed['min_clear_fraction']} are less than "
                f"min_clear_fraction={opts.min_clear_fraction:g} clear"
            )
        if "target_clear" in removed:
            parts.append(f"{removed['target_clear']} have a missing target (centre) pixel")
        return NoDataAvailable(
            reason=(
                f"{what}. Of {fits.size} candidate {opts.kind}s of {T}x{H}x{W} (t, y, x), "
                f"{', '.join(parts)}; {int(keep.sum())} valid remain in {valid_blocks.size} "
                "blocks. Lower min_clear_fraction, raise max_gap_days, ask for fewer samples "
                "or use smaller blocks."
            )
        )

    if fitting_blocks.size < len(positive):
        raise invalid(
            "block",
            f"the cube ({nt} dates, {ny}x{nx} px) holds {fitting_blocks.size} split block(s) "
            f"of {block_text(opts.block)} that fit a {opts.size} sample; the {len(positive)} splits "
            f"need at least {len(positive)}. Use smaller blocks (at least the sample size), or "
            "split time too with block=(T, H, W).",
        )
    if len(positive) > opts.n_samples:
        raise invalid(
            "n_samples",
            f"{opts.n_samples} sample(s) cannot fill {len(positive)} splits {opts.split}.",
        )
    if valid_blocks.size < len(positive):
        raise shortage(
            f"valid samples lie in {valid_blocks.size} split block(s), {len(positive)} splits "
            "need at least one each"
        )

    rng = np.random.default_rng(opts.seed)
    permuted = rng.permutation(valid_blocks)
    per_split_blocks = allocate(valid_blocks.size, opts.split)
    per_split_samples = allocate(opts.n_samples, opts.split)
    flat_keep = keep.ravel()
    flat_block = block_id.ravel()
    chosen: list[np.ndarray] = []
    split_of: list[np.ndarray] = []
    blocks: dict[str, list[int]] = {}
    valid_per_split: dict[str, int] = {}
    start = 0
    for i, name in enumerate(SPLITS):
        mine = np.sort(permuted[start : start + per_split_blocks[i]])
        start += per_split_blocks[i]
        blocks[name] = [int(b) for b in mine]
        pool = np.flatnonzero(flat_keep & np.isin(flat_block, mine))
        valid_per_split[name] = int(pool.size)
        need = per_split_samples[i]
        if need > pool.size:
            raise shortage(
                f"split '{name}' has {pool.size} valid candidate(s) in its "
                f"{mine.size} block(s), {need} sample(s) are asked"
            )
        picked = rng.choice(pool, size=need, replace=False) if need else pool[:0]
        # canonical order inside a split: block, then t0, y0, x0 (flat index order)
        picked = picked[np.lexsort((picked, flat_block[picked]))]
        chosen.append(picked)
        split_of.append(np.full(need, i, dtype=np.int64))
    flat = np.concatenate(chosen)
    it, iy, ix = np.unravel_index(flat, grid)
    counts["valid_per_split"] = valid_per_split
    counts["blocks_per_split"] = {name: len(b) for name, b in blocks.items()}
    counts["samples"] = dict(zip(SPLITS, per_split_samples, strict=True))
    return Selection(
        t0=ot[it].astype(np.int64),
        y0=oy[iy].astype(np.int64),
        x0=ox[ix].astype(np.int64),
        block=flat_block[flat].astype(np.int64),
        split=np.concatenate(split_of),
        counts=counts,
        blocks=blocks,
        block_grid={"t": n_bt, "y": n_by, "x": n_bx},
    )
