"""Calibration numbers a degenerate model cannot game (issue 12).

* ECE at 10 and 15 bins, Brier and NLL, always next to the **label-prior baseline** (always output the fit
  split's class frequencies): a model whose ECE/Brier/NLL are not below the prior's has learnt nothing
  calibratable.
* Temperature scaling only with >= `MIN_FIT_N` fit samples (8 fit samples once gave T = 20, a near-uniform
  distribution that matched chance accuracy); a temperature at the search bound is flagged
  "saturated: not calibrated" and its scaled numbers are not reported as calibration.
* Post-hoc alternatives: batch calibration (Zhou et al., ICLR 2024: divide by the mean predicted distribution,
  estimated on the fit split) and contextual calibration (Zhao et al. 2021: divide by the distribution the model
  gives a content-free input).
"""
from __future__ import annotations

import math

import numpy as np

from .metrics import EPS, apply_temperature, fit_temperature, probability_metrics

MIN_FIT_N = 100
T_BOUNDS = (0.05, 20.0)
BINS = (10, 15)


def full_metrics(probs: np.ndarray, y, bins=BINS) -> dict[str, float]:
    """ECE/MCE at each bin count (`ece`, `ece15`, ...), Brier, NLL, accuracy, n."""
    out: dict[str, float] = {}
    for b in bins:
        res = probability_metrics(probs, y, b)
        if not res:
            return {}
        sfx = "" if b == bins[0] else str(b)
        out[f"ece{sfx}"], out[f"mce{sfx}"] = res["ece"], res["mce"]
        out.update({k: res[k] for k in ("brier", "nll", "accuracy", "mean_confidence", "n")})
    return out


def label_prior(y_fit, k: int) -> np.ndarray:
    """Class frequencies of the fit split (add-one smoothed so no class has probability 0)."""
    counts = np.bincount(np.asarray(y_fit, int), minlength=k).astype(float) + 1.0
    return counts / counts.sum()


def prior_probs(y_fit, k: int, n: int) -> np.ndarray:
    return np.tile(label_prior(y_fit, k), (n, 1))


def guarded_temperature(pf: np.ndarray, yf, min_n: int = MIN_FIT_N) -> tuple[float | None, str]:
    """(T, status): T is None unless the fit split has >= min_n samples; status says why or flags saturation."""
    n = len(yf)
    if n < min_n:
        return None, f"not fitted: {n} fit samples < {min_n}"
    t = fit_temperature(pf, yf)
    lo, hi = T_BOUNDS
    if abs(math.log(t) - math.log(hi)) < 1e-3 or abs(math.log(t) - math.log(lo)) < 1e-3:
        return t, "saturated: not calibrated"
    return t, "fitted"


def batch_calibrate(probs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """p_k / r_k renormalised, r = mean predicted distribution on the fit split (Batch Calibration)."""
    p = np.asarray(probs, float) / np.clip(np.asarray(reference, float), EPS, None)
    return p / p.sum(1, keepdims=True)


def contextual_calibrate(probs: np.ndarray, content_free: np.ndarray) -> np.ndarray:
    """Zhao et al. 2021: W = diag(p_cf)^-1 applied to every prediction, with p_cf from a content-free input
    ("N/A"); the same arithmetic as batch calibration with a different reference."""
    return batch_calibrate(probs, content_free)


def calibration_report(pf: np.ndarray, yf, pt: np.ndarray, yt, k: int, min_n: int = MIN_FIT_N) -> dict[str, float | str]:
    """Raw, label-prior, batch-calibrated and (when allowed) temperature-scaled metrics on the reported split."""
    m: dict = {}
    m.update({f"logprob.{a}": v for a, v in full_metrics(pt, yt).items()})
    m.update({f"prior.{a}": v for a, v in full_metrics(prior_probs(yf, k, len(yt)), yt).items()})
    if len(yf):
        m.update({f"logprob_batchcal.{a}": v for a, v in full_metrics(batch_calibrate(pt, pf.mean(0)), yt).items()})
    t, status = guarded_temperature(pf, yf, min_n)
    m["temperature_status"] = status
    if t is not None:
        m["temperature"] = t
        if status == "fitted":
            m.update({f"logprob_scaled.{a}": v for a, v in full_metrics(apply_temperature(pt, t), yt).items()})
    if "logprob.ece" in m:
        m["ece_minus_prior"] = m["logprob.ece"] - m["prior.ece"]
        m["nll_minus_prior"] = m["logprob.nll"] - m["prior.nll"]
        m["better_than_prior"] = float(m["logprob.nll"] < m["prior.nll"] and m["logprob.brier"] < m["prior.brier"])
    return m


CI_KEYS = ("ece", "ece15", "brier", "nll")


def report_cis(pf: np.ndarray, yf, pt: np.ndarray, yt, k: int, report: dict, n_boot: int) -> dict[str, float]:
    """Bootstrap CIs (resampling the reported split; the temperature and the batch-calibration reference stay as
    fitted) of every reading's ECE/Brier/NLL and of the differences to the label prior, so "better than the prior"
    can be read against its uncertainty."""
    from .metrics import bootstrap_stats

    yt = np.asarray(yt, int)
    readings = {"logprob": pt, "prior": prior_probs(yf, k, len(yt))}
    if "logprob_batchcal.ece" in report:
        readings["logprob_batchcal"] = batch_calibrate(pt, np.asarray(pf).mean(0))
    if "logprob_scaled.ece" in report:
        readings["logprob_scaled"] = apply_temperature(pt, report["temperature"])

    def stats(idx):
        out = {}
        for name, probs in readings.items():
            res = full_metrics(probs[idx], yt[idx])
            out.update({f"{name}.{a}": res[a] for a in CI_KEYS if a in res})
        if "logprob.ece" in out and "prior.ece" in out:
            out["ece_minus_prior"] = out["logprob.ece"] - out["prior.ece"]
            out["nll_minus_prior"] = out["logprob.nll"] - out["prior.nll"]
        return out

    return bootstrap_stats(n_boot, len(yt), stats)
