"""Suites: the special logic of each family of eval tasks, registered by name (task YAML `suite:`).

    standard            one request per sample; metric_list scored by affectllm.scoring       (base.py)
    ov                  open-vocabulary metrics (MER wheel, MER2024 with per-sample synonyms)   (ov.py)
    zero_shot           open answers mapped into each corpus' label set; EmoBench choices; LOCO  (zero_shot.py)
    emobench            EmoBench EU/EA multiple choice, letter answers                           (emobench.py)
    prompt_sensitivity  paraphrases, label orders, separators: spread, flips, Fleiss' kappa     (prompt_sensitivity.py)
    hallucination       absent-modality, paired yes/no, conflict and grounding probes            (hallucination.py)
    calibration         label probabilities from logprobs + verbal confidence; dev-fitted T      (calibration.py)
    robustness          modality dropping and noise levels -> degradation curves                 (robustness.py)
    fairness            any suite's metric per subgroup, gaps with bootstrap CIs                  (fairness.py)
"""
from __future__ import annotations

from ...registry import Registry

SUITES = Registry("suite")
SUITES.register("standard", "affectllm.evaluation.suites.base:Suite")
for _name in ("ov", "zero_shot", "emobench", "prompt_sensitivity", "hallucination", "calibration", "robustness",
              "fairness"):
    SUITES.register(_name, f"affectllm.evaluation.suites.{_name}:SUITE")
