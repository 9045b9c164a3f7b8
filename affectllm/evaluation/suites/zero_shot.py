"""`zero_shot`: transfer across label spaces. The model answers in open vocabulary (no candidate list in the
prompt); `scoring.LabelMapper` maps the answer into each corpus' own label set and `closed_set` /
`closed_set_multilabel` score it (accuracy, WAR/UAR, weighted and macro F1; micro/macro/samples F1).

EmoBench EU (option ``map_to_choices``): each question has its own 4-6 choices, some compound ("Gratitude & Joy").
The predicted words are mapped onto the parts of the choices; the choice with the largest share of its parts
matched wins; a tie or no match is "<unmapped>" (wrong). Scored as a closed set over the choice letters.

Leave-one-corpus-out (option ``leave_one_out``): the summary records which corpora the model was trained on
(`data.corpora` of the checkpoint's recipe.yaml, when present) and whether this task's corpus was among them (by
name, or for a user's manifest by file or by the corpus names inside a training manifest: `corpus_seen`), so a
reader can tell in-domain from transfer numbers. Nothing is chosen from it.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ...scoring import LabelMapper
from ..parsers import letters
from .base import Suite


@lru_cache(maxsize=512)
def _part_mapper(parts: tuple[str, ...]) -> LabelMapper:
    return LabelMapper(list(parts))


def choice_parts(choice: str) -> list[str]:
    return [p.strip().lower() for p in choice.split("&") if p.strip()]


def map_to_choice(labels: list[str], choices: list[str]) -> str | None:
    """The letter of the choice that the open-vocabulary labels match best, or None on a tie / no match.

    >>> map_to_choice(["grateful", "happy"], ["Gratitude & Anger", "Embarrassment & Joy", "Gratitude & Joy"])
    'C'
    >>> map_to_choice(["joy"], ["Gratitude & Joy", "Embarrassment & Joy"]) is None
    True
    """
    parts = tuple(dict.fromkeys(p for c in choices for p in choice_parts(c)))
    if not parts or not labels:
        return None
    mapper = _part_mapper(parts)
    hit = {t for t in (mapper.map(w) for w in labels) if t}
    shares = [sum(p in hit for p in choice_parts(c)) / max(1, len(choice_parts(c))) for c in choices]
    best = max(shares)
    if best == 0 or shares.count(best) > 1:
        return None
    return letters(len(choices))[shares.index(best)]


def trained_on(ctx) -> list[str] | None:
    """The corpora of the model's training recipe: the `data.mixture` entries when the recipe has a mixture (its
    `data.corpora` default is then unused), else `data.corpora`. None when the recipe is unknown."""
    recipe = (ctx.backend_info or {}).get("recipe") or {}
    data = (recipe.get("data") or {}) if isinstance(recipe, dict) else {}
    mixture = data.get("mixture")
    if mixture:
        corpora = list(dict.fromkeys(str(e["corpus"]) for e in mixture if isinstance(e, dict) and "corpus" in e))
    else:
        corpora = data.get("corpora")
    return [str(c) for c in corpora] if corpora else None


def _manifest_corpora(path: str) -> set[str]:
    """Corpus names in a training manifest (empty when the file is not on this machine)."""
    import json

    p = Path(path).expanduser()
    if not p.is_file():
        return set()
    out = set()
    with open(p, encoding="utf-8") as f:
        for line in f:
            try:
                out.add(str(json.loads(line).get("corpus")))
            except (ValueError, AttributeError):
                continue
    return out


def corpus_seen(ctx, dataset: dict, corpora: set[str] | None = None) -> bool | None:
    """Did the model's training recipe use this task's corpus? None when the recipe is unknown. A training entry
    matches by corpus name, by the same manifest file, or by a training manifest holding rows of this corpus
    (`corpora`: the corpus names of the evaluated samples)."""
    seen = trained_on(ctx)
    if seen is None:
        return None
    mine = {str(dataset.get("corpus"))} | set(corpora or ())
    for entry in seen:
        if entry in mine:
            return True
        if entry.endswith(".jsonl"):
            if dataset.get("manifest") and Path(entry).expanduser().resolve() == Path(dataset["manifest"]).resolve():
                return True
            if mine & _manifest_corpora(entry):
                return True
    return False


class ZeroShotSuite(Suite):
    name = "zero_shot"
    option_keys = Suite.option_keys | {"map_to_choices", "scored"}

    def scores_candidates(self, task) -> bool:
        """Option ``scored``: closed-set prompts also score every candidate label by log-likelihood
        (`evaluation/scored.py`); `scored.*` metrics are the argmax's, next to the generated answer's."""
        return bool(task.options.get("scored"))

    def gold(self, sample):
        g = super().gold(sample)
        choices = sample.meta.get("choices")
        if choices and sample.meta.get("answer") in choices:
            g["letter"] = letters(len(choices))[choices.index(sample.meta["answer"])].lower()
        return g

    def make_item(self, task, sample, **over):
        item = super().make_item(task, sample, **over)
        if task.options.get("map_to_choices"):
            item.meta["choices"] = list(sample.meta.get("choices") or [])
            item.oracle["candidates"] = [p for c in item.meta["choices"] for p in choice_parts(c)]
            item.oracle["gold"] = choice_parts(sample.meta.get("answer", ""))
        return item

    def record(self, task, item, raw, ctx, response=None):
        out = super().record(task, item, raw, ctx, response)
        logliks = getattr(response, "logliks", None)
        cands = item.variables.get("candidates") or []
        if logliks and len(logliks) == len(cands):
            out["parsed"]["scored_label"] = cands[max(range(len(cands)), key=lambda i: logliks[i])]
            out["logliks"] = [round(float(x), 4) for x in logliks]
        if task.options.get("map_to_choices"):
            letter = map_to_choice(out["parsed"].get("labels", []), item.meta.get("choices", []))
            out["parsed"]["choice"] = letter.lower() if letter else None
            out["scores"]["choice.correct"] = float(out["parsed"]["choice"] == item.gold.get("letter"))
        return out

    def metric_inputs(self, m, records):
        keep, gold, pred = super().metric_inputs(m, records)
        if (m.gold or "") == "letter":
            pred = [[r["parsed"]["choice"]] if r["parsed"].get("choice") else [] for r in keep]
        return keep, gold, pred

    def summarize(self, task, records, ctx):
        out = super().summarize(task, records, ctx)
        rows = [r for r in records if r["parsed"].get("scored_label") and r["gold"].get("label")]
        if task.options.get("scored") and rows:
            from ...scoring import score
            from ..degenerate import chance_check

            spec = next(m for m in task.metric_list if m.metric == "closed_set")
            res = score("closed_set", [r["gold"]["label"] for r in rows], [[r["parsed"]["scored_label"]] for r in rows],
                        mapper=ctx.mapper(spec.options.get("label_set")), bootstrap=ctx.bootstrap)
            out["metrics"].update({f"scored.{k}": v for k, v in res.items()
                                   if k.split("_ci_")[0] in ("accuracy", "uar", "macro_f1", "weighted_f1")})
            k = len(rows[0]["logliks"])
            right = [float(r["parsed"]["scored_label"] == r["gold"]["label"]) for r in rows]
            out["metrics"].update({f"scored.{a}": v for a, v in chance_check(right, k).items() if a != "accuracy"})
        if task.options.get("leave_one_out"):
            seen = trained_on(ctx)
            corpus = task.dataset["corpus"]
            in_training = corpus_seen(ctx, task.dataset, {r.get("corpus") for r in records if r.get("corpus")})
            out["tables"]["leave_one_out"] = {
                "test_corpus": corpus, "trained_on": seen,
                "held_out": None if in_training is None else not in_training,
                "note": "from the checkpoint's recipe.yaml" if seen is not None else
                        "training corpora unknown (no recipe.yaml for this model)"}
        return out

    def plots(self, task, summary, records, outdir: Path, ctx):
        from ..report import bar_plot

        m = summary["metrics"]
        keys = [k for k in self.headline(task) if k in m]
        title = task.name
        loo = summary["tables"].get("leave_one_out")
        if loo and loo.get("held_out") is not None:
            title += " (held-out corpus)" if loo["held_out"] else " (in-domain: trained on this corpus)"
        return [bar_plot(m, keys[:8], outdir / f"{task.name}_zero_shot.png", title=title)]


SUITE = ZeroShotSuite
