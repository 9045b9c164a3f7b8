"""The single entry point the eval suite, the CLI and RL rewards use: `score(metric, gold, pred, **opts)`.

gold/pred are either dicts name -> labels (paired by name; a name on one side only is an error) or
equal-length sequences. Labels may be official list strings, lists of strings, or `Prediction` objects."""
from __future__ import annotations

from typing import Any

import numpy as np

from .base import METRICS
from .bootstrap import bootstrap_table
from .inputs import prepare  # noqa: F401  (re-exported: the public `scoring.prepare`)

# importing the metric modules registers them
from . import closed as _closed, dimensional as _dimensional, ov_metric as _ov, wheel_metric as _wheel  # noqa: F401,E402


def list_metrics() -> list[str]:
    return METRICS.names()


def score(metric: str, gold: Any, pred: Any, *, bootstrap: int = 0, seed: int = 0, alpha: float = 0.05,
          **opts) -> dict[str, float]:
    """Corpus scores of a registered metric; with bootstrap=N also ``<key>_ci_low``/``<key>_ci_high``.

    >>> r = score("closed_set", ["anger", "joy"], [["furious"], ["sad"]], label_set="meld")
    >>> r["accuracy"], r["uar"]
    (0.5, 0.5)
    """
    table = score_table(metric, gold, pred, **opts)
    out = table.result()
    if bootstrap:
        for k, (lo, hi) in bootstrap_table(table, n=bootstrap, seed=seed, alpha=alpha).items():
            out[f"{k}_ci_low"], out[f"{k}_ci_high"] = lo, hi
    return out


def score_table(metric: str, gold: Any, pred: Any, **opts):
    fn = METRICS.get(metric)
    names, g, p = prepare(gold, pred)
    if names is not None:
        opts.setdefault("names", names)
    return fn.table(g, p, **opts)


def score_samples(metric: str, gold: Any, pred: Any, **opts) -> dict[str, np.ndarray]:
    """Per-sample columns behind a metric (e.g. mer_wheel 'p', 'r', 'counted' as N x 12 arrays in
    `wheel.MAPPINGS` order; mer2024_ov 'accuracy', 'recall'), plus 'names' where known."""
    table = score_table(metric, gold, pred, **opts)
    cols = dict(table.columns)
    if table.names is not None:
        cols["names"] = np.array(table.names, dtype=object)
    return cols
