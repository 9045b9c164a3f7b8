"""Dimensional metrics: Pearson correlation and Lin's concordance correlation coefficient (CCC) for
valence / arousal / dominance. CCC also penalises bias and scale differences, which Pearson ignores, so a
model that predicts the right ordering on the wrong scale is visible.

Both accept per-sample weights, which is how bootstrap resampling is expressed."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .base import SampleTable, register_metric

DIMENSIONS = ("valence", "arousal", "dominance")


def _moments(x: np.ndarray, y: np.ndarray, w: np.ndarray | None):
    x, y = np.asarray(x, float), np.asarray(y, float)
    w = np.ones_like(x) if w is None else np.asarray(w, float)
    tw = w.sum()
    mx, my = (w * x).sum() / tw, (w * y).sum() / tw
    vx, vy = (w * (x - mx) ** 2).sum() / tw, (w * (y - my) ** 2).sum() / tw
    cov = (w * (x - mx) * (y - my)).sum() / tw
    return mx, my, vx, vy, cov


def pearson(y_true: Sequence[float], y_pred: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Pearson r (NaN when either side is constant).

    >>> round(pearson([1, 2, 3, 4], [1, 3, 2, 4]), 4)
    0.8
    """
    _, _, vx, vy, cov = _moments(y_true, y_pred, weights)
    return float(cov / np.sqrt(vx * vy)) if vx > 0 and vy > 0 else float("nan")


def ccc(y_true: Sequence[float], y_pred: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Lin's CCC = 2·cov / (var_t + var_p + (mean_t − mean_p)²), population moments.

    >>> round(ccc([1, 2, 3], [2, 3, 4]), 6)   # 2·(2/3) / (2/3 + 2/3 + 1) = 4/7
    0.571429
    """
    mx, my, vx, vy, cov = _moments(y_true, y_pred, weights)
    den = vx + vy + (mx - my) ** 2
    return float(2 * cov / den) if den > 0 else float("nan")


def _value(obj: Any, dim: str) -> float:
    v = obj.get(dim) if isinstance(obj, dict) else getattr(obj, dim, None)
    return float("nan") if v is None else float(v)


def dimensional_table(gold: Sequence[Any], pred: Sequence[Any], *, dims: Sequence[str] = DIMENSIONS,
                      names: Sequence[str] | None = None) -> SampleTable:
    """gold/pred: per sample a dict (or object with attributes) holding some of `dims`; None = missing."""
    cols = {}
    for d in dims:
        cols[f"{d}_true"] = np.array([_value(g, d) for g in gold], float)
        cols[f"{d}_pred"] = np.array([_value(p, d) for p in pred], float)
    dims = [d for d in dims if np.isfinite(cols[f"{d}_true"]).any()]
    extras = {}
    for d in dims:
        has_gold = np.isfinite(cols[f"{d}_true"])
        extras[f"missing_pred_{d}"] = int((has_gold & ~np.isfinite(cols[f"{d}_pred"])).sum())

    def aggregate(c: dict[str, np.ndarray], w: np.ndarray) -> dict[str, float]:
        out = {}
        for d in dims:
            t, p = c[f"{d}_true"], c[f"{d}_pred"]
            ok = np.isfinite(t) & np.isfinite(p) & (w > 0)
            out[f"pearson_{d}"] = pearson(t[ok], p[ok], w[ok]) if ok.sum() > 1 else float("nan")
            out[f"ccc_{d}"] = ccc(t[ok], p[ok], w[ok]) if ok.sum() > 1 else float("nan")
            out[f"n_{d}"] = float(w[ok].sum())
        return out

    return SampleTable(cols, aggregate, extras, list(names) if names is not None else None)


@register_metric("dimensional", dimensional_table)
def dimensional(gold: Sequence[Any], pred: Sequence[Any], *, dims: Sequence[str] = DIMENSIONS,
                names: Sequence[str] | None = None) -> dict[str, float]:
    """Pearson and CCC per dimension present in gold; pairs with a missing prediction are left out and
    counted in ``missing_pred_<dim>`` (``n_<dim>`` = pairs used).

    >>> r = dimensional([{"valence": 1}, {"valence": 2}, {"valence": 3}],
    ...                 [{"valence": 2}, {"valence": 3}, {"valence": None}])
    >>> r["ccc_valence"], r["n_valence"], r["missing_pred_valence"]
    (0.3333333333333333, 2.0, 1.0)
    """
    return dimensional_table(gold, pred, dims=dims, names=names).result()
