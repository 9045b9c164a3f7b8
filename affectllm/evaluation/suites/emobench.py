"""`emobench`: EmoBench emotional understanding (EU: which emotion would the person feel) and emotional
application (EA: the most effective response/action) as multiple choice, answered with a letter.

The prompt (`probe_mcq`) shows the question, the lettered choices, then the scenario. EmoBench's English question
wording is used for both languages (the scenario and the choices keep their language). Letters are parsed by
`parsers.parse_letter` (JSON, leading letter, "answer: X", "(X)", a lone capital, or the one choice quoted) and
scored by `closed_set` over the letters: accuracy is the headline; UAR over letters shows a position bias.
Breakdowns by task (EU/EA), language and category are reported with bootstrap CIs.

`options.scored_choices: true` answers without letters: each choice is scored as the label of the model's own
answer format (`evaluation/scored.py`; the task's prompt shows only the scenario, e.g. `emotion_ov`) and the
highest log-likelihood picks the letter. Why: on an EmoBench-shaped multiple choice built from MELD dev lines
(scenario = previous lines + the speaker's line, EmoBench's EU question, 4-6 of MELD's labels), `mini-affect`
answered letters at 0.253 (chance 0.205; it wrote D or E for 129 of 150) and scored choices at 0.473 (n=150,
2026-12-02): a small model knows the emotion better than it maps it to a letter.
"""
from __future__ import annotations

from pathlib import Path

from ...scoring import score
from ..parsers import letters
from .base import Suite

MAX_CHOICES = 6
LETTER_SET = [c.lower() for c in letters(MAX_CHOICES)]


def question(sample) -> str:
    subject = sample.meta.get("subject") or "the person"
    if sample.meta.get("task") == "EU":
        return f"What emotion(s) would {subject} ultimately feel in this situation?"
    kind = str(sample.meta.get("question") or "action").lower()
    return f"In this scenario, what is the most effective {kind} for {subject}?"


def gold_letter(sample) -> str | None:
    choices, answer = sample.meta.get("choices") or [], sample.meta.get("answer")
    return letters(len(choices))[choices.index(answer)].lower() if answer in choices else None


class EmoBenchSuite(Suite):
    name = "emobench"
    option_keys = Suite.option_keys | {"breakdown", "scored_choices"}

    def scores_candidates(self, task) -> bool:
        return bool(task.options.get("scored_choices"))

    def gold(self, sample):
        g = super().gold(sample)
        g.update(letter=gold_letter(sample), task=sample.meta.get("task"), category=sample.meta.get("category"))
        return g

    def items(self, task, samples, ctx):
        out = []
        for s in samples:
            choices = list(s.meta.get("choices") or [])
            variables = {"question": question(s), "choices": choices}
            if self.scores_candidates(task):  # scored as labels: lower case, as the model writes them
                variables["candidates"] = [c.lower() for c in choices]
            item = self.make_item(task, s, modalities=["text"], variables=variables,
                                  oracle={"kind": "letter", "gold": (gold_letter(s) or "a").upper(),
                                          "n_choices": len(choices)})
            item.meta["choices"] = choices
            out.append(item)
        return out

    def record(self, task, item, raw, ctx, response=None):
        logliks = getattr(response, "logliks", None)
        choices = item.meta.get("choices") or []
        if not (self.scores_candidates(task) and logliks and len(logliks) == len(choices)):
            return super().record(task, item, raw, ctx, response)
        best = max(range(len(choices)), key=lambda i: logliks[i])
        letter = letters(len(choices))[best]
        parsed = {"letter": letter, "labels": [letter.lower()], "choice": choices[best]}
        return {"parsed": parsed, "scores": self.sample_scores(task, item.gold, parsed, ctx),
                "label_probs": {"candidates": choices, "logliks": [round(float(x), 4) for x in logliks]}}

    def summarize(self, task, records, ctx):
        out = super().summarize(task, records, ctx)
        spec = next((m for m in task.metric_list if m.metric == "closed_set"), None)
        if spec is None:
            return out
        label_set = spec.options.get("label_set", LETTER_SET)
        table = {}
        for field in task.options.get("breakdown", ["task", "language"]):
            groups = sorted({str(r["gold"].get(field)) for r in records})
            for g in groups:
                sub = [r for r in records if str(r["gold"].get(field)) == g and r["gold"].get("letter")]
                if not sub:
                    continue
                res = score("closed_set", [r["gold"]["letter"] for r in sub], [r["parsed"]["labels"] for r in sub],
                            label_set=label_set, bootstrap=ctx.bootstrap)
                table[f"{field}={g}"] = {k: res[k] for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high",
                                                             "n_samples") if k in res}
                out["metrics"][f"{field}={g}.accuracy"] = res["accuracy"]
        out["tables"]["breakdown"] = table
        out["metrics"]["unparsed_rate"] = (sum(not r["parsed"].get("letter") for r in records) / len(records)
                                           if records else float("nan"))
        return out

    def plots(self, task, summary, records, outdir: Path, ctx):
        from ..report import bar_plot

        rows = summary["tables"].get("breakdown") or {}
        m = dict(summary["metrics"])
        keys = [k for k in ("closed_set.accuracy",) if k in m] + [f"{k}.accuracy" for k in rows]
        for k, v in rows.items():
            m[f"{k}.accuracy_ci_low"], m[f"{k}.accuracy_ci_high"] = v.get("accuracy_ci_low"), v.get("accuracy_ci_high")
        return [bar_plot(m, keys, outdir / f"{task.name}_emobench.png", title=f"{task.name}: accuracy by subset")]


SUITE = EmoBenchSuite
