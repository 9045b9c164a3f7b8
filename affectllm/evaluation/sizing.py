"""How many samples each eval task scores, and whether that is enough for a 95% CI half-width <= 0.05 (issue 12).

Why: a headline with n = 6 has a CI of roughly +-0.4; a reader needs to know before running a task whether its n
can say anything. The bound used is the worst case of a rate over the task's samples (accuracy, a hit or
acknowledgement rate: p = 0.5), 1.96 * sqrt(0.25 / n): n >= 385 guarantees <= 0.05 for any such rate. A task whose
split (after its filter, modalities and skip) has fewer samples runs on all of them, which is the most the split
allows. Statistics that are not a rate over samples (macro-F1 over many classes, a gap between subgroups, a CCC)
have their own, usually wider, intervals: the run's report shows each one's bootstrap CI.

`affectllm eval --plan --tasks NAMES [--limit N]` prints, per task: the samples it will score, the samples its split
holds, the requests per sample (prompt variants, perturbations, yes/no pairs), and the verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959964
TARGET_HALF_WIDTH = 0.05
N_FOR_TARGET = math.ceil((Z95 * 0.5 / TARGET_HALF_WIDTH) ** 2)  # 385


def worst_half_width(n: int) -> float:
    """95% normal-approximation half-width of a rate at p = 0.5 over n samples (inf for n = 0)."""
    return Z95 * math.sqrt(0.25 / n) if n > 0 else math.inf


@dataclass
class TaskPlan:
    task: str
    corpus: str
    split: str
    n: int            # samples the task scores at its limit
    available: int    # samples its split holds (after filter / modalities / skip)
    requests: int     # model requests (n x variants, pairs, fit + eval ...)
    half_width: float  # worst case for a rate over the n samples
    verdict: str      # "ok" | "whole split" | "too small"


def verdict(n: int, available: int) -> str:
    if worst_half_width(n) <= TARGET_HALF_WIDTH:
        return "ok"
    return "whole split" if n >= available else "too small"


def plan_task(task, ctx) -> TaskPlan:
    """Load the task's samples at its limit and without one (no model, no media decoding)."""
    from .suites import SUITES

    suite = SUITES.get(task.suite)()
    samples = suite.load_samples(task, ctx)
    n = sum(s.meta.get("_role", "eval") == "eval" for s in samples)  # calibration: the reported split, not the fit
    requests = len(suite.items(task, samples, ctx))
    limit = task.limit
    try:
        task.limit = None
        every = suite.load_samples(task, ctx)
    finally:
        task.limit = limit
    available = sum(s.meta.pop("_role", "eval") == "eval" for s in every)
    return TaskPlan(task.name, task.dataset.get("corpus") or task.dataset.get("manifest", "?"),
                    task.dataset["split"], n, available, requests, worst_half_width(n), verdict(n, available))


def plan_tasks(tasks, data_root=None) -> list[TaskPlan]:
    from .runner import RunContext

    ctx = RunContext(data_root=data_root)
    return [plan_task(t, ctx) for t in tasks]


def format_plan(plans: list[TaskPlan]) -> str:
    head = f"{'task':28s} {'corpus/split':24s} {'n':>5s} {'split':>6s} {'requests':>8s} {'+-95% (rate)':>12s}  verdict"
    lines = [head, "-" * len(head)]
    for p in plans:
        lines.append(f"{p.task:28s} {p.corpus + '/' + p.split:24s} {p.n:5d} {p.available:6d} {p.requests:8d} "
                     f"{p.half_width:12.3f}  {p.verdict}")
    lines.append(f"{len(plans)} task(s), {sum(p.n for p in plans)} samples, {sum(p.requests for p in plans)} requests; "
                 f"half-width is the worst case of a rate (p = 0.5); target <= {TARGET_HALF_WIDTH} "
                 f"(n >= {N_FOR_TARGET}) where the split allows")
    return "\n".join(lines)
