"""`robustness`: how answers degrade when inputs are removed or corrupted.

Variants per sample (options): ``clean``; ``drop:<modality>`` for each listed modality the sample has (only when
something else remains); and noise at several levels, applied in memory and seeded per sample (`inputs.py`):
``snr_db`` (white noise added to the audio at that SNR), ``blur`` (Gaussian blur radius, px), ``occlusion``
(share of the image area blacked out), ``word_dropout`` (share of words removed from the text).

Every variant is scored with the task's metrics (bootstrap CIs); the summary gives each variant's headline metric,
its drop from clean (`<variant>.delta`), and degradation curves per noise kind (plotted with CIs; the clean score is
the zero-noise point). A robust model degrades gracefully, and a model that ignores a modality shows no change when
that modality is dropped or corrupted: read the drop rows as "how much does the answer use this modality".
"""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError
from .base import Suite

NOISE = {"snr_db": "audio", "blur": "image", "occlusion": "image", "word_dropout": "text"}
DELTA_BOOT = 200  # paired resamples for a delta's CI (each recomputes the corpus metric twice, e.g. the wheel F)


def difficulty(kind: str, level: float) -> float:
    """How much harder a perturbation makes the input for the dummy backend (0 = clean, 1 = hopeless)."""
    if kind == "drop":
        return 0.3
    if kind == "snr_db":
        return min(1.0, max(0.0, (30.0 - level) / 40.0))
    if kind == "blur":
        return min(1.0, level / 6.0)
    return min(1.0, float(level))


class RobustnessSuite(Suite):
    name = "robustness"
    option_keys = Suite.option_keys | {"drop", *NOISE, "metric"}

    @classmethod
    def validate(cls, options, where):
        super().validate(options, where)
        for kind in NOISE:
            for level in options.get(kind) or []:
                if not isinstance(level, (int, float)):
                    raise ConfigError(f"{where}: options.{kind} levels must be numbers, got {level!r}")

    def items(self, task, samples, ctx):
        out = []
        for s in samples:
            have = [m for m in s.modalities() if not task.dataset.get("modalities") or m in task.dataset["modalities"]]
            out.append(self.make_item(task, s, variant="clean", modalities=have))
            for m in task.options.get("drop") or []:
                rest = [x for x in have if x != m]
                if m == "audio" and "video" in rest:
                    ctx.note(task, "drop:audio skipped where a video remains: its soundtrack still carries the audio "
                                   "(drop the video to remove both)")
                    continue
                if m in have and rest:
                    out.append(self.make_item(task, s, variant=f"drop:{m}", modalities=rest,
                                              oracle={"difficulty": difficulty("drop", 0), "modalities": rest}))
            for kind, modality in NOISE.items():
                if modality not in have:
                    continue
                for level in task.options.get(kind) or []:
                    out.append(self.make_item(task, s, variant=f"{kind}:{level}", modalities=have,
                                              perturb={"kind": kind, "level": level},
                                              oracle={"difficulty": difficulty(kind, float(level))}))
        return out

    def main_metric(self, task) -> str:
        if task.options.get("metric"):
            return task.options["metric"]
        keys = self.headline_base(task)
        if not keys:
            raise ConfigError(f"task '{task.name}': robustness needs a metric in metric_list")
        return keys[0]

    def headline_base(self, task) -> list[str]:
        return Suite.headline(self, task)

    def summarize(self, task, records, ctx):
        key = self.main_metric(task)
        variants = list(dict.fromkeys(r["variant"] for r in records))
        m: dict[str, float] = {}
        per: dict[str, dict] = {}
        clean_ids = {r["sample_id"] for r in records if r["variant"] == "clean"}
        for v in variants:
            rows = [r for r in records if r["variant"] == v and r["sample_id"] in clean_ids]
            res = self.corpus_metrics(task, rows, ctx)
            if key not in res:
                continue
            per[v] = {"value": res[key], "ci_low": res.get(f"{key}_ci_low"), "ci_high": res.get(f"{key}_ci_high"),
                      "n": len(rows)}
            m[f"{v}.{key}"] = res[key]
            m[f"{v}.{key}_ci_low"], m[f"{v}.{key}_ci_high"] = per[v]["ci_low"], per[v]["ci_high"]
            if v == "clean":
                m.update({k: val for k, val in res.items()})
        clean = per.get("clean", {}).get("value")
        by_id = {}
        for r in records:
            by_id.setdefault(r["variant"], {})[r["sample_id"]] = r
        for v, p in per.items():
            if v != "clean" and clean is not None:
                m[f"{v}.delta"] = clean - p["value"]
                m.update(self._delta_ci(task, key, by_id["clean"], by_id[v], ctx, f"{v}.delta"))
        curves = {}
        for kind in NOISE:
            pts = sorted((float(v.split(":", 1)[1]), p) for v, p in per.items() if v.startswith(kind + ":"))
            if pts:
                curves[kind] = [{"level": lv, **p} for lv, p in pts]
        drops = {v: p for v, p in per.items() if v.startswith("drop:")}
        return {"metrics": m, "tables": {"metric": key, "per_variant": per, "curves": curves, "drops": drops,
                                         "clean": per.get("clean")}}

    def _delta_ci(self, task, key: str, clean: dict, variant: dict, ctx, name: str) -> dict[str, float]:
        """Paired bootstrap CI of clean - variant: one resample of the samples scores both answers of each."""
        from ..metrics import bootstrap_stats

        pairs = [(clean[i], variant[i]) for i in sorted(set(clean) & set(variant))]

        def stat(idx):  # the corpus metric alone (no inner bootstrap) on one resample, for both answers
            a = self.corpus_metrics(task, [pairs[i][0] for i in idx], ctx, bootstrap=0).get(key, float("nan"))
            b = self.corpus_metrics(task, [pairs[i][1] for i in idx], ctx, bootstrap=0).get(key, float("nan"))
            return {name: a - b}

        return bootstrap_stats(min(ctx.bootstrap, DELTA_BOOT), len(pairs), stat)

    def headline(self, task):
        if task.headline:
            return task.headline
        key = self.main_metric(task)
        return [f"clean.{key}"] + [f"drop:{d}.delta" for d in task.options.get("drop") or []]

    def plots(self, task, summary, records, outdir: Path, ctx):
        from ..report import bar_plot, curve_plot

        t = summary["tables"]
        paths = []
        if t.get("curves"):
            paths.append(curve_plot(t["curves"], t.get("clean"), outdir / f"{task.name}_degradation.png",
                                    title=f"{task.name}: {t['metric']} under noise", ylabel=t["metric"]))
        bars = {}
        for v in ["clean", *t.get("drops", {})]:
            p = t["per_variant"].get(v)
            if p:
                bars[v], bars[f"{v}_ci_low"], bars[f"{v}_ci_high"] = p["value"], p["ci_low"], p["ci_high"]
        paths.append(bar_plot(bars, [k for k in bars if not k.endswith(("_ci_low", "_ci_high"))],
                              outdir / f"{task.name}_drop.png", title=f"{task.name}: {t['metric']} with a modality "
                              "dropped", ylabel=t["metric"]))
        return paths


SUITE = RobustnessSuite
