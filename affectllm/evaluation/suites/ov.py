"""`ov`: open-vocabulary emotion recognition scored with the official-compatible metrics of the scoring module.

* `mer_wheel` (MER2025/2026 emotion wheel, lexicon from ../shared/data/ovmer/emotion_wheel when present): the
  official `mer2025` next to the honest variants `mer2025_lc` (label-count-aware precision: synonym padding and
  made-up words cost precision) and `mer2025_sample` (mean per-sample F), with the out-of-lexicon rates that the
  official code silently drops.
* `mer2024_ov` where per-sample synonym groups exist (openset-synonym.zip covers the OV-MERD samples; the
  groups are restricted to the clips evaluated, and the metric is skipped, with a note, when none is covered).
* Corpora with closed labels (RAVDESS, MELD, CK+) are scored the same way, their single gold label treated as an
  open-vocabulary gold set. Gold words outside the wheel lexicon (e.g. "neutral", "calm") make the official metric
  skip the sample: read `oov_rate_gold` before comparing numbers across corpora.
"""
from __future__ import annotations

from pathlib import Path

from .base import Suite


class OVSuite(Suite):
    name = "ov"

    def plots(self, task, summary: dict, records: list[dict], outdir: Path, ctx) -> list[Path]:
        from ..report import bar_plot

        m = summary["metrics"]
        keys = [k for k in ("mer_wheel.mer2025", "mer_wheel.mer2025_lc", "mer_wheel.mer2025_sample",
                            "mer_wheel.level1_f", "mer_wheel.level2_f", "mer2024_ov.score", "mer2024_ov.accuracy",
                            "mer2024_ov.recall", "mer_wheel.oov_rate_pred") if k in m]
        if not keys:
            return super().plots(task, summary, records, outdir, ctx)
        return [bar_plot(m, keys, outdir / f"{task.name}_ov.png",
                         title=f"{task.name}: official vs honest open-vocabulary scores")]


SUITE = OVSuite
