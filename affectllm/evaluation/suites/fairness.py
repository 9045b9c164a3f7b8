"""`fairness`: one metric per subgroup (RAVDESS speaker gender, EmoBench language, MELD speaker, ...), with the gap
between the best and the worst group.

The samples, prompts and answers are those of a base suite (option ``base_suite``: standard, zero_shot,
emobench, ...); the option ``group_by`` names the sample field that defines the groups (`gender`, `language`,
`speaker`, or any gold field), ``metric`` the number compared (e.g. ``closed_set.accuracy``). Per group: the metric
with a bootstrap CI (from the scoring module's own per-sample tables). Gap = max - min over groups with at least
``min_group_size`` samples; its CI comes from the same joint resamples (all groups resampled together, so the
interval accounts for both groups' noise). Use `dataset.stratify` on the group field so small limits still cover
every group. A gap whose CI contains 0 is not evidence of unfairness on this sample size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ...scoring.api import score_table
from . import SUITES
from .base import Suite


class FairnessSuite(Suite):
    name = "fairness"

    @classmethod
    def _base_cls(cls, options: dict):
        name = options.get("base_suite", "standard")
        if name == "fairness":
            raise ConfigError("fairness cannot use itself as base_suite")
        return SUITES.get(name)

    @classmethod
    def validate(cls, options, where):
        base = cls._base_cls(options)
        own = {"group_by", "base_suite", "metric", "min_group_size", "groups"}
        sub = {k: v for k, v in options.items() if k not in own}
        base.validate(sub, where)
        if not options.get("group_by"):
            raise ConfigError(f"{where}: fairness needs options.group_by (e.g. gender, language, speaker)")
        if not options.get("metric"):
            raise ConfigError(f"{where}: fairness needs options.metric (e.g. closed_set.accuracy)")

    def __init__(self):
        self._base: Suite | None = None

    def base(self, task) -> Suite:
        if self._base is None:
            self._base = self._base_cls(task.options)()
        return self._base

    def load_samples(self, task, ctx):
        return self.base(task).load_samples(task, ctx)

    def items(self, task, samples, ctx):
        return self.base(task).items(task, samples, ctx)

    def record(self, task, item, raw, ctx, response=None):
        return self.base(task).record(task, item, raw, ctx, response)

    def summarize(self, task, records, ctx):
        out = self.base(task).summarize(task, records, ctx)
        field, key = task.options["group_by"], task.options["metric"]
        prefix, _, stat = key.rpartition(".")
        spec = next((m for m in task.metric_list if m.prefix == prefix), None)
        if spec is None:
            raise ConfigError(f"task '{task.name}': options.metric '{key}' names no metric_list entry '{prefix}'")
        keep, gold, pred = self.base(task).metric_inputs(spec, records)
        opts = ctx.metric_options(task, spec, keep)
        groups = [str(r["gold"].get(field)) for r in keep]
        allowed = task.options.get("groups")
        names = sorted({g for g in groups if g != "None" and (not allowed or g in allowed)})
        min_n = int(task.options.get("min_group_size", 5))
        tables, per = {}, {}
        for g in names:
            idx = [i for i, x in enumerate(groups) if x == g]
            try:
                tables[g] = (idx, score_table(spec.metric, [gold[i] for i in idx], [pred[i] for i in idx], **opts))
            except Exception as e:
                ctx.note(task, f"group {g}: {e}")
                continue
            per[g] = {"value": float(tables[g][1].result()[stat]), "n": len(idx), "in_gap": len(idx) >= min_n}
        draws = self._draws(tables, stat, len(keep), ctx.bootstrap)
        m = out["metrics"]
        for g, p in per.items():
            vals = draws.get(g)
            if vals is not None and np.isfinite(vals).any():
                p["ci_low"], p["ci_high"] = (float(x) for x in np.nanpercentile(vals, [2.5, 97.5]))
            m[f"{field}={g}.{key}"] = p["value"]
        in_gap = [g for g, p in per.items() if p["in_gap"]]
        best_worst: dict = {}
        if len(in_gap) >= 2:
            vals = {g: per[g]["value"] for g in in_gap}
            m["gap"] = max(vals.values()) - min(vals.values())
            m["ratio_min_max"] = min(vals.values()) / max(vals.values()) if max(vals.values()) > 0 else float("nan")
            best_worst = {"best_group": max(vals, key=vals.get), "worst_group": min(vals, key=vals.get)}
            if draws:
                stack = np.stack([draws[g] for g in in_gap])
                ok = np.isfinite(stack).all(0)
                if ok.any():
                    gaps = stack[:, ok].max(0) - stack[:, ok].min(0)
                    m["gap_ci_low"], m["gap_ci_high"] = (float(x) for x in np.percentile(gaps, [2.5, 97.5]))
                    top = stack[:, ok].max(0)
                    ratios = stack[:, ok].min(0)[top > 0] / top[top > 0]
                    if len(ratios):
                        m["ratio_min_max_ci_low"], m["ratio_min_max_ci_high"] = (
                            float(x) for x in np.percentile(ratios, [2.5, 97.5]))
        else:
            ctx.note(task, f"fewer than two groups with >= {min_n} samples: no gap reported")
        out["tables"]["groups"] = {"field": field, "metric": key, "per_group": per, "min_group_size": min_n,
                                   **best_worst}
        return out

    @staticmethod
    def _draws(tables: dict, stat: str, n: int, n_boot: int) -> dict[str, np.ndarray]:
        """Joint bootstrap: one resample of all records, each group's metric from its rows' counts."""
        if not n_boot or not tables or n == 0:
            return {}
        rng = np.random.default_rng(0)
        out = {g: np.empty(n_boot) for g in tables}
        for b in range(n_boot):
            counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            for g, (idx, table) in tables.items():
                w = counts[idx]
                if w.sum() == 0:
                    out[g][b] = np.nan
                    continue
                with np.errstate(divide="ignore", invalid="ignore"):
                    out[g][b] = float(table.result(weights=w).get(stat, np.nan))
        return out

    def headline(self, task):
        return task.headline or [task.options["metric"], "gap", "ratio_min_max"]

    def plots(self, task, summary, records, outdir: Path, ctx):
        from ..report import bar_plot

        t = summary["tables"].get("groups") or {}
        bars = {}
        for g, p in (t.get("per_group") or {}).items():
            name = f"{t['field']}={g} (n={p['n']})"
            bars[name], bars[f"{name}_ci_low"], bars[f"{name}_ci_high"] = p["value"], p.get("ci_low"), p.get("ci_high")
        keys = [k for k in bars if not k.endswith(("_ci_low", "_ci_high"))]
        gap = summary["metrics"].get("gap")
        title = f"{task.name}: {t.get('metric')} by {t.get('field')}" + (f" (gap {gap:.3f})" if gap is not None else "")
        return [bar_plot(bars, keys, outdir / f"{task.name}_groups.png", title=title, ylabel=t.get("metric", ""))]


SUITE = FairnessSuite
