"""`prompt_sensitivity`: how much a closed-set answer depends on wording rather than on the input.

Variants of one closed-set question, each asked about the same samples:
* ``base``: the task prompt (emotion_closed) with the label set in its canonical order;
* ``para:<name>``: a family of >= 5 paraphrases (prompts/paraphrase/closed_*.jinja; same task, same answer format);
* ``order:<how>``: the base prompt with the candidate list reversed, rotated by half, or shuffled (a fixed
  shuffle per task, so it is not seed-dependent);
* ``format:<name>``: separators and list formats (" | ", one per line, numbered).

Answers are mapped into the label set (`closed_set` of the scoring module). Reported: per-variant accuracy and
macro F1 with bootstrap CIs; mean, std and range of accuracy over variants; the prediction flip rate against
``base`` (share of samples whose mapped label changes, averaged over variants) and over all variant pairs;
Fleiss' kappa with variants as raters and the mapped labels (including "<unmapped>") as categories; and a heatmap
of pairwise agreement. Version 2 (issue 12) adds what a constant model cannot pass: the majority-answer share and
answer entropy next to kappa (kappa is flagged when >= 90% of answers are one label), ProSA-style per-instance
sensitivity, and the flip rate of the shuffled/reordered candidate lists alone (`order_flip_rate`). A robust model
has a small range, low flip rate and kappa near 1 with answers that vary with the input.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ...scoring import score
from ..inputs import stable_seed
from ..degenerate import answer_stats, instance_sensitivity, kappa_flag
from ..metrics import (agreement_matrix, bootstrap_mean, bootstrap_stats, fleiss_kappa, flip_rate, mean_with_ci,
                       ratings_table)
from .base import Suite

ORDERS = ("reversed", "rotated", "shuffled")


def reorder(cands: list[str], how: str, salt: str) -> list[str]:
    if how == "reversed":
        return cands[::-1]
    if how == "rotated":
        k = len(cands) // 2
        return cands[k:] + cands[:k]
    if how == "shuffled":
        out = list(cands)
        random.Random(stable_seed("order", salt)).shuffle(out)
        if out == cands and len(out) > 1:
            out = out[1:] + out[:1]
        return out
    raise ConfigError(f"unknown label order '{how}'; known: {', '.join(ORDERS)}")


class PromptSensitivitySuite(Suite):
    name = "prompt_sensitivity"
    option_keys = Suite.option_keys | {"paraphrases", "orders", "formats"}
    metric_names = ("kappa", "flip_rate")

    @classmethod
    def validate(cls, options, where):
        super().validate(options, where)
        paras = options.get("paraphrases") or []
        if paras and len(paras) < 5:  # none at all is an order/format-only task (e.g. ps_meld_order)
            raise ConfigError(f"{where}: options.paraphrases lists {len(paras)} prompts; a paraphrase family needs "
                              f">= 5")
        if not (paras or options.get("orders") or options.get("formats")):
            raise ConfigError(f"{where}: a prompt-sensitivity task needs paraphrases, orders or formats")
        for how in options.get("orders") or []:
            if how not in ORDERS:
                raise ConfigError(f"{where}: unknown label order '{how}'; known: {', '.join(ORDERS)}")
        from ...prompts import get_prompt

        for name in paras + list(options.get("formats") or []):
            get_prompt(name)

    def variants(self, task) -> list[tuple[str, str, str | None]]:
        """(variant name, prompt name, order)"""
        out = [("base", task.prompt["name"], None)]
        out += [(f"para:{p.rsplit('/', 1)[-1]}", p, None) for p in task.options.get("paraphrases", [])]
        out += [(f"order:{o}", task.prompt["name"], o) for o in task.options.get("orders", [])]
        out += [(f"format:{f.rsplit('/', 1)[-1].removeprefix('format_')}", f, None)
                for f in task.options.get("formats", [])]
        return out

    def items(self, task, samples, ctx):
        out = []
        for variant, prompt, order in self.variants(task):
            for s in samples:
                over = {}
                if order:
                    over["variables"] = {"candidates": reorder(self.candidates(task, s), order, task.name)}
                out.append(self.make_item(task, s, variant=variant, prompt=prompt, **over))
        return out

    def _spec(self, task):
        spec = next((m for m in task.metric_list if m.metric == "closed_set"), None)
        if spec is None:
            raise ConfigError(f"task '{task.name}': prompt_sensitivity needs a closed_set metric in metric_list")
        return spec

    def summarize(self, task, records, ctx):
        spec = self._spec(task)
        mapper = ctx.mapper(spec.options.get("label_set"))
        by_variant: dict[str, dict[str, dict]] = {}
        for r in records:
            by_variant.setdefault(r["variant"], {})[r["sample_id"]] = r
        names = [v for v, _, _ in self.variants(task) if v in by_variant]
        common = sorted(set.intersection(*(set(by_variant[v]) for v in names))) if names else []
        per_variant, preds = {}, []
        for v in names:
            rows = [by_variant[v][sid] for sid in common]
            res = score("closed_set", [r["gold"]["label"] for r in rows], [r["parsed"].get("labels", []) for r in rows],
                        mapper=mapper, bootstrap=ctx.bootstrap)
            preds.append([r["scores"].get(f"{spec.prefix}.pred", "<unmapped>") for r in rows])
            per_variant[v] = {"prompt_id": rows[0]["prompt_id"] if rows else None,
                              **{k: res[k] for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "macro_f1",
                                                     "macro_f1_ci_low", "macro_f1_ci_high", "unmapped_rate")}}
        m: dict[str, float] = {}
        agreement = None
        if per_variant:
            acc = np.array([p["accuracy"] for p in per_variant.values()])
            f1 = np.array([p["macro_f1"] for p in per_variant.values()])
            m.update({"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1
                      else 0.0, "accuracy_min": float(acc.min()), "accuracy_max": float(acc.max()),
                      "accuracy_range": float(acc.max() - acc.min()), "macro_f1_mean": float(f1.mean()),
                      "macro_f1_range": float(f1.max() - f1.min()), "n_variants": float(len(names)),
                      "n_samples": float(len(common))})
            for v, p in per_variant.items():
                p["flip_vs_base"] = flip_rate(preds[0], preds[names.index(v)]) if common else float("nan")
            if len(names) > 1 and common:
                m["flip_rate_vs_base"] = float(np.mean([per_variant[v]["flip_vs_base"] for v in names[1:]]))
                agree = agreement_matrix(preds)
                m["flip_rate_pairwise"] = float(1 - agree[np.triu_indices(len(names), 1)].mean())
                m["fleiss_kappa"] = fleiss_kappa(ratings_table(preds))
                m["unanimous_rate"] = float(np.mean([len({p[i] for p in preds}) == 1 for i in range(len(common))]))
                agreement = {"variants": names, "matrix": agree.tolist()}
                orders = [v for v in names if v.startswith("order:")]
                if orders:  # per sample: the share of reordered lists whose answer differs from the base's
                    per_sample = np.mean([[a != b for a, b in zip(preds[0], preds[names.index(v)])] for v in orders],
                                         0)
                    m["order_flip_rate"] = float(per_sample.mean())
                    m.update(bootstrap_mean(ctx.bootstrap, per_sample, "order_flip_rate"))
                right = np.array([[by_variant[v][sid]["scores"].get(f"{spec.prefix}.correct", 0.0) for sid in common]
                                  for v in names], float)
                m.update(mean_with_ci(ctx.bootstrap, instance_sensitivity(right), "instance_sensitivity"))
                m.update(self._sample_cis(right, preds, ctx.bootstrap))
            n_cands = len(getattr(mapper, "targets", []) or []) or None
            stats = answer_stats([p for row in preds for p in row], n_cands)
            if stats and common:
                shares = ("majority_share", "answer_entropy_norm")
                m.update(bootstrap_stats(ctx.bootstrap, len(common), lambda idx: {
                    k: v for k, v in answer_stats([row[i] for row in preds for i in idx], n_cands).items()
                    if k in shares}))
            majority = stats.pop("majority_answer", None)
            m.update(stats)
            flag = kappa_flag(m["majority_share"]) if stats else None
            m["kappa_flagged"] = float(flag is not None)
            if flag:
                ctx.note(task, f"{flag} (majority answer: {majority})")
        for v, p in per_variant.items():
            m[f"{v}.accuracy"] = p["accuracy"]
        return {"metrics": m, "tables": {"per_variant": per_variant, "agreement": agreement}}

    @staticmethod
    def _sample_cis(right: np.ndarray, preds: list[list], n_boot: int) -> dict[str, float]:
        """CIs of the spread over variants and of the agreement statistics, from resampling the samples (every
        variant answered the same samples, so one resample moves all variants together)."""
        out: dict[str, float] = {}
        n = right.shape[1]
        def spread(idx):  # accuracy of every variant on one resample of the samples
            acc = right[:, idx].mean(1)
            return {"accuracy_mean": acc.mean(), "accuracy_min": acc.min(), "accuracy_max": acc.max(),
                    "accuracy_range": acc.max() - acc.min(),
                    "fleiss_kappa": fleiss_kappa(ratings_table([[row[i] for i in idx] for row in preds]))}

        out.update(bootstrap_stats(n_boot, n, spread))
        base = np.array(preds[0], object)
        flips = np.mean([[a != b for a, b in zip(base, row)] for row in preds[1:]], 0)  # per sample, vs base
        out.update(bootstrap_mean(n_boot, flips, "flip_rate_vs_base"))
        out.update(bootstrap_mean(n_boot, [len({row[i] for row in preds}) == 1 for i in range(n)], "unanimous_rate"))
        return out

    def headline(self, task):
        return task.headline or ["accuracy_mean", "accuracy_min", "accuracy_max", "accuracy_range",
                                 "instance_sensitivity", "flip_rate_vs_base", "order_flip_rate", "fleiss_kappa",
                                 "majority_share", "answer_entropy_norm", "kappa_flagged"]

    def plots(self, task, summary, records, outdir: Path, ctx):
        from ..report import bar_plot, heatmap

        per = summary["tables"].get("per_variant") or {}
        m = {}
        for v, p in per.items():
            m[v], m[f"{v}_ci_low"], m[f"{v}_ci_high"] = p["accuracy"], p["accuracy_ci_low"], p["accuracy_ci_high"]
        paths = [bar_plot(m, list(per), outdir / f"{task.name}_variants.png",
                          title=f"{task.name}: accuracy per prompt variant", ylabel="accuracy")]
        agreement = summary["tables"].get("agreement") or {"variants": list(per), "matrix": np.eye(len(per)).tolist()}
        paths.append(heatmap(np.array(agreement["matrix"]), agreement["variants"], outdir / f"{task.name}_agreement.png",
                             title=f"{task.name}: share of samples where two variants agree"))
        return paths


SUITE = PromptSensitivitySuite
