"""Numbers that expose a degenerate model (issue 12): a model that always answers "neutral" has flip rate 0 and
kappa 1 across prompt variants, so agreement is reported next to how much the answers vary at all.

* majority share: share of all answers that are the single most common one (1.0 = constant model);
* answer entropy: Shannon entropy (bits) of the answer distribution, and normalised by log2 of the number of
  candidates (0 = constant, 1 = uniform);
* kappa flag: agreement is uninformative when the majority share is >= `KAPPA_FLAG_SHARE`;
* ProSA-style instance sensitivity (Zhuo et al. 2024): per sample, the mean absolute difference in correctness
  over all pairs of prompt variants, averaged over samples (0 = the wording never changes whether it is right);
* chance check: accuracy against 1/k with a Wilson 95% interval, so "at chance" is a statement with a CI.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

KAPPA_FLAG_SHARE = 0.9


def answer_stats(answers: Sequence, n_candidates: int | None = None) -> dict[str, float]:
    """Majority share, entropy (bits) and normalised entropy of a flat list of answers."""
    answers = [str(a) for a in answers]
    if not answers:
        return {}
    counts = np.array(list(Counter(answers).values()), float)
    p = counts / counts.sum()
    h = float(-(p * np.log2(p)).sum())
    k = n_candidates or len(counts)
    out = {"majority_share": float(counts.max() / counts.sum()), "answer_entropy_bits": h,
           "n_distinct_answers": float(len(counts))}
    out["answer_entropy_norm"] = h / math.log2(k) if k > 1 else 0.0
    out["majority_answer"] = Counter(answers).most_common(1)[0][0]
    return out


def kappa_flag(majority_share: float) -> str | None:
    if majority_share >= KAPPA_FLAG_SHARE:
        return (f"kappa uninformative: {majority_share:.0%} of all answers are the same label, so agreement "
                "across prompts says nothing about robustness")
    return None


def instance_sensitivity(correct: np.ndarray) -> np.ndarray:
    """correct[v, i] in {0, 1} (variant v, sample i) -> per-sample mean |c_a - c_b| over variant pairs.

    >>> instance_sensitivity(np.array([[1, 1], [0, 1], [1, 1]])).round(4).tolist()
    [0.6667, 0.0]
    """
    c = np.asarray(correct, float)
    v = c.shape[0]
    if v < 2:
        return np.zeros(c.shape[1])
    right = c.sum(0)
    return 2 * right * (v - right) / (v * (v - 1))


def wilson(k: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def chance_check(correct: Sequence[float], n_classes: int) -> dict[str, float]:
    """Accuracy, its Wilson interval, chance = 1/k and whether the interval contains chance."""
    c = np.asarray(correct, float)
    lo, hi = wilson(float(c.sum()), len(c))
    chance = 1.0 / n_classes
    return {"accuracy": float(c.mean()) if len(c) else float("nan"), "accuracy_wilson_low": lo,
            "accuracy_wilson_high": hi, "chance": chance, "n": float(len(c)),
            "ci_includes_chance": float(lo <= chance <= hi)}
