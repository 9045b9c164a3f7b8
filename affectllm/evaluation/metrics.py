"""The eval suite's own numbers, the ones the scoring module has no notion of: calibration (ECE, MCE, Brier, NLL,
temperature scaling), agreement across prompt variants (Fleiss' kappa, flip rate), paired yes/no probes, and
intervals over seeds. Emotion answers themselves are always scored by `affectllm.scoring` (the only scorer).

Definitions (all tested against hand-computed values in tests/test_eval_metrics.py):

* ECE: equal-width confidence bins on [0, 1] (bin b holds lo < c <= hi, the first bin also c = 0);
  ECE = sum_b |B_b|/n * |acc(B_b) - conf(B_b)|; MCE = max over non-empty bins of |acc - conf|.
* Brier: multi-class, mean over samples of sum_k (p_k - 1[y = k])^2 (0 best, 2 worst); for a single verbalised
  confidence c of being right: mean (c - correct)^2.
* NLL: -mean log p_y (probabilities clipped at 1e-12); binary for verbalised confidence.
* Temperature scaling: p_T ∝ exp(log p / T); T minimises the NLL on the fit split (dev), searched over
  log T in [log 0.05, log 20]; it is then applied, unchanged, to the reported split.
* Fleiss' kappa (Fleiss 1971): N subjects, n raters each, k categories, n_ij raters put subject i in j;
  P_i = (sum_j n_ij^2 - n) / (n(n-1)), P̄ = mean P_i, p_j = sum_i n_ij / (N n), P̄e = sum_j p_j^2,
  kappa = (P̄ - P̄e) / (1 - P̄e). Here raters are prompt variants and subjects are samples.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

EPS = 1e-12


# ---- calibration ---------------------------------------------------------------------------------------------
def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    return np.clip(np.ceil(conf * n_bins - 1e-9).astype(int) - 1, 0, n_bins - 1)


def reliability(conf: Sequence[float], correct: Sequence[float], n_bins: int = 10) -> dict[str, np.ndarray]:
    """Per-bin counts, mean confidence and accuracy (NaN for empty bins) and the bin edges."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    idx = _bin_index(conf, n_bins)
    counts = np.bincount(idx, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / counts
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / counts
    return {"edges": np.linspace(0, 1, n_bins + 1), "count": counts, "confidence": mean_conf, "accuracy": acc}


def ece_mce(conf: Sequence[float], correct: Sequence[float], n_bins: int = 10) -> tuple[float, float]:
    """(ECE, MCE) with equal-width bins.

    >>> [round(x, 4) for x in ece_mce([0.9, 0.9, 0.9, 0.9, 0.6, 0.6], [1, 1, 1, 0, 1, 1], n_bins=10)]
    [0.2333, 0.4]
    """
    r = reliability(conf, correct, n_bins)
    n = r["count"].sum()
    if n == 0:
        return float("nan"), float("nan")
    ok = r["count"] > 0
    gap = np.abs(r["accuracy"][ok] - r["confidence"][ok])
    return round(float((r["count"][ok] * gap).sum() / n), 12), round(float(gap.max()), 12)


def brier(probs: np.ndarray, y: Sequence[int]) -> float:
    probs = np.asarray(probs, float)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(probs)), np.asarray(y, int)] = 1.0
    return float(((probs - onehot) ** 2).sum(1).mean())


def nll(probs: np.ndarray, y: Sequence[int]) -> float:
    probs = np.asarray(probs, float)
    return float(-np.log(np.clip(probs[np.arange(len(probs)), np.asarray(y, int)], EPS, 1.0)).mean())


def binary_brier(conf: Sequence[float], correct: Sequence[float]) -> float:
    c, y = np.asarray(conf, float), np.asarray(correct, float)
    return float(((c - y) ** 2).mean())


def binary_nll(conf: Sequence[float], correct: Sequence[float]) -> float:
    c, y = np.clip(np.asarray(conf, float), EPS, 1 - EPS), np.asarray(correct, float)
    return float(-(y * np.log(c) + (1 - y) * np.log(1 - c)).mean())


def probability_metrics(probs: np.ndarray, y: Sequence[int], n_bins: int = 10) -> dict[str, float]:
    """ECE/MCE on the top-class confidence, multi-class Brier and NLL, accuracy, mean confidence."""
    probs = np.asarray(probs, float)
    y = np.asarray(y, int)
    if len(probs) == 0:
        return {}
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == y).astype(float)
    e, m = ece_mce(conf, correct, n_bins)
    return {"ece": e, "mce": m, "brier": brier(probs, y), "nll": nll(probs, y), "accuracy": float(correct.mean()),
            "mean_confidence": float(conf.mean()), "n": float(len(y))}


