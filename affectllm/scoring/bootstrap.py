"""Bootstrap confidence intervals for any registered metric.

Samples are resampled with replacement; a resample is expressed as per-sample counts (weights) and the
metric's own aggregation is re-run on its precomputed `SampleTable`, so no label is re-parsed or re-mapped
(1000 resamples of the 332-sample OV-MERD set take well under a second for `mer_wheel`). Percentile
intervals; deterministic for a given seed."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .base import METRICS, SampleTable


def _table(metric: str | Callable, gold: Any, pred: Any, **opts) -> SampleTable:
    fn = METRICS.get(metric) if isinstance(metric, str) else metric
    table_fn = getattr(fn, "table", None)
    if table_fn is None:
        raise TypeError(f"{fn!r} is not a registered metric (no .table)")
    return table_fn(gold, pred, **opts)


def bootstrap_table(table: SampleTable, n: int = 1000, seed: int = 0, alpha: float = 0.05
                    ) -> dict[str, tuple[float, float]]:
    """(low, high) percentile interval for every number the table aggregates to."""
    rng = np.random.default_rng(seed)
    size = table.n
    draws: dict[str, list[float]] = {}
    chunk = max(1, min(n, 4_000_000 // max(size, 1))) if table.batched else 1
    done = 0
    while done < n:
        b = min(chunk, n - done)
        W = np.stack([np.bincount(rng.integers(0, size, size), minlength=size) for _ in range(b)]).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = table.aggregate(table.columns, W) if table.batched else table.aggregate(table.columns, W[0])
        for k, v in res.items():
            draws.setdefault(k, []).extend(np.atleast_1d(np.asarray(v, float)).tolist())
        done += b
    out = {}
    for k, vals in draws.items():
        arr = np.asarray(vals)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            out[k] = (float("nan"), float("nan"))
        else:
            lo, hi = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)])
            out[k] = (float(lo), float(hi))
    return out


def bootstrap_ci(metric: str | Callable, gold: Any, pred: Any, *, n: int = 1000, seed: int = 0,
                 alpha: float = 0.05, **opts) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap CI per output key of `metric` (a registered name or function).

    >>> ci = bootstrap_ci("dimensional", [{"valence": v} for v in (0.1, 0.5, -0.3, 0.9, -0.7)],
    ...                   [{"valence": v} for v in (0.2, 0.4, -0.1, 0.7, -0.6)], n=200, seed=0)
    >>> lo, hi = ci["ccc_valence"]; lo <= hi
    True
    """
    if isinstance(gold, dict) or isinstance(pred, dict):
        from .inputs import prepare

        names, gold, pred = prepare(gold, pred)
        opts.setdefault("names", names)
    return bootstrap_table(_table(metric, gold, pred, **opts), n=n, seed=seed, alpha=alpha)
