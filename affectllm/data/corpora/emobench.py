"""EmoBench (MIT): multiple-choice questions on emotional understanding (EU: which emotion, and why) and
emotional application (EA: best action), each question in English and Chinese.

Files: text/emobench/{EU,EA}.jsonl. Split: "test" only (a benchmark; never train on it). `text` is the
scenario; `meta` holds task, qid, the choices and the gold answer (EU also cause choices/answer). EU's gold
emotion (e.g. "Gratitude & Joy") becomes `label` verbatim and lower-cased parts in `labels`; EA has no emotion
label, so `labels` is empty there."""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import AffectError
from ..manifest import Sample
from . import CorpusSpec


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise AffectError(f"corpus file not found: {path}")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise AffectError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
    return out


def _read(root: Path, split: str) -> list[Sample]:
    base = root / "text" / "emobench"
    out = []
    for r in _rows(base / "EU.jsonl"):
        emo = r["emotion_label"]
        out.append(Sample(
            id=f"emobench-EU-{r['qid']}-{r['language']}", corpus="emobench", split=split, text=r["scenario"],
            labels=[p.strip().lower() for p in emo.split("&")], label=emo, language=r["language"],
            meta={"text_kind": "scenario", "task": "EU", "qid": r["qid"], "subject": r["subject"], "question": "emotion",
                  "choices": r["emotion_choices"], "answer": emo, "cause_choices": r["cause_choices"],
                  "cause_answer": r["cause_label"], "category": r["coarse_category"],
                  "subcategory": r["finegrained_category"]}))
    for r in _rows(base / "EA.jsonl"):
        out.append(Sample(
            id=f"emobench-EA-{r['qid']}-{r['language']}", corpus="emobench", split=split, text=r["scenario"],
            language=r["language"],
            meta={"text_kind": "scenario", "task": "EA", "qid": r["qid"], "subject": r["subject"], "question": r["question type"],
                  "choices": r["choices"], "answer": r["label"], "category": r["category"]}))
    return out


SPEC = CorpusSpec("emobench", "text/emobench", ("test",), ("text",), None, _read, "MIT")