def confidence_metrics(conf: Sequence[float], correct: Sequence[float], n_bins: int = 10) -> dict[str, float]:
    """The same for one verbalised confidence per answer (probability that the answer is right)."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    if len(conf) == 0:
        return {}
    e, m = ece_mce(conf, correct, n_bins)
    return {"ece": e, "mce": m, "brier": binary_brier(conf, correct), "nll": binary_nll(conf, correct),
            "accuracy": float(correct.mean()), "mean_confidence": float(conf.mean()), "n": float(len(conf))}


def apply_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    logits = np.log(np.clip(np.asarray(probs, float), EPS, 1.0)) / t
    logits -= logits.max(1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


def fit_temperature(probs: np.ndarray, y: Sequence[int]) -> float:
    """The temperature minimising NLL of `apply_temperature(probs, T)` on (fit-split) labels y."""
    from scipy.optimize import minimize_scalar

    probs, y = np.asarray(probs, float), np.asarray(y, int)
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(lambda lt: nll(apply_temperature(probs, math.exp(lt)), y),
                          bounds=(math.log(0.05), math.log(20.0)), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def renormalise_over_candidates(top: Sequence[tuple[str, float]], candidates: Sequence[str]) -> tuple[np.ndarray, float]:
    """Label probabilities from the top-k alternatives at the first label token.

    A token t (stripped of spaces/quotes, lower-cased, non-empty) supports candidate c when c starts with t
    (the candidate's first token). Candidates sharing a first token share its mass equally; a candidate with no
    supporting token gets the smallest listed probability divided by ten (it was below the top-k); then the vector
    is renormalised. Returns (probabilities, coverage) where coverage is the raw top-k mass that supported any
    candidate (low coverage = the model was not about to write a label there)."""
    cands = [c.lower() for c in candidates]
    mass = np.zeros(len(cands))
    covered = 0.0
    floor = min((math.exp(lp) for _, lp in top), default=1e-6) / 10
    seen: set[str] = set()
    for tok, lp in top:
        t = tok.strip().strip("\"'[").lower()
        if not t or t in seen:
            continue
        seen.add(t)
        hits = [j for j, c in enumerate(cands) if c.startswith(t)]
        if hits:
            p = math.exp(lp)
            covered += p
            mass[hits] += p / len(hits)
    mass = np.where(mass > 0, mass, floor)
    return mass / mass.sum(), float(covered)


# ---- agreement across variants ---------------------------------------------------------------------------------
def fleiss_kappa(table: Sequence[Sequence[float]]) -> float:
    """Fleiss' kappa of an N x k table of rater counts (every row sums to the same n >= 2).

    >>> round(fleiss_kappa([[2, 0], [0, 2], [1, 1]]), 4)
    0.3333
    """
    t = np.asarray(table, float)
    n_sub, _ = t.shape
    n = t.sum(1)
    if n_sub == 0 or not np.allclose(n, n[0]) or n[0] < 2:
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings per subject")
    n = n[0]
    p_i = ((t ** 2).sum(1) - n) / (n * (n - 1))
    p_bar = p_i.mean()
    p_j = t.sum(0) / (n_sub * n)
    pe = (p_j ** 2).sum()
    if math.isclose(pe, 1.0):
        return 1.0 if math.isclose(p_bar, 1.0) else float("nan")
    return float((p_bar - pe) / (1 - pe))


def ratings_table(predictions: Sequence[Sequence[Any]]) -> np.ndarray:
    """predictions[v][i] = category that variant v gave sample i -> N x k count table for `fleiss_kappa`."""
    cats = sorted({str(p) for row in predictions for p in row})
    index = {c: j for j, c in enumerate(cats)}
    n_sub = len(predictions[0]) if predictions else 0
    t = np.zeros((n_sub, len(cats)))
    for row in predictions:
        for i, p in enumerate(row):
            t[i, index[str(p)]] += 1
    return t


def flip_rate(base: Sequence[Any], other: Sequence[Any]) -> float:
    """Share of samples whose prediction differs between two variants.

    >>> flip_rate(["joy", "anger", "fear", "joy"], ["joy", "sadness", "fear", "anger"])
    0.5
    """
    if len(base) != len(other):
        raise ValueError("flip_rate: both variants must cover the same samples")
    return float(np.mean([a != b for a, b in zip(base, other)])) if base else float("nan")


def agreement_matrix(predictions: Sequence[Sequence[Any]]) -> np.ndarray:
    """V x V share of samples on which two variants agree (1 on the diagonal)."""
    v = len(predictions)
    m = np.ones((v, v))
    for a in range(v):
        for b in range(a + 1, v):
            m[a, b] = m[b, a] = 1.0 - flip_rate(predictions[a], predictions[b])
    return m


# ---- paired probes and seeds ------------------------------------------------------------------------------------
def pair_scores(answers_yes: Sequence[str | None], answers_no: Sequence[str | None]) -> dict[str, float]:
    """Paired yes/no probes: for each sample one question whose true answer is yes and one whose answer is no.
    A pair scores only when both answers are right (a model that always says "yes" scores 0).

    >>> pair_scores(["yes", "yes", "no", None], ["no", "yes", "no", "no"])["pair_accuracy"]
    0.25
    """
    ys = np.array([a == "yes" for a in answers_yes], float)
    ns = np.array([a == "no" for a in answers_no], float)
    n = len(ys)
    if n == 0:
        return {}
    said_yes = np.array([a == "yes" for a in (*answers_yes, *answers_no)], float)
    unparsed = np.array([a is None for a in (*answers_yes, *answers_no)], float)
    return {"pair_accuracy": float((ys * ns).mean()), "question_accuracy": float((ys.sum() + ns.sum()) / (2 * n)),
            "yes_accuracy": float(ys.mean()), "no_accuracy": float(ns.mean()), "yes_rate": float(said_yes.mean()),
            "unparsed_rate": float(unparsed.mean()), "n_pairs": float(n)}


def seed_interval(values: Sequence[float], alpha: float = 0.05) -> tuple[float, float, float, float]:
    """(mean, std, low, high): Student-t interval of the mean over seeds (needs >= 2 finite values)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return (float("nan"),) * 4
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    from scipy.stats import t as student_t

    sd = float(v.std(ddof=1))
    half = float(student_t.ppf(1 - alpha / 2, len(v) - 1)) * sd / math.sqrt(len(v))
    return mean, sd, mean - half, mean + half


def bootstrap_mean(n_boot: int, values: Sequence[float], key: str, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap CI of the mean of per-sample values (e.g. 0/1 probe outcomes), NaNs left out:
    {key_ci_low, key_ci_high}; empty when there is nothing to resample."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) == 0 or not n_boot:
        return {}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (n_boot, len(v)))].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {f"{key}_ci_low": float(lo), f"{key}_ci_high": float(hi)}


