"""`calibration`: are the model's probabilities and stated confidences honest?

One unconstrained pass with the closed-set prompt (`emotion_closed`, ``with_confidence: true``) and
``top_logprobs`` (<= 20) gives two readings per answer:

* label probabilities: at the token where the first answered label starts, the top-k alternatives are mapped onto
  the candidate labels' first tokens and renormalised (`metrics.renormalise_over_candidates`); candidates that
  share a first token share its mass. Answers with no label (nothing to read) are left out and counted
  (`logprob_coverage` = share of answers with a reading; `mean_candidate_mass` = raw top-k mass on candidates);
* verbalised confidence: the ``confidence`` field of the JSON answer, against whether the answer (mapped into the
  label set by `closed_set`) is right; answers without one are counted (`verbal_coverage`).

For each: ECE, MCE (10 equal-width bins), Brier, NLL and a reliability diagram. A temperature is fitted on the
``fit_split`` samples (dev; the task loader refuses test) and applied unchanged to the reported split; the report
shows both the raw and the temperature-scaled numbers and the fitted T. Nothing is ever fitted on test.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ..metrics import (apply_temperature, confidence_metrics, fit_temperature, probability_metrics, reliability,
                       renormalise_over_candidates)
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
    option_keys = Suite.option_keys | {"fit_limit", "bins"}
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

    def record(self, task, item, raw, ctx, response=None):
        out = super().record(task, item, raw, ctx, response)
        cands = item.variables.get("candidates") or self.candidates(task, item.sample)
        labels = out["parsed"].get("labels") or []
        tokens = getattr(response, "tokens", None)
        reading = None
        if tokens and labels:
            j = label_token_index(tokens, labels[0])
            if j is not None and tokens[j].get("top"):
                probs, covered = renormalise_over_candidates([tuple(t) for t in tokens[j]["top"]], cands)
                reading = {"candidates": cands, "probs": [round(float(p), 6) for p in probs],
                           "candidate_mass": round(covered, 6), "token": tokens[j]["token"], "token_index": j}
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
        m["logprob_coverage"] = len(keep) / len(test) if test else float("nan")
        if test and not keep:
            ctx.note(task, "no answer had a label to read probabilities at (or the backend returned no logprobs): "
                           "only verbalised confidence is scored")
        m["n_fit"], m["n_fit_with_probs"] = float(len(fit)), float(len(yf))
        if len(keep):
            m["mean_candidate_mass"] = float(np.mean([r["label_probs"]["candidate_mass"] for r in keep]))
            t = fit_temperature(pf, yf) if len(yf) >= 2 else 1.0
            m["temperature"] = t
            m["temperature_fitted"] = float(len(yf) >= 2)
            for name, probs in (("logprob", pt), ("logprob_scaled", apply_temperature(pt, t))):
                res = probability_metrics(probs, yt, bins)
                m.update({f"{name}.{k}": v for k, v in res.items()})
                tables[name] = _bins(reliability(probs.max(1), (probs.argmax(1) == yt).astype(float), bins))
        conf_rows = [r for r in test if r["parsed"].get("confidence") is not None]
        m["verbal_coverage"] = len(conf_rows) / len(test) if test else float("nan")
        if conf_rows:
            conf = np.array([r["parsed"]["confidence"] for r in conf_rows], float)
            right = np.array([r["scores"].get(f"{spec.prefix}.correct", 0.0) for r in conf_rows], float)
            m.update({f"verbal.{k}": v for k, v in confidence_metrics(conf, right, bins).items()})
            tables["verbal"] = _bins(reliability(conf, right, bins))
        return base

    def headline(self, task):
        return task.headline or ["closed_set.accuracy", "logprob.ece", "logprob_scaled.ece", "logprob.nll",
                                 "logprob_scaled.nll", "logprob.brier", "verbal.ece", "verbal.brier", "temperature",
                                 "logprob_coverage", "verbal_coverage"]

    def plots(self, task, summary, records, outdir: Path, ctx):
        from ..report import reliability_plot

        curves = {k: v for k, v in summary["tables"].items() if k in ("logprob", "logprob_scaled", "verbal")}
        t = summary["metrics"].get("temperature")
        title = f"{task.name}: reliability" + (f" (T = {t:.2f} fitted on {task.options['fit_split']})" if t else "")
        return [reliability_plot(curves, outdir / f"{task.name}_reliability.png", title=title)]


def _bins(r: dict) -> dict:
    return {k: [None if not np.isfinite(x) else float(x) for x in np.asarray(v, float)] for k, v in r.items()}


SUITE = CalibrationSuite
