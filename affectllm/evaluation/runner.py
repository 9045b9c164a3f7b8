"""Run eval tasks against a backend: items -> requests -> answers -> per-sample JSONL -> summaries -> report.

    run_eval("http://127.0.0.1:8000/v1", "default", output="runs/eval/mini")      # the served model
    run_eval("tiny", "zs_meld", output=tmp, backend="hf", limit=4)                # in process
    run_eval("dummy", "ov", output=tmp, backend="dummy", limit=2, bootstrap=50)   # no model at all

Output folder::

    summary.json            model (id, weights hash, recipe), run (command, seeds, git commit), every task's metrics
    report.md, plots/*.png  the human-readable report
    <task>/samples.jsonl    one row per request: key, sample id, prompt id@version, input, raw, parsed, scores
    <task>/summary.json     that task's metrics, tables and notes;  <task>/run.json  what the rows were made by

Rules for honest numbers, enforced here: greedy decoding unless a task sets a temperature; a task whose answers
depend on the seed (sampling) runs every seed of ``seeds`` and needs >= 3 of them (metrics are means with a
t-interval over seeds); tasks that cannot depend on the seed run once; the task loader refuses fitting on test;
every summary records model hash, prompt versions, decoding and seeds. Re-running the same command resumes.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import AffectError, ConfigError
from .backends import Backend, Request, make_backend
from .scored import ScoredTaskError
from .inputs import Item, build_messages, stable_seed
from .metrics import seed_interval
from .store import SampleStore
from .tasks import TaskConfig, resolve_tasks

MIN_SEEDS = 3


@dataclass
class RunContext:
    data_root: Path | None = None
    bootstrap: int = 1000
    backend_info: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    def root(self) -> Path:
        from ..data import default_data_root

        return Path(self.data_root) if self.data_root else default_data_root()

    def note(self, task: TaskConfig, msg: str) -> None:
        lst = self.notes.setdefault(task.name, [])
        if msg not in lst:
            lst.append(msg)

    def subst(self, value: Any) -> Any:
        if isinstance(value, str):
            return (value.replace("${wheel}", str(self.root() / "ovmer" / "emotion_wheel"))
                    .replace("${data}", str(self.root())))
        return value

    def mapper(self, label_set: Any):
        """A cached `scoring.LabelMapper` for a label-set name or list."""
        from ..scoring import LabelMapper

        key = ("mapper", json.dumps(label_set))
        if key not in self.cache:
            self.cache[key] = LabelMapper(label_set)
        return self.cache[key]

    def wheel(self, path: str | Path | None = None):
        from ..scoring import MerWheel

        path = Path(path) if path else self.root() / "ovmer" / "emotion_wheel"
        key = ("wheel", str(path))
        if key not in self.cache:
            self.cache[key] = MerWheel.load(path) if (path / "format.csv").is_file() else None
        return self.cache[key]

    def metric_options(self, task: TaskConfig, spec, keep: list[dict]) -> dict | None:
        """Options of one metric_list entry ready for `scoring.score`; None (with a note) when a resource it
        needs (wheel lexicon, synonym file) is absent."""
        opts = {k: self.subst(v) for k, v in spec.options.items()}
        if spec.metric in ("closed_set", "closed_set_multilabel"):
            opts["mapper"] = self.mapper(opts.pop("label_set"))
        elif spec.metric == "mer_wheel":
            path = Path(opts.pop("lexicon", self.subst("${wheel}")))
            wheel = self.wheel(path)
            if wheel is None:
                self.note(task, f"{spec.prefix}: emotion-wheel lexicon not found at {path}; metric skipped")
                return None
            opts["lexicon"] = wheel
        elif spec.metric == "mer2024_ov":
            names = [str(r["gold"].get("name") or r["sample_id"]) for r in keep]
            opts["names"] = names
            if opts.get("synonyms"):
                path = Path(opts["synonyms"])
                if not path.is_file():
                    self.note(task, f"{spec.prefix}: synonym file not found at {path}; metric skipped")
                    return None
                key = ("synonyms", str(path))
                if key not in self.cache:
                    from ..scoring import read_synonym_zip

                    self.cache[key] = read_synonym_zip(path)
                groups = {n: self.cache[key][n] for n in names if n in self.cache[key]}
                if not groups:
                    self.note(task, f"{spec.prefix}: none of the samples has stored synonym groups; metric skipped")
                    return None
                opts["synonyms"] = groups
        return opts


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _unsupported(item: Item, supported: set[str] | None) -> set[str]:
    if supported is None:
        return set()
    wanted = set(item.modalities if item.modalities is not None else item.sample.modalities())
    return wanted - supported - {"text"}


def _request(task: TaskConfig, item: Item, seed: int, backend: Backend) -> tuple[Request, str, dict]:
    messages, prompt_id, record = build_messages(item, seed, backend.video_use_audio)
    g = task.gen(**item.gen)
    temp = float(g["temperature"] or 0.0)
    req = Request(key=f"{task.name}/{seed}/{item.key}", messages=messages, max_new_tokens=int(g["max_new_tokens"]),
                  temperature=temp, top_p=g.get("top_p"), seed=stable_seed(seed, item.key) % (2**31) if temp > 0
                  else None, top_logprobs=int(g.get("top_logprobs") or 0), oracle=item.oracle)
    return req, prompt_id, record


def _generate(task, suite, items, seed, store, backend, ctx, progress) -> None:
    todo = [it for it in items if f"{seed}/{it.key}" not in store]
    if not todo:
        return
    bar = tqdm(total=len(todo), desc=f"{task.name}" + (f" seed {seed}" if seed else ""), disable=not progress,
               leave=False)
    step = max(1, backend.batch_size)
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        built, rows = [], []
        for it in chunk:
            try:
                built.append((it, *_request(task, it, seed, backend)))
            except AffectError as e:               # an input that cannot be built (bad media): recorded, not fatal
                rows.append(_row(task, suite, it, seed, None, "", {}, ctx, error=str(e)))
        responses = backend.generate([b[1] for b in built]) if built else []
        if built and suite.scores_candidates(task):
            from .scored import attach_scores

            attach_scores(task, suite, backend, built, responses)
        for (it, _req, prompt_id, inp), resp in zip(built, responses):
            rows.append(_row(task, suite, it, seed, resp, prompt_id, inp, ctx))
        store.append(rows)
        bar.update(len(chunk))
    bar.close()


def _row(task, suite, item: Item, seed: int, resp, prompt_id: str, inp: dict, ctx, error: str | None = None) -> dict:
    raw = resp.text if resp is not None else ""
    row = {"key": f"{seed}/{item.key}", "task": task.name, "task_version": task.version, "seed": seed,
           "variant": item.variant, "sample_id": item.sample.id, "corpus": item.sample.corpus,
           "split": item.sample.split, "prompt_id": prompt_id, "input": inp, "raw": raw,
           "error": error or (resp.error if resp is not None else None),
           "finish_reason": resp.finish_reason if resp is not None else None}
    row.update(suite.record(task, item, raw, ctx, resp))
    row["gold"], row["meta"] = item.gold, item.meta
    return row


def _aggregate_seeds(per_seed: list[dict]) -> dict[str, float]:
    if len(per_seed) == 1:
        return dict(per_seed[0])
    out: dict[str, float] = {}
    keys = [k for k in per_seed[0] if not k.endswith(("_ci_low", "_ci_high"))]
    for k in keys:
        mean, sd, lo, hi = seed_interval([s.get(k, float("nan")) for s in per_seed])
        out[k], out[f"{k}_std"], out[f"{k}_ci_low"], out[f"{k}_ci_high"] = mean, sd, lo, hi
    return out


def run_task(task: TaskConfig, backend: Backend, outdir: Path, ctx: RunContext, seeds: int = MIN_SEEDS,
             progress: bool = True, replace_stale: bool = False) -> dict:
    from .suites import SUITES
    from .suites.zero_shot import corpus_seen

    suite = SUITES.get(task.suite)()
    try:
        file = str(Path(task.path).resolve().relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        file = str(task.path)
    base = {"suite": task.suite, "version": task.version, "file": file, "description": task.description}
    try:
        samples = suite.load_samples(task, ctx)
    except AffectError as e:
        if "not found" in str(e):
            return {**base, "status": f"skipped: {e}"}
        raise
    n_reported = sum(1 for s in samples if s.meta.get("_role") != "fit")
    if task.limit is not None and n_reported < task.limit:
        ctx.note(task, f"the split has {n_reported} usable samples, fewer than the {task.limit} asked for: the task "
                       f"runs on what exists")
    seed_dependent = task.temperature > 0
    if seed_dependent and seeds < MIN_SEEDS:
        raise ConfigError(f"task '{task.name}' samples (temperature {task.temperature}), so its numbers depend on the "
                          f"seed: run it with --seeds {MIN_SEEDS} or more to report an interval over seeds")
    run_seeds = list(range(seeds)) if seed_dependent else [0]
    info = backend.info()
    config = {k: v for k, v in task.raw.items() if k != "description"}
    fingerprint = {"task": task.name, "task_version": task.version, "task_config": _sha(config),
                   "model_id": info.get("model_id"), "model_hash": info.get("hash"), "backend": info.get("backend"),
                   "decoding": task.gen()}
    store = SampleStore(outdir / task.name, fingerprint, replace_stale=replace_stale)
    per_seed, notes_skipped = [], 0
    records_by_seed = {}
    for seed in run_seeds:
        items = suite.items(task, samples, ctx)
        keys = [it.key for it in items]
        if len(set(keys)) != len(keys):
            raise AffectError(f"task '{task.name}': duplicate item keys (suite bug)")
        supported = backend.modalities()
        usable = [it for it in items if not _unsupported(it, supported)]
        notes_skipped = len(items) - len(usable)
        if notes_skipped:
            missing = sorted(set().union(*(_unsupported(it, supported) for it in items)))
            ctx.note(task, f"{notes_skipped} of {len(items)} requests need {missing}, which the model cannot take; "
                           f"left out")
        _generate(task, suite, usable, seed, store, backend, ctx, progress)
        records = [store.rows[f"{seed}/{it.key}"] for it in usable]
        records_by_seed[seed] = records
        if records:
            per_seed.append(suite.summarize(task, records, ctx))
    if not per_seed:
        return {**base, "status": "skipped: no request this model can answer", "notes": ctx.notes.get(task.name, [])}
    summary = per_seed[0]
    metrics = _aggregate_seeds([s["metrics"] for s in per_seed])
    plots_dir = outdir / "plots"
    paths = suite.plots(task, summary, records_by_seed[run_seeds[0]], plots_dir, ctx)
    recs = records_by_seed[run_seeds[0]]
    ids = sorted({r["sample_id"] for r in recs})
    errors = [r["error"] for r in recs if r.get("error")]
    if errors:
        ctx.note(task, f"{len(errors)} of {len(recs)} requests failed and count as empty answers "
                       f"(first: {errors[0][:200]})")
    out = {**base, "status": "ok",
           "data": {"corpus": task.dataset["corpus"], "split": task.dataset["split"], "limit": task.limit,
                    "n_samples": len(samples), "n_reported": n_reported, "short_of_limit": bool(
                        task.limit is not None and n_reported < task.limit), "subset_seed": int(task.dataset.get("subset_seed", 0)),
                    "skip": int(task.dataset.get("skip", 0)), "stratify": task.dataset.get("stratify"), "sample_ids_sha": _sha(ids),
                    "manifest": task.dataset.get("manifest"), "label_set": task.dataset.get("label_set"),
                    "seen_in_training": corpus_seen(ctx, task.dataset, {s.corpus for s in samples})},
           "prompt_ids": sorted({r["prompt_id"] for r in recs if r["prompt_id"]}), "decoding": task.gen(),
           "parser": task.parser, "seeds": run_seeds, "seed_dependent": seed_dependent,
           "n_records": len(recs), "n_left_out_unsupported": notes_skipped, "metrics": metrics,
           "tables": summary.get("tables", {}), "headline": suite.headline(task),
           "notes": ctx.notes.get(task.name, []), "plots": [str(p.relative_to(outdir)) for p in paths],
           "samples_file": f"{task.name}/samples.jsonl"}
    if len(per_seed) > 1:
        out["per_seed"] = [s["metrics"] for s in per_seed]
    (outdir / task.name / "summary.json").write_text(json.dumps(out, indent=2, default=str, allow_nan=True))
    return out


def run_eval(model: Any, tasks: str | list[str] | list[TaskConfig], output: str | Path, backend: str | Backend | None = None,
             limit: int | None = None, seeds: int = MIN_SEEDS, bootstrap: int = 1000, progress: bool = True,
             data_root: str | Path | None = None, command: str | None = None, replace_stale: bool = False,
             skipped: dict[str, dict] | None = None, **backend_opts) -> dict:
    """Run tasks (names, groups, YAML paths or TaskConfigs); returns the run summary (also written to disk).
    `replace_stale`: a task folder written by a different run is moved aside instead of refused. `skipped`: tasks
    the caller could not build ({name: {"suite", "status": "skipped: why"}}), listed in the report as such."""
    if seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    if isinstance(tasks, list) and all(isinstance(t, TaskConfig) for t in tasks) and (tasks or skipped):
        configs = tasks
    else:
        configs = resolve_tasks(tasks, limit)
    be = backend if isinstance(backend, Backend) else make_backend(model, backend, **backend_opts)
    outdir = Path(output)
    outdir.mkdir(parents=True, exist_ok=True)
    info = be.info()
    ctx = RunContext(data_root=Path(data_root) if data_root else None, bootstrap=bootstrap, backend_info=info)
    from .suites.zero_shot import trained_on

    summary_path = outdir / "summary.json"
    previous = {}
    if summary_path.is_file():
        old = json.loads(summary_path.read_text())
        if old.get("model", {}).get("hash") == info.get("hash") and old.get("model", {}).get("model_id") == info.get("model_id"):
            previous = old.get("tasks", {})
    results = dict(previous)
    results.update(skipped or {})
    t0 = time.time()
    try:
        for i, task in enumerate(configs, 1):
            t1 = time.time()
            try:
                results[task.name] = res = run_task(task, be, outdir, ctx, seeds=seeds, progress=progress,
                                                    replace_stale=replace_stale)
            except ScoredTaskError as e:               # named, reported, never replaced by another metric
                results[task.name] = res = {"suite": task.suite, "version": task.version, "status": f"failed: {e}"}
                print(f"error: {e}", file=sys.stderr)
            if progress:
                head = next((k for k in res.get("headline", []) if k in res.get("metrics", {})), None)
                shown = f"{head} {res['metrics'][head]:.3f}" if head else res.get("status")
                print(f"[{i}/{len(configs)}] {task.name}: {shown} ({time.time() - t1:.0f} s)", file=sys.stderr)
    finally:
        be.close()
    from .. import __version__ as version
    from .backends import portable_path

    summary = {
        "run": {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.time() - t0, 1),
                "affectllm_version": version, "git_commit": _git_commit(),
                "command": command or " ".join(sys.argv), "seeds": list(range(seeds)), "bootstrap": bootstrap,
                "data_root": portable_path(ctx.root()), "pid": os.getpid()},
        "model": info, "trained_on": trained_on(ctx),
        "prompt_versions": sorted({p for t in results.values() for p in t.get("prompt_ids", [])}),
        "decoding": {n: t.get("decoding") for n, t in results.items() if t.get("status") == "ok"},
        "tasks": results,
    }
    tmp = summary_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    os.replace(tmp, summary_path)
    from .report import write_report

    write_report(outdir, summary)
    return summary
