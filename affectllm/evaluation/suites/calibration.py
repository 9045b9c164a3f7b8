"""`calibration`: are the model's probabilities and stated confidences honest?

Two readings per sample with the closed-set prompt (`emotion_closed`, ``with_confidence: true``):

* label probabilities: scored candidates (`evaluation/scored.py`): the softmax over candidates of the
  full-sequence log-likelihood of each candidate answer, one teacher-forced pass per sample, no generation
  (version 1 read the top-20 alternatives at the first generated label token instead);
* verbalised confidence: the ``confidence`` field of the JSON answer, against whether the answer (mapped into the
  label set by `closed_set`) is right; answers without one are counted (`verbal_coverage`).

For each: ECE (10 and 15 bins), MCE, Brier, NLL and a reliability diagram with counts per bin, next to the
label-prior baseline (`calib.py`). A temperature is fitted on the ``fit_split`` samples (dev; the loader refuses
test) only when there are >= 100 of them, and flagged "saturated: not calibrated" at its search bound; batch
calibration (mean fit-split distribution) is the other post-hoc fix. Nothing is ever fitted on test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ..calib import MIN_FIT_N, calibration_report, prior_probs, report_cis
from ..degenerate import chance_check
from ..metrics import (apply_temperature, bootstrap_mean, bootstrap_stats, confidence_metrics, mean_with_ci,
                       reliability)
from ..scored import candidate_probs
from .base import Suite, filter_samples, load_dataset, take_subset


def label_token_index(tokens: list[dict], label: str) -> int | None:
    """Index of the generated token where `label` starts (searched after a "labels" key when there is one)."""
    text, offsets = "", []
    for t in tokens:
        offsets.append(len(text))
        text += t["token"]
    low, label = text.lower(), label.lower().strip()
    if not label:
        return None
    key = low.find('"labels"')
    idx = low.find(label, key if key >= 0 else 0)
    if idx < 0:
        return None
    j = max(i for i, off in enumerate(offsets) if off <= idx)
    # a token that only holds the quote/bracket before the label ('["') is not the label's first token
    if not text[offsets[j]:idx + 1].strip().strip("\"'[ ").strip() and j + 1 < len(tokens):
        j += 1
    return j


class CalibrationSuite(Suite):
    name = "calibration"
    option_keys = Suite.option_keys | {"fit_limit", "bins", "min_fit_n"}
    metric_names = ("ece", "mce", "brier", "nll")

    @classmethod
    def validate(cls, options, where):
        super().validate(options, where)
        if "fit_split" not in options:
            raise ConfigError(f"{where}: calibration needs options.fit_split (dev) to fit the temperature on")

    def _spec(self, task):
        spec = next((m for m in task.metric_list if m.metric == "closed_set"), None)
        if spec is None:
            raise ConfigError(f"task '{task.name}': calibration needs a closed_set metric in metric_list")
        return spec

    def load_samples(self, task, ctx):
        ds = task.dataset
        fit = filter_samples(load_dataset(ds, task.options["fit_split"], ctx, task), ds.get("filter"))
        fit = take_subset(fit, task.options.get("fit_limit", task.limit), int(ds.get("subset_seed", 0)),
                          ds.get("stratify"))
        for s in fit:
            s.meta["_role"] = "fit"
        test = super().load_samples(task, ctx)
        for s in test:
            s.meta["_role"] = "eval"
        return fit + test

    def items(self, task, samples, ctx):
        out = []
        for s in samples:
            role = s.meta.pop("_role")
            item = self.make_item(task, s, key=f"{role}|{s.id}", variant=role)
            item.meta["role"] = role
            out.append(item)
        return out

    def scores_candidates(self, task) -> bool:
        return True

    def record(self, task, item, raw, ctx, response=None):
        out = super().record(task, item, raw, ctx, response)
        cands = item.variables.get("candidates") or self.candidates(task, item.sample)
        logliks = getattr(response, "logliks", None)
        reading = None
        if logliks and len(logliks) == len(cands):
            probs = candidate_probs(logliks)
            reading = {"candidates": cands, "probs": [round(float(p), 6) for p in probs],
                       "logliks": [round(float(x), 4) for x in logliks]}
        out["label_probs"] = reading
        return out

    def summarize(self, task, records, ctx):
        spec = self._spec(task)
        fit = [r for r in records if r["meta"].get("role") == "fit"]
        test = [r for r in records if r["meta"].get("role") == "eval"]
        base = {"metrics": self.corpus_metrics(task, test, ctx), "tables": {}}
        m, tables = base["metrics"], base["tables"]
        bins = int(task.options.get("bins", 10))

        def probs_of(rows):
            keep = [r for r in rows if r.get("label_probs") and r["gold"].get("label") in r["label_probs"]["candidates"]]
            if not keep:
                return keep, np.zeros((0, 1)), np.zeros(0, int)
            p = np.array([r["label_probs"]["probs"] for r in keep], float)
            y = np.array([r["label_probs"]["candidates"].index(r["gold"]["label"]) for r in keep], int)
            return keep, p, y

        _, pf, yf = probs_of(fit)
        keep, pt, yt = probs_of(test)
        m.update(mean_with_ci(ctx.bootstrap, [r in keep for r in test], "logprob_coverage"))
        m["n_fit"], m["n_fit_with_probs"] = float(len(fit)), float(len(yf))
        if len(keep):
            k = pt.shape[1]
            rep = calibration_report(pf if len(yf) else np.zeros((0, k)), yf, pt, yt, k,
                                     int(task.options.get("min_fit_n", MIN_FIT_N)))
            status = rep.pop("temperature_status")
            if status != "fitted":
                ctx.note(task, f"temperature {status}")
            tables["temperature_status"] = status
            m.update(rep)
            m.update(report_cis(pf if len(yf) else np.zeros((0, k)), yf, pt, yt, k, rep, ctx.bootstrap))
            right = (pt.argmax(1) == yt).astype(float)
            m["scored.accuracy"] = float(right.mean())
            m.update(bootstrap_mean(ctx.bootstrap, right, "scored.accuracy"))
            m.update({f"scored.{a}": v for a, v in chance_check(right, k).items()})
            readings = {"logprob": pt, "prior": prior_probs(yf, k, len(yt))}
            if "logprob_scaled.ece" in m:
                readings["logprob_scaled"] = apply_temperature(pt, m["temperature"])
            for name, probs in readings.items():
                tables[name] = _bins(reliability(probs.max(1), (probs.argmax(1) == yt).astype(float), bins))
        conf_rows = [r for r in test if r["parsed"].get("confidence") is not None]
        m.update(mean_with_ci(ctx.bootstrap, [r["parsed"].get("confidence") is not None for r in test],
                              "verbal_coverage"))
        if conf_rows:
            conf = np.array([r["parsed"]["confidence"] for r in conf_rows], float)
            right = np.array([r["scores"].get(f"{spec.prefix}.correct", 0.0) for r in conf_rows], float)
            m.update({f"verbal.{k}": v for k, v in confidence_metrics(conf, right, bins).items()})
            m.update(bootstrap_stats(ctx.bootstrap, len(conf), lambda idx: {
                f"verbal.{a}": v for a, v in confidence_metrics(conf[idx], right[idx], bins).items()
                if a in ("ece", "brier", "nll")}))
            tables["verbal"] = _bins(reliability(conf, right, bins))
        return base

    def headline(self, task):
        return task.headline or ["scored.accuracy", "closed_set.accuracy", "logprob.ece", "logprob.ece15",
                                 "prior.ece", "logprob.nll", "prior.nll", "logprob.brier", "prior.brier",
                                 "logprob_batchcal.ece", "logprob_scaled.ece", "verbal.ece", "temperature",
                                 "logprob_coverage", "verbal_coverage"]

    def plots(self, task, summary, records, outdir: Path, ctx):
        from ..report import reliability_plot

        curves = {k: v for k, v in summary["tables"].items() if k in ("logprob", "prior", "logprob_scaled", "verbal")}
        t = summary["metrics"].get("temperature")
        title = f"{task.name}: reliability" + (f" (T = {t:.2f} fitted on {task.options['fit_split']})" if t else "")
        return [reliability_plot(curves, outdir / f"{task.name}_reliability.png", title=title)]


def _bins(r: dict) -> dict:
    return {k: [None if not np.isfinite(x) else float(x) for x in np.asarray(v, float)] for k, v in r.items()}


SUITE = CalibrationSuite
