"""What every metric shares: the "metric" registry, and `SampleTable`, the per-sample statistics plus the
rule that aggregates them.

Keeping per-sample columns separate from aggregation is what makes three things cheap and consistent:
per-sample scores (RL rewards), corpus scores (evals), and bootstrap intervals (resampling = reweighting
rows, then aggregating again)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..registry import Registry

METRICS = Registry("metric")


@dataclass
class SampleTable:
    """columns: name -> array with one row per sample; aggregate(columns, weights) -> corpus numbers,
    where weights are per-sample counts (all ones for the plain score, multinomial counts in a bootstrap);
    extras: corpus-level counts that are reported but not resampled (e.g. `oov_dropped_pred`);
    batched: aggregate also accepts a (B, N) weight matrix and returns arrays of B values (fast bootstrap);
    point: optional reference aggregation (e.g. sklearn) used for the reported score, when `aggregate` is a
    faster re-implementation kept for resampling (tests assert the two agree)."""

    columns: dict[str, np.ndarray]
    aggregate: Callable[[dict[str, np.ndarray], np.ndarray], dict[str, float]]
    extras: dict[str, float] = field(default_factory=dict)
    names: list[str] | None = None
    batched: bool = False
    point: Callable[[dict[str, np.ndarray], np.ndarray], dict[str, float]] | None = None

    @property
    def n(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def result(self, weights: np.ndarray | None = None) -> dict[str, float]:
        w = np.ones(self.n) if weights is None else np.asarray(weights, dtype=float)
        fn = self.point if (weights is None and self.point is not None) else self.aggregate
        out = {k: float(v) for k, v in fn(self.columns, w).items()}
        if weights is None:
            out.update({k: float(v) for k, v in self.extras.items()})
        return out


def register_metric(name: str, table: Callable[..., SampleTable]) -> Callable[[Callable], Callable]:
    """Register `fn(gold, pred, **opts) -> dict` under `name`; `fn.table` builds its SampleTable."""

    def deco(fn: Callable) -> Callable:
        fn.table = table  # type: ignore[attr-defined]
        fn.metric_name = name  # type: ignore[attr-defined]
        METRICS.register(name, fn)
        return fn

    return deco


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    total = weights.sum()
    return float((values * weights).sum() / total) if total > 0 else float("nan")


def safe_div(num: Any, den: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(num, den)
