"""The eval suite: tasks as YAML data (evals/), backends (OpenAI-compatible server, transformers, dummy), a
resumable runner, suites with their special logic, and a markdown report with plots.

    affectllm eval --model http://127.0.0.1:8000/v1 --tasks default --output runs/eval/mini
    from affectllm.evaluation import run_eval; run_eval("tiny", "zs_meld", "out", backend="hf", limit=4)

Module map: tasks (YAML loader: include, group, validation), inputs (items -> messages, perturbations),
backends, store (resumable JSONL), runner, metrics (calibration, agreement, paired probes, seed intervals),
parsers (letter / yes-no answers, keyword rules), suites/ (one module per suite), report (markdown + PNG), cli.
Emotion answers are scored only by `affectllm.scoring`."""
from __future__ import annotations

__all__ = ["load_catalog", "resolve_tasks", "run_eval", "run_task"]


def __getattr__(name: str):  # lazy: `affectllm --help` should not import the runner
    if name in ("run_eval", "run_task"):
        from . import runner

        return getattr(runner, name)
    if name in ("load_catalog", "resolve_tasks"):
        from . import tasks

        return getattr(tasks, name)
    raise AttributeError(name)
