"""`affectllm eval --manifest clips.jsonl --label-set labels.yaml`: the zero-shot, calibration, prompt-sensitivity,
hallucination and fairness suites on a user's corpus, without a task YAML of its own.

Why generated YAML rather than a second code path: the tasks include the same templates as the built-in ones
(`evals/<suite>/_*.yaml`), are written to `<output>/tasks/*.yaml` (a run can be read, edited and re-run with
`--tasks <output>/tasks/zs_clips.yaml`) and go through the same loader, runner and scorer. What the corpus cannot
support is skipped with the reason in the report: calibration needs a dev split to fit its temperature on (never the
reported split), calibration and prompt sensitivity need single-label gold, fairness needs a field (gender, language)
with at least two groups."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import yaml

from ..errors import AffectError
from .tasks import TaskConfig, build_task, evals_dir, load_yaml

SUITES = ("zero_shot", "calibration", "prompt_sensitivity", "hallucination", "fairness")
TEMPLATES = {"zero_shot": "zero_shot/_zero_shot.yaml", "calibration": "calibration/_cal.yaml",
             "prompt_sensitivity": "prompt_sensitivity/_ps.yaml", "hallucination": "hallucination/_hall.yaml",
             "fairness": "_base.yaml"}
FAIRNESS_FIELDS = ("gender", "language")


def _pick_split(splits: Counter, split: str | None, path: Path) -> str:
    if split:
        if split not in splits:
            raise AffectError(f"--split {split}: the manifest {path} has no rows of it; its splits: {dict(splits)}")
        return split
    if "test" in splits:
        return "test"
    if len(splits) == 1:
        return next(iter(splits))
    raise AffectError(f"{path} has splits {dict(splits)} and none is 'test': name the one to report with --split")


def manifest_tasks(manifest: str | Path, label_set: str | Path | None, out_dir: str | Path,
                   suites: tuple[str, ...] = SUITES, split: str | None = None) -> tuple[list[TaskConfig], dict]:
    """(task configs, {skipped task: {"suite", "status"}}) for one manifest; task YAMLs written to out_dir/tasks."""
    from ..data.ingest import labels_found
    from ..data.manifest import read_manifest
    from ..scoring.label_set import load_label_set, write_label_set

    path = Path(manifest).expanduser().resolve()
    samples = read_manifest(path, root=path.parent)
    if not samples:
        raise AffectError(f"{path}: no usable rows")
    bad = [s for s in suites if s not in SUITES]
    if bad:
        raise AffectError(f"--suites: unknown {bad}; choose from {', '.join(SUITES)}")
    tasks_dir = Path(out_dir) / "tasks"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    report = _pick_split(Counter(s.split for s in samples), split, path)
    rows = [s for s in samples if s.split == report]
    multi = any(s.multi_labels for s in samples)
    labelled = any(s.label or s.multi_labels for s in rows)
    dims = any(s.valence is not None or s.arousal is not None for s in rows)
    if not labelled and not dims:
        raise AffectError(f"{path}: the '{report}' rows carry no labels (nor valence/arousal): nothing to score; "
                          f"for inference only use `affectllm predict --manifest {path}`")
    if label_set:
        ls_path = str(Path(label_set).expanduser().resolve())
        ls = load_label_set(ls_path)
        unknown = sorted({x for s in samples for x in (s.multi_labels or [s.label] if s.label or s.multi_labels
                                                        else []) if ls.resolve(x) is None})
        if unknown:
            raise AffectError(f"{path}: label(s) {unknown[:5]} are not in the label set {ls_path}")
    elif labelled:
        ls = labels_found(samples)
        ls.name = path.stem
        ls_path = str(write_label_set(ls, tasks_dir / f"{path.stem}.labels.yaml").resolve())
    else:
        ls_path = None
    corpus = samples[0].corpus if len({s.corpus for s in samples}) == 1 else path.stem
    tag = re.sub(r"\W+", "_", corpus).strip("_").lower() or "corpus"
    fit = "dev" if report != "dev" and any(s.split == "dev" for s in samples) else None
    present = {m for s in rows for m in s.modalities()}
    dataset = {"manifest": str(path), "corpus": corpus, "split": report}
    if ls_path:
        dataset["label_set"] = ls_path
    metric = [{"metric": "closed_set_multilabel" if multi else "closed_set"}] if labelled else []
    if dims:
        metric.append({"metric": "dimensional"})
    single = labelled and not multi
    strat = {"stratify": "label"} if single else {}
    head = "closed_set_multilabel.micro_f1" if multi else "closed_set.accuracy"
    specs: dict[str, tuple[str, dict | str]] = {}
    specs[f"zs_{tag}"] = ("zero_shot", {
        "dataset": {**dataset, **strat}, "metric_list": metric, "options": {"leave_one_out": True},
        "prompt": {"name": "emotion_ov", "vars": {"with_dimensions": True}} if dims else {"name": "emotion_ov"},
        "description": f"{corpus} ({report} split of {path.name}): open-vocabulary answers mapped into its label set."})
    specs[f"calib_{tag}"] = ("calibration", "needs single-label gold (closed_set)" if not single else
                             f"needs a 'dev' split besides '{report}' to fit the temperature on (never the reported "
                             f"split): build the manifest with --split-by speaker, or a split column" if not fit else {
        "dataset": {**dataset, **strat}, "metric_list": [{"metric": "closed_set"}], "options": {"fit_split": fit},
        "description": f"{corpus}: temperature fitted on its {fit} rows, reported on its {report} rows."})
    specs[f"ps_{tag}"] = ("prompt_sensitivity", "needs single-label gold (closed_set)" if not single else {
        "dataset": {**dataset, **strat, "limit": 32}, "metric_list": [{"metric": "closed_set"}],
        "description": f"{corpus}: the same closed-set question in 12 wordings, label orders and formats."})
    ask = [m for m in ("video", "audio") if m not in present and not (m == "audio" and "video" in present)]
    media = sorted(present - {"text"})
    if ask:
        specs[f"hall_absent_{tag}"] = ("hallucination", {
            "dataset": {**dataset, "limit": 50}, "options": {"probe": "absent", "ask": ask[:1]},
            "description": f"{corpus}: asked about a {ask[0]} that was not given."})
    specs[f"hall_pairs_{tag}"] = ("hallucination", "needs single-label gold for yes/no probes" if not single else {
        "dataset": {**dataset, **strat, "limit": 48, **({"modalities": media} if media else {})},
        "parser": "yesno", "generation": {"max_new_tokens": 8}, "options": {"probe": "pairs", "questions": ["emotion"]},
        "description": f"{corpus}: paired yes/no probes (the gold label vs another label of its set)."})
    specs[f"hall_grounding_{tag}"] = ("hallucination", {
        "dataset": {**dataset, "limit": 50}, "options": {"probe": "grounding"},
        "metric_list": [m for m in metric if m["metric"] == "closed_set"],
        "description": f"{corpus}: explanations that cite a modality that was not given are ungrounded."})
    for fld in FAIRNESS_FIELDS:
        groups = Counter(getattr(s, fld) for s in rows if getattr(s, fld))
        name = f"fair_{tag}_{fld}"
        if len(groups) < 2 or not labelled:
            if len(groups) or fld == "gender":
                specs[name] = ("fairness", f"needs labels and >= 2 {fld} groups in the {report} rows, found "
                                           f"{dict(groups) or 'none'}")
            continue
        specs[name] = ("fairness", {
            "dataset": {**dataset, "stratify": fld}, "metric_list": metric, "prompt": {"name": "emotion_ov"},
            "options": {"base_suite": "zero_shot", "group_by": fld, "metric": head},
            "description": f"{corpus}: {head} per {fld} ({', '.join(f'{k} {n}' for k, n in sorted(groups.items()))})."})
    tasks, skipped = [], {}
    for name, (suite, spec) in specs.items():
        if suite not in suites:
            continue
        if isinstance(spec, str):
            skipped[name] = {"suite": suite, "status": f"skipped: {spec}"}
            continue
        data = {"task": name, "include": str(evals_dir() / TEMPLATES[suite]), "suite": suite, **spec,
                "metadata": {"version": 1, "notes": "generated by affectllm eval --manifest"}}
        file = tasks_dir / f"{name}.yaml"
        file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        tasks.append(build_task(load_yaml(file), file))
    return tasks, skipped
