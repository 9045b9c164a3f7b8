"""Dev evaluation during training, through the eval suite itself (`affectllm.evaluation.run_eval`, hf backend on
the in-memory model): one eval path, so the number a run selects its checkpoint on is computed exactly as the
reported one. Only tasks on a dev split are accepted: choosing a step on test is refused.

Each evaluation appends one row to `<run>/dev_eval.jsonl`; when the task's headline metric improves, the model
is saved as the artifact `<run>/best` (atomic), which is what a recipe ships."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger("affectllm")


def dev_task(name: str, limit: int | None = None):
    """The TaskConfig of an eval task, refused unless it reads a dev split."""
    from ..evaluation.tasks import resolve_tasks

    tasks = resolve_tasks([name], limit)
    for t in tasks:
        if t.dataset.get("split") != "dev":
            raise ConfigError(f"run.eval_task '{name}': task '{t.name}' reads split '{t.dataset.get('split')}'; "
                              "checkpoints may only be chosen on a dev split (use a *_dev task)")
    return tasks


def headline_value(result: dict) -> tuple[str, float | None]:
    metrics = result.get("metrics", {})
    key = next((k for k in result.get("headline", []) if k in metrics), None)
    if key is None:
        return "", None
    value = metrics[key]
    return key, float(value["value"] if isinstance(value, dict) else value)


def dev_log(out: Path) -> list[dict]:
    """The rows of `<run>/dev_eval.jsonl`, oldest first (empty before the first evaluation)."""
    path = out / "dev_eval.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def best_so_far(out: Path) -> float | None:
    values = [r.get("value") for r in dev_log(out)]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def evaluate_on_dev(pipe, recipe, out: Path, step: int, base: str, progress: bool = True,
                    extra: dict | None = None) -> dict:
    """Evaluate the model as it is now on the recipe's dev task; save `best` when the headline improves.
    `extra`: fields recorded beside the step (the interpolation stage records its weight `alpha`)."""
    from ..artifact import save_artifact
    from ..evaluation import run_eval

    tasks = dev_task(recipe.run.eval_task, recipe.run.eval_limit)
    cap = recipe.run.eval_max_new_tokens
    for t in tasks:  # labels come first in every trained answer: a short cap keeps selection cheap
        if cap:
            t.generation = {**t.generation, "max_new_tokens": min(cap, int(t.gen()["max_new_tokens"]))}
    model = pipe.model
    was_training = model.training
    model.eval()
    try:
        summary = run_eval(pipe, tasks, output=out / "dev_eval" / f"step-{step:06d}", backend="hf",
                           progress=False, bootstrap=200)
    finally:
        model.train(was_training)
    rows = []
    for t in tasks:
        key, value = headline_value(summary["tasks"][t.name])
        rows.append({"task": t.name, "metric": key, "value": value})
    mean = sum(r["value"] or 0.0 for r in rows) / len(rows)
    bars = recipe.run.eval_bars
    value = min((r["value"] or 0.0) - float(bars[r["task"]]) for r in rows) if bars else mean
    previous = best_so_far(out)
    record = {"step": step, **(extra or {}), "value": value, "tasks": rows,
              "best": previous is None or value > previous}
    if bars:
        record.update(selection="worst margin to run.eval_bars", mean=mean, bars=dict(bars))
    with open(out / "dev_eval.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    if record["best"]:
        save_artifact(pipe, out / "best", base=base, recipe_yaml=recipe.to_yaml(),
                      extra_files={"selection.json": json.dumps(record, indent=2)})
    where = f"step {step}" + "".join(f" {k}={v}" for k, v in (extra or {}).items())
    msg = f"dev eval {where}: " + ", ".join(f"{r['task']} {r['metric']}={r['value']:.4f}" for r in rows
                                            if r["value"] is not None) + (" (best)" if record["best"] else "")
    log.info(msg)
    if progress:
        print(msg, flush=True)
    return record
