"""MER2024 open-vocabulary metric (`mer2024_ov`), with the official `main-ov.py` semantics.

Rules (OV_METRIC.md, MER2024):
1. Label cells are split with `labels.split_mer2024` (a ``[`` is required; split on quote characters only,
   pieces not stripped) and lower-cased only: ``' sad'`` != ``'sad'``; ``"don't believe"`` -> ``don``, ``t believe``.
2. Each label maps to the head (first item) of its group in that sample's stored synonym grouping
   (`openset-synonym.zip`), else to itself; unknown words therefore count as wrong.
3. Per sample on the mapped sets: accuracy = |G∩P|/|P|, recall = |G∩P|/|G|; an empty prediction scores 0/0.
4. Accuracy and recall are averaged over samples separately; score = (accuracy + recall) / 2.

Which samples count: with a synonym zip, the samples stored in it (as the official loop does; gold names
absent from the zip are counted in `skipped_no_synonyms`); without one, every gold sample (identity
mapping). An empty gold with a non-empty prediction crashes the official code (division by zero); here it
is skipped and counted in `skipped_empty_gold`. Empty gold with empty prediction scores 0/0 as officially.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ScoringInputError
from .base import SampleTable, register_metric, safe_div
from .inputs import read_synonym_zip
from .labels import labels_of, split_mer2024


def synonym_map(groups: Sequence[Sequence[str]] | None) -> dict[str, str]:
    """label -> head of its group (later groups win for a label listed twice, as in the official loop)."""
    out: dict[str, str] = {}
    for group in groups or ():
        for item in group:
            out[item] = group[0]
    return out


def _mapped(cell: Any, smap: dict[str, str], where: str) -> set[str]:
    try:
        labels = split_mer2024(labels_of(cell))
    except ValueError as exc:
        raise ScoringInputError(f"{where}: {exc}: {str(cell)[:80]!r}") from None
    return {smap.get(x, x) for x in (str(v).lower() for v in labels)}


def sample_ov_scores(gold: Any, pred: Any, groups: Sequence[Sequence[str]] | None = None) -> tuple[float, float]:
    """(accuracy, recall) of one sample; raises ScoringInputError on an empty gold with a prediction.

    >>> sample_ov_scores("['happy', 'relaxed']", "['joyful']", [['happy', 'joyful']])
    (1.0, 0.5)
    """
    smap = synonym_map(groups)
    g, p = _mapped(gold, smap, "gold"), _mapped(pred, smap, "pred")
    if not p:
        return 0.0, 0.0
    if not g:
        raise ScoringInputError("gold: empty label set with a non-empty prediction (undefined recall)")
    hit = len(g & p)
    return hit / len(p), hit / len(g)


def sample_ov_score(gold: Any, pred: Any, groups: Sequence[Sequence[str]] | None = None) -> float:
    """Mean of the sample's accuracy and recall (a per-sample reward in the MER2024 sense)."""
    return float(np.mean(sample_ov_scores(gold, pred, groups)))


def mer2024_table(gold: Sequence[Any], pred: Sequence[Any], *, names: Sequence[str] | None = None,
                  synonyms: str | Path | dict[str, list[list[str]]] | None = None) -> SampleTable:
    if synonyms is not None and not isinstance(synonyms, dict):
        synonyms = read_synonym_zip(synonyms)
    if synonyms is not None and names is None:
        raise ScoringInputError("mer2024_ov with synonyms needs sample names (pass dicts name -> labels)")
    names = list(names) if names is not None else [str(i) for i in range(len(gold))]
    index = {n: i for i, n in enumerate(names)}
    if synonyms is not None:
        unknown = [n for n in synonyms if n not in index]
        if unknown:
            raise ScoringInputError(f"synonym zip: {len(unknown)} sample(s) not in gold/pred (column 'name'), "
                                    f"e.g. {unknown[:5]}")
        order = [n for n in names if n in synonyms]
    else:
        order = names
    acc, rec, kept = [], [], []
    skipped_empty_gold = 0
    for n in order:
        i = index[n]
        smap = synonym_map(synonyms[n]) if synonyms is not None else {}
        g = _mapped(gold[i], smap, f"gold, sample {n!r}, column 'openset'")
        p = _mapped(pred[i], smap, f"pred, sample {n!r}, column 'openset'")
        if not p:
            a = r = 0.0
        elif not g:
            skipped_empty_gold += 1
            continue
        else:
            hit = len(g & p)
            a, r = hit / len(p), hit / len(g)
        acc.append(a)
        rec.append(r)
        kept.append(n)

    def aggregate(cols: dict[str, np.ndarray], w: np.ndarray) -> dict[str, Any]:
        tw = w.sum(-1)
        a, r = safe_div(w @ cols["accuracy"], tw), safe_div(w @ cols["recall"], tw)
        return {"accuracy": a, "recall": r, "score": (a + r) / 2}

    extras = {"n_samples": len(kept), "skipped_empty_gold": skipped_empty_gold,
              "skipped_no_synonyms": len(names) - len(order)}
    return SampleTable({"accuracy": np.array(acc, float), "recall": np.array(rec, float)}, aggregate, extras, kept,
                       batched=True)


@register_metric("mer2024_ov", mer2024_table)
def mer2024_ov(gold: Sequence[Any], pred: Sequence[Any], *, names: Sequence[str] | None = None,
               synonyms: str | Path | dict | None = None) -> dict[str, float]:
    """MER2024 set-level accuracy / recall / score (see module docstring).

    >>> r = mer2024_ov(["['happy', 'relaxed']", "['sad']"], ["['joyful']", "['sad', 'angry']"],
    ...                names=["a", "b"], synonyms={"a": [["happy", "joyful"]], "b": [["sad"]]})
    >>> r["accuracy"], r["recall"], r["score"]
    (0.75, 0.75, 0.75)

    On the official ov_store files it gives 0.5818 / 0.4978 / 0.5398:
    ``score("mer2024_ov", read_labels(gold_csv), read_labels(pred_csv), synonyms=zip_path)``.
    """
    return mer2024_table(gold, pred, names=names, synonyms=synonyms).result()
