"""The standard suite, which every other suite extends: one request per sample with the task's prompt, answers
parsed by the task's parser, per-sample scores and corpus metrics (with bootstrap CIs) from `affectllm.scoring`.

Hooks a suite overrides: `load_samples` (which samples), `items` (what to ask about each), `record` (what to keep
of an answer), `summarize` (metrics of one seed's records) and `plots`."""
from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ...data import LABEL_SETS, Sample, load_corpus
from ...errors import ConfigError
from ...registry import unknown_name_message
from ...scoring import LabelMapper, parse, score, score_samples
from ..inputs import Item
from ..parsers import parse_letter, parse_yesno

DEFAULT_GOLD = {"closed_set": "label", "closed_set_multilabel": "multi_labels", "mer_wheel": "labels",
                "mer2024_ov": "labels", "dimensional": "dims"}
HEADLINE = {
    "closed_set": ["accuracy", "uar", "weighted_f1", "macro_f1", "unmapped_rate"],
    "closed_set_multilabel": ["micro_f1", "macro_f1", "samples_f1", "exact_match"],
    "mer_wheel": ["mer2025", "mer2025_lc", "mer2025_sample", "level1_f", "level2_f", "oov_rate_pred",
                  "mean_pred_labels"],
    "mer2024_ov": ["score", "accuracy", "recall"],
    "dimensional": ["ccc_valence", "ccc_arousal", "pearson_valence", "pearson_arousal"],
}


def sample_field(s: Sample, name: str) -> Any:
    """A Sample attribute, `meta.KEY`, or a bare meta key."""
    if name.startswith("meta."):
        return s.meta.get(name[5:])
    if hasattr(s, name):
        return getattr(s, name)
    return s.meta.get(name)


def load_dataset(spec: dict, split: str, ctx, task=None) -> list[Sample]:
    """Samples of one split of a task's dataset: a registered corpus, or a user's JSONL manifest (`manifest:`;
    relative media paths resolve against the manifest's folder, split 'all' reads every row)."""
    if spec.get("manifest"):
        from ...data.manifest import read_manifest
        from ..tasks import ALL_ROWS

        rows = read_manifest(spec["manifest"], root=Path(spec["manifest"]).parent)
        if rows.skipped and task is not None:
            ctx.note(task, f"{Path(spec['manifest']).name}: {rows.skipped} row(s) left out, media file missing "
                           f"(first: {rows.skipped_ids[0]})")
        if split == ALL_ROWS:
            return list(rows)
        out = [s for s in rows if s.split == split]
        if not out:
            from ...errors import AffectError

            raise AffectError(f"manifest {spec['manifest']} has no rows of split '{split}'; its splits: "
                              f"{sorted({s.split for s in rows})}")
        return out
    return load_corpus(spec["corpus"], split, ctx.data_root)


def label_names(spec: Any) -> list[str] | None:
    """Candidate labels of a label-set name (built-in), a label-set YAML path, or a list; None when unknown."""
    from ...scoring.label_set import is_label_set_path, load_label_set

    if isinstance(spec, list):
        return [str(c) for c in spec]
    if is_label_set_path(spec):
        return list(load_label_set(spec).labels)
    return LABEL_SETS.get(spec) if spec else None


def filter_samples(samples: list[Sample], flt: dict | None) -> list[Sample]:
    for key, want in (flt or {}).items():
        allowed = set(want) if isinstance(want, list) else {want}
        samples = [s for s in samples if sample_field(s, key) in allowed]
    return samples


