"""Dev-split evaluation of a model on training-style examples: greedy answers, parsed and scored by the scoring
module (closed-set after label mapping, multi-label F1, open-vocabulary wheel F). Used by the recipes' real-data
runs; the full eval suite (prompt sensitivity, calibration, ...) builds on the same scorer."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import LABEL_SETS, cache_dir
from ..scoring import parse, score
from .encoding import ExampleEncoder
from .examples import Example


@torch.no_grad()
def generate_answers(pipe, examples: list[Example], batch_size: int = 16, max_new_tokens: int = 48,
                     progress: bool = True, desc: str = "generate") -> list[str]:
    """Greedy answers in batches (left padding); tower states come from the feature cache."""
    encoder = ExampleEncoder(pipe, cache_dir(), use_cache=True)
    tok = pipe.processor.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    pipe.model.eval()
    answers: list[str] = []
    for start in tqdm(range(0, len(examples), batch_size), disable=not progress, desc=desc):
        chunk = examples[start : start + batch_size]
        batch = encoder.collate([encoder.encode(ex, with_target=False) for ex in chunk], padding_side="left")
        out = pipe.model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=pad)
        answers += [tok.decode(row, skip_special_tokens=True) for row in out]
    return answers


def score_answers(examples: list[Example], answers: list[str]) -> dict:
    preds = [parse(a) for a in answers]
    result: dict = {"n": len(examples), "format_ok_rate": sum(p.format_ok for p in preds) / max(1, len(preds)),
                    "mean_labels": sum(len(p.labels) for p in preds) / max(1, len(preds))}
    label_set = examples[0].columns.get("label_set")
    if label_set in LABEL_SETS:
        space = LABEL_SETS[label_set]
        if any(ex.columns.get("multi_labels") for ex in examples):
            gold = [ex.columns["multi_labels"] for ex in examples]
            result["multilabel"] = score("closed_set_multilabel", gold, [p.labels for p in preds], label_set=space)
        if all(ex.columns.get("label") for ex in examples):
            gold = [ex.columns["label"] for ex in examples]
            result["closed_set"] = score("closed_set", gold, [p.labels for p in preds], label_set=space)
    return result


def evaluate(pipe, examples: list[Example], out_path: str | Path | None = None, **gen) -> dict:
    answers = generate_answers(pipe, examples, **gen)
    result = score_answers(examples, answers)
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path.with_suffix(".samples.jsonl"), "w") as fh:
            for ex, ans in zip(examples, answers):
                fh.write(json.dumps({"id": ex.id, "prompt": ex.prompt_id, "raw": ans,
                                     "parsed": parse(ans).to_dict(), "gold": ex.columns}, ensure_ascii=False) + "\n")
        out_path.write_text(json.dumps(result, indent=2))
    return result
