"""MER2025/2026 emotion-wheel metric (`mer_wheel`; OV-MER's M1, M2, M3) and its honest variants.

Official semantics (OV_METRIC.md; reproduces MERTools `wheel.py`/`evaluation.py` to 1e-6):
1. Label cells: one leading ``[`` and one trailing ``]`` removed, split on ``'``, ``"`` and ``,``, each piece
   stripped and lower-cased, empties dropped (`labels.split_mer2025`); ``;``, ``|``, spaces and newlines are
   not separators. Gold cells are first split, joined with ", " and split again.
2. A label that is not a word of ``format.csv`` is silently dropped, from gold and prediction alike
   (``glad``, ``suspect``, ``neutral``, made-up words). We count these: ``oov_dropped_*``, ``oov_rate_*``.
3. Mapping (see `wheel.MerWheel`): M1 = alphabetically first ``format.csv`` row listing the word; M2 = first
   sorted synonym head of that row; M3 (wheel k, level j) = cluster of the first sorted candidate head (over
   all rows listing the word) present in the forward-filled wheel; at level 2 a level-1 word maps to its
   alphabetically first child. A word absent from a wheel is dropped for that wheel.
4. Duplicates collapse into sets after mapping.
5. Per sample: empty mapped gold -> sample skipped (not counted); empty mapped prediction -> P = R = 0 and the
   sample counts; else P = |G∩P|/|P|, R = |G∩P|/|G|.
6. P and R are averaged over the counted samples; F = 2·P̄·R̄/(P̄+R̄) from those averages (no zero guard:
   NaN when both are 0).
7. Level-j score = mean over the 5 wheels of each wheel's F; MER2025 score = (level 1 + level 2) / 2.

Honest variants (ours, reported next to the official numbers):
* ``*_lc`` (label-count-aware): precision = |G∩P| / (number of distinct predicted label strings, including
  out-of-lexicon ones). Five synonyms of one gold emotion give P = 1 officially (they collapse) but 0.2 here,
  and made-up words count as wrong instead of vanishing. Recall is unchanged; F from averaged P and R.
* ``*_sample``: mean over counted samples of the per-sample F (0 when P = R = 0), instead of F of means.
* ``oov_rate_pred``/``oov_rate_gold``: share of label occurrences outside the lexicon;
  ``mean_pred_labels``: distinct predicted labels per sample (label spamming shows here).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import SampleTable, register_metric, safe_div
from .labels import labels_of, mer2025_gold, split_mer2025
from .wheel import MAPPINGS, MerWheel

N_MAP = len(MAPPINGS)
LEVEL_COLS = {"level1": list(range(2, 7)), "level2": list(range(7, 12))}


def as_wheel(lexicon: MerWheel | str | Path) -> MerWheel:
    return lexicon if isinstance(lexicon, MerWheel) else MerWheel.load(lexicon)


def _labels(cell: Any, gold: bool) -> list[str]:
    cell = labels_of(cell)
    items = mer2025_gold(cell) if gold else split_mer2025(cell)
    return [s for s in (str(x).lower().strip() for x in items) if s]


def _sample_row(gl: list[str], pl: list[str], table: dict[str, tuple[str, ...]]):
    """Per-mapping (P, R, counted, P_lc) lists for one sample plus label counts."""
    g_rows = [table[w] for w in gl if w in table]
    p_rows = [table[w] for w in pl if w in table]
    n_pred = len(set(pl))
    P, R, C, PLC = [0.0] * N_MAP, [0.0] * N_MAP, [0.0] * N_MAP, [0.0] * N_MAP
    if g_rows:
        g_cols = list(zip(*g_rows))
        p_cols = list(zip(*p_rows)) if p_rows else None
        for m in range(N_MAP):
            G = set(g_cols[m])
            G.discard("")
            if not G:
                continue
            C[m] = 1.0
            if p_cols is None:
                continue
            Pm = set(p_cols[m])
            Pm.discard("")
            if not Pm:
                continue
            hit = len(G & Pm)
            P[m] = hit / len(Pm)
            R[m] = hit / len(G)
            PLC[m] = hit / n_pred
    return P, R, C, PLC, (len(gl), len(gl) - len(g_rows), len(pl), len(pl) - len(p_rows), n_pred)


def _f(p, r):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((p + r) > 0, 2 * p * r / np.where((p + r) > 0, p + r, 1), 0.0)


def wheel_table(gold: Sequence[Any], pred: Sequence[Any], *, lexicon: MerWheel | str | Path,
                names: Sequence[str] | None = None) -> SampleTable:
    table = as_wheel(lexicon).table
    n = len(gold)
    rows = [_sample_row(_labels(g, True), _labels(p, False), table) for g, p in zip(gold, pred)]
    P, R, C, PLC, counts = (np.array([r[k] for r in rows], float).reshape(n, -1) for k in range(5))
    cols = {"p": P, "r": R, "counted": C, "p_lc": PLC, "f_sample": _f(P, R),
            "n_gold": counts[:, 0], "n_gold_oov": counts[:, 1], "n_pred": counts[:, 2],
            "n_pred_oov": counts[:, 3], "n_pred_distinct": counts[:, 4]}
    extras = {
        "n_samples": n,
        "skipped_empty_gold": int((C[:, 0] == 0).sum()),
        "empty_pred": int(((P[:, 0] == 0) & (C[:, 0] == 1) & (counts[:, 2] - counts[:, 3] == 0)).sum()),
        "oov_dropped_gold": int(counts[:, 1].sum()),
        "oov_dropped_pred": int(counts[:, 3].sum()),
    }
    return SampleTable(cols, _aggregate, extras, list(names) if names is not None else None, batched=True)


def _aggregate(cols: dict[str, np.ndarray], w: np.ndarray) -> dict[str, Any]:
    """Weighted aggregation; w is one weight vector (N,) or a batch of them (B, N) for the bootstrap."""
    C = cols["counted"]
    den = w @ C
    p = safe_div(w @ (C * cols["p"]), den)
    r = safe_div(w @ (C * cols["r"]), den)
    p_lc = safe_div(w @ (C * cols["p_lc"]), den)
    f_sample = safe_div(w @ (C * cols["f_sample"]), den)
    f = safe_div(2 * p * r, p + r)              # official: no zero guard
    f_lc = safe_div(2 * p_lc * r, p_lc + r)
    out: dict[str, Any] = {}
    for m, name in enumerate(MAPPINGS):
        out[f"{name}_p"], out[f"{name}_r"], out[f"{name}_f"] = p[..., m], r[..., m], f[..., m]
    for level, idx in LEVEL_COLS.items():
        out[f"{level}_f"] = f[..., idx].mean(-1)
        out[f"{level}_p"] = p[..., idx].mean(-1)
        out[f"{level}_r"] = r[..., idx].mean(-1)
        out[f"{level}_f_lc"] = f_lc[..., idx].mean(-1)
        out[f"{level}_f_sample"] = f_sample[..., idx].mean(-1)
    for suffix in ("", "_lc", "_sample"):
        out[f"mer2025{suffix}"] = (out[f"level1_f{suffix}"] + out[f"level2_f{suffix}"]) / 2
    out["oov_rate_gold"] = safe_div(w @ cols["n_gold_oov"], w @ cols["n_gold"])
    out["oov_rate_pred"] = safe_div(w @ cols["n_pred_oov"], w @ cols["n_pred"])
    out["mean_pred_labels"] = safe_div(w @ cols["n_pred_distinct"], w.sum(-1))
    return out


@register_metric("mer_wheel", wheel_table)
def mer_wheel(gold: Sequence[Any], pred: Sequence[Any], *, lexicon: MerWheel | str | Path,
              names: Sequence[str] | None = None) -> dict[str, float]:
    """Official MER2025/2026 wheel scores plus honest variants (see module docstring for every key).

    Keys: ``m1_{p,r,f}``, ``m2_*``, ``w{k}_l{j}_*`` (wheel k, level j), ``level1_f``, ``level2_f``, ``mer2025``;
    honest ``level{j}_f_lc``, ``mer2025_lc``, ``level{j}_f_sample``, ``mer2025_sample``, ``oov_rate_pred``,
    ``mean_pred_labels``; counts ``n_samples``, ``skipped_empty_gold``, ``empty_pred``, ``oov_dropped_*``.

    >>> r = mer_wheel(["['happy', 'angry']"], ["['joyful', 'glad']"], lexicon="../shared/data/ovmer/emotion_wheel")  # doctest: +SKIP
    >>> r["m1_p"], r["m1_r"], r["oov_dropped_pred"]  # doctest: +SKIP
    (0.0, 0.0, 1)
    """
    return wheel_table(gold, pred, lexicon=lexicon, names=names).result()


def sample_wheel_scores(gold_labels: Any, pred_labels: Any, lexicon: MerWheel | str | Path) -> dict[str, float]:
    """Per-sample P/R/F (official and label-count-aware) for each of the 12 mappings; NaN where the gold
    maps to nothing (the official metric skips that sample for that mapping)."""
    P, R, C, PLC, _ = (np.array(x, float) for x in
                       _sample_row(_labels(gold_labels, True), _labels(pred_labels, False), as_wheel(lexicon).table))
    F, FLC = _f(P, R), _f(PLC, R)
    out: dict[str, float] = {}
    for m, name in enumerate(MAPPINGS):
        ok = C[m] == 1
        for key, arr in (("p", P), ("r", R), ("f", F), ("p_lc", PLC), ("f_lc", FLC)):
            out[f"{name}_{key}"] = float(arr[m]) if ok else float("nan")
    return out


def sample_wheel_f(gold_labels: Any, pred_labels: Any, lexicon: MerWheel | str | Path,
                   level: str = "mer2025", honest: bool = False) -> float:
    """One sample's wheel F, averaged over the wheels where its gold maps to something.

    level: "level1", "level2" or "mer2025" (mean of the two level averages). honest=True uses the
    label-count-aware precision, so padding an answer with synonyms lowers the reward. Returns NaN when the
    gold maps to nothing on every wheel (the official metric would skip the sample); 0.0 for an empty or
    fully out-of-lexicon prediction. This is the function RL rewards call.

    >>> sample_wheel_f(['happy'], ['joyful', 'cheerful', 'glad'], wheel)  # doctest: +SKIP
    1.0
    """
    s = sample_wheel_scores(gold_labels, pred_labels, lexicon)
    key = "f_lc" if honest else "f"

    def level_mean(lv: str) -> float:
        vals = [s[f"{MAPPINGS[m]}_{key}"] for m in LEVEL_COLS[lv]]
        vals = [v for v in vals if not np.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")

    if level == "mer2025":
        vals = [v for v in (level_mean("level1"), level_mean("level2")) if not np.isnan(v)]
        return float(np.mean(vals)) if vals else float("nan")
    if level not in LEVEL_COLS:
        raise ValueError(f"level must be 'level1', 'level2' or 'mer2025', not {level!r}")
    return level_mean(level)