def take_subset(samples: list[Sample], limit: int | None, seed: int = 0, stratify: str | None = None,
                skip: int = 0) -> list[Sample]:
    """A seeded subset of `limit` samples; with `stratify`, round-robin over the groups of that field so every
    group is represented. The order is the seeded order (fixed for a given subset seed). `skip` drops the first
    `skip` of that order (unstratified only): the rows a run with `limit: skip` did not see, so a number chosen on
    those rows can be checked on disjoint ones of the same split."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    if skip:
        if stratify:
            raise ConfigError("dataset.skip works on the unstratified seeded order only (drop `stratify`)")
        order = order[skip:]
    if limit is None or limit >= len(order):
        return order
    if not stratify:
        return order[:limit]
    groups: dict[Any, list[Sample]] = defaultdict(list)
    for s in order:
        groups[str(sample_field(s, stratify))].append(s)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    out: list[Sample] = []
    while len(out) < limit:
        for k in keys:
            if groups[k] and len(out) < limit:
                out.append(groups[k].pop(0))
    return out


def oracle_kind(parser: str) -> str:
    return {"letter": "letter", "yesno": "yesno", "text": "text"}.get(parser, "labels")


def parse_answer(parser: str, raw: str, item: Item) -> dict:
    if parser == "emotion":
        return parse(raw).to_dict()
    if parser == "letter":
        letter = parse_letter(raw, item.meta.get("choices"))
        return {"letter": letter, "labels": [letter.lower()] if letter else []}
    if parser == "yesno":
        return {"answer": parse_yesno(raw)}
    return {"text": raw.strip()}


class Suite:
    name = "standard"
    metric_names: tuple[str, ...] = ()
    option_keys: set[str] = {"leave_one_out", "candidates", "fit_split"}

    @classmethod
    def validate(cls, options: dict, where: str) -> None:
        import difflib

        for k in options:
            if k not in cls.option_keys:
                close = difflib.get_close_matches(str(k), sorted(cls.option_keys), n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"{where}: unknown option '{k}' for suite '{cls.name}'{hint}; "
                                  f"known: {', '.join(sorted(cls.option_keys)) or '(none)'}")

    # ---- samples and items --------------------------------------------------------------------------------------
    def load_samples(self, task, ctx) -> list[Sample]:
        ds = task.dataset
        samples = filter_samples(load_dataset(ds, ds["split"], ctx, task), ds.get("filter"))
        wanted = set(ds.get("modalities") or [])
        if wanted:
            samples = [s for s in samples if wanted & set(s.modalities())]
        return take_subset(samples, task.limit, int(ds.get("subset_seed", 0)), ds.get("stratify"),
                           int(ds.get("skip", 0)))

    def candidates(self, task, sample: Sample) -> list[str] | None:
        return label_names(task.options.get("candidates") or task.dataset.get("label_set") or sample.label_set)

    def gold(self, sample: Sample) -> dict:
        return {"labels": list(sample.labels), "label": sample.label, "multi_labels": list(sample.multi_labels),
                "dims": {k: getattr(sample, k) for k in ("valence", "arousal", "dominance")
                         if getattr(sample, k) is not None} or None,
                "name": sample.meta.get("clip") or sample.id, "gender": sample.gender, "language": sample.language,
                "speaker": sample.person}

    def make_item(self, task, sample: Sample, **over) -> Item:
        modalities = over.pop("modalities", None)
        if modalities is None:
            modalities = [m for m in sample.modalities() if not task.dataset.get("modalities")
                          or m in task.dataset["modalities"]]
        prompt = over.pop("prompt", task.prompt["name"])
        variables = dict(task.prompt["vars"])
        variables.update(over.pop("variables", {}))
        from ...prompts import get_prompt

        cands = self.candidates(task, sample)
        if "candidates" in get_prompt(prompt).variables and "candidates" not in variables:
            if not cands:
                raise ConfigError(f"task '{task.name}': prompt '{prompt}' needs candidates but sample {sample.id} "
                                  f"has no label set; set options.candidates")
            variables["candidates"] = cands
        oracle = {"kind": oracle_kind(task.parser), "gold": [sample.label] if sample.label and cands else
                  list(sample.labels), "candidates": cands, "modalities": modalities,
                  "dimensions": bool(variables.get("with_dimensions"))}
        oracle.update(over.pop("oracle", {}))
        variant = over.pop("variant", "base")
        key = over.pop("key", f"{variant}|{sample.id}")
        return Item(key=key, sample=sample, variant=variant, prompt=prompt, variables=variables,
                    modalities=modalities, gen=task.gen(), oracle=oracle, gold=over.pop("gold", self.gold(sample)),
                    **over)

    def items(self, task, samples: list[Sample], ctx) -> list[Item]:
        return [self.make_item(task, s) for s in samples]

    # ---- records ------------------------------------------------------------------------------------------------
    def scores_candidates(self, task) -> bool:
        """Whether each item's candidate labels are also scored by log-likelihood (`evaluation/scored.py`)."""
        return False

    def record(self, task, item: Item, raw: str, ctx, response=None) -> dict:
        parsed = parse_answer(task.parser, raw, item)
        return {"parsed": parsed, "scores": self.sample_scores(task, item.gold, parsed, ctx)}

    def sample_scores(self, task, gold: dict, parsed: dict, ctx) -> dict:
        """Per-sample numbers from the scoring module, for the JSONL (the corpus metrics are computed again from
        all records in `summarize`)."""
        out: dict[str, Any] = {}
        pred = parsed.get("labels", [])
        for m in task.metric_list:
            g = gold.get(m.gold or DEFAULT_GOLD.get(m.metric, "labels"))
            if not g:
                continue
            try:
                if m.metric == "closed_set" and isinstance(g, str):
                    cols = score_samples("closed_set", [g], [pred], mapper=ctx.mapper(m.options.get("label_set")))
                    out[f"{m.prefix}.pred"] = str(cols["y_pred"][0])
                    out[f"{m.prefix}.correct"] = float(cols["y_true"][0] == cols["y_pred"][0])
                elif m.metric == "closed_set_multilabel":
                    cols = score_samples(m.metric, [g], [pred], mapper=ctx.mapper(m.options.get("label_set")))
                    y, p = cols["Y"][0], cols["P"][0]
                    union = int(((y + p) > 0).sum())
                    out[f"{m.prefix}.jaccard"] = float((y * p).sum() / union) if union else 1.0
                elif m.metric == "mer_wheel" and ctx.wheel() is not None:
                    from ...scoring import sample_wheel_f

                    out[f"{m.prefix}.f"] = sample_wheel_f(g, pred, ctx.wheel())
                    out[f"{m.prefix}.f_lc"] = sample_wheel_f(g, pred, ctx.wheel(), honest=True)
            except Exception as e:                 # a per-sample number must never stop a run
                out[f"{m.prefix}.error"] = str(e)[:200]
        return out

    # ---- corpus metrics -----------------------------------------------------------------------------------------
    def metric_inputs(self, m, records: list[dict]) -> tuple[list[dict], list, list]:
        field = m.gold or DEFAULT_GOLD.get(m.metric, "labels")
        keep = [r for r in records if r["gold"].get(field)]
        if m.only == "single_label":
            keep = [r for r in keep if len(r["gold"].get("multi_labels") or r["gold"].get("labels") or []) <= 1]
        gold = [r["gold"][field] for r in keep]
        if m.metric == "dimensional":
            pred = [{k: r["parsed"].get(k) for k in ("valence", "arousal", "dominance")} for r in keep]
        else:
            pred = [r["parsed"].get("labels", []) for r in keep]
        return keep, gold, pred

    def corpus_metrics(self, task, records: list[dict], ctx, prefix: str = "",
                       bootstrap: int | None = None) -> dict[str, float]:
        """The task's metrics on `records`; `bootstrap` overrides ctx.bootstrap (0: point estimates only)."""
        out: dict[str, float] = {}
        for m in task.metric_list:
            if m.metric not in DEFAULT_GOLD:
                continue
            keep, gold, pred = self.metric_inputs(m, records)
            if not keep:
                ctx.note(task, f"{m.prefix}: no records with gold '{m.gold or DEFAULT_GOLD[m.metric]}'")
                continue
            opts = ctx.metric_options(task, m, keep)
            if opts is None:
                continue
            res = score(m.metric, gold, pred, bootstrap=ctx.bootstrap if bootstrap is None else bootstrap, seed=0,
                        **opts)
            out.update({f"{prefix}{m.prefix}.{k}": float(v) for k, v in res.items()})
        if records:
            out[f"{prefix}error_rate"] = float(np.mean([bool(r.get("error")) for r in records]))
            if task.parser == "emotion":
                out[f"{prefix}format_ok_rate"] = float(np.mean([bool(r["parsed"].get("format_ok")) for r in records]))
        return out

    def summarize(self, task, records: list[dict], ctx) -> dict:
        return {"metrics": self.corpus_metrics(task, records, ctx), "tables": {}}

    def headline(self, task) -> list[str]:
        if task.headline:
            return list(task.headline)
        keys = []
        for m in task.metric_list:
            keys += [f"{m.prefix}.{k}" for k in HEADLINE.get(m.metric, [])]
        return keys

    def plots(self, task, summary: dict, records: list[dict], outdir: Path, ctx) -> list[Path]:
        from ..report import bar_plot

        keys = [k for k in self.headline(task) if k in summary["metrics"]][:8]
        return [bar_plot(summary["metrics"], keys, outdir / f"{task.name}_metrics.png", title=task.name)]


def resolve_candidates(spec: Any) -> list[str]:
    names = label_names(spec)
    if names is None:
        raise ConfigError(unknown_name_message("label set", str(spec), LABEL_SETS))
    return list(names)