def mean_with_ci(n_boot: int, values: Sequence[float], key: str, seed: int = 0) -> dict[str, float]:
    """{key: mean of the finite values, key_ci_low, key_ci_high}: a rate and its bootstrap CI in one call, so no
    reported rate goes out without its interval (NaN and no CI when nothing is finite)."""
    v = np.asarray(values, float)
    finite = v[np.isfinite(v)]
    return {key: float(finite.mean()) if len(finite) else float("nan"), **bootstrap_mean(n_boot, v, key, seed)}


def bootstrap_stats(n_boot: int, n: int, stats, seed: int = 0) -> dict[str, float]:
    """Percentile CIs of statistics that are not a mean of one column (spreads over variants, agreement, answer
    shares, ECE): stats(indices) -> {key: value} is recomputed on n_boot resamples of range(n); gives
    key_ci_low/high for every key with finite resampled values."""
    if n == 0 or not n_boot:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        for key, value in stats(rng.integers(0, n, n)).items():
            draws.setdefault(key, []).append(value)
    out: dict[str, float] = {}
    for key, values in draws.items():
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        if len(v):
            lo, hi = np.percentile(v, [2.5, 97.5])
            out.update({f"{key}_ci_low": float(lo), f"{key}_ci_high": float(hi)})
    return out


def bootstrap_ratio(n_boot: int, numerators: Sequence[float], denominators: Sequence[float], key: str,
                    seed: int = 0) -> dict[str, float]:
    """sum(num) / sum(den) with a CI from resampling the units (e.g. explanations, each with its own count of
    claims): the interval of the pooled ratio itself, not of a mean of per-unit ratios."""
    num, den = np.asarray(numerators, float), np.asarray(denominators, float)
    if len(num) == 0 or den.sum() <= 0:
        return {key: float("nan")}
    out = {key: float(num.sum() / den.sum())}
    if n_boot:
        idx = np.random.default_rng(seed).integers(0, len(num), (n_boot, len(num)))
        d = den[idx].sum(1)
        ratios = num[idx].sum(1)[d > 0] / d[d > 0]
        if len(ratios):
            lo, hi = np.percentile(ratios, [2.5, 97.5])
            out.update({f"{key}_ci_low": float(lo), f"{key}_ci_high": float(hi)})
    return out
