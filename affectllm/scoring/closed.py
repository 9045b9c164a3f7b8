"""Closed-set metrics after label-space mapping: open-vocabulary answers scored against a dataset's
fixed label set (MELD, RAVDESS, CK+, GoEmotions, SemEval E-c, ...).

`LabelMapper.map(word)` tries, in order (first unambiguous hit wins):
exact string -> a name or synonym of a user label set (YAML, `label_set.py`) -> same lemma (default lexicon)
-> same group -> same top-level family (a user label's lexicon mapping places it in the lexicon)
-> MER-wheel clusters (if a wheel is given; level-2 votes over the 5 wheels, then level 1)
-> MiniLM cosine similarity >= threshold and ahead of the runner-up by a margin (only if `embeddings=True`;
   single-word MiniLM similarities are noisy, e.g. 'heartsick' is closest to 'joy', hence the margin).
At the group/family steps several targets may qualify (GoEmotions has many joy-family labels); the one
whose own lemma names the group wins, otherwise the word is left unmapped rather than guessed.

Single-label metrics (`closed_set`): the prediction is the first mappable predicted label (labels are
ordered most salient first); no mappable label -> "<unmapped>", which is simply wrong. Reported:
accuracy, WAR (= weighted recall, equal to accuracy), UAR (macro recall over gold classes), weighted and
macro F1 (sklearn; classes = label-set members seen in gold or prediction), `unmapped_rate`, and
`hit_rate` = gold anywhere in the mapped predicted set: the AffectGPT-style "hit rate" that AffectGPT
reports as accuracy on discrete datasets. It rewards listing many labels and is NOT comparable to accuracy;
report it only next to `accuracy` and `mean_mapped_labels`.
Multi-label metrics (`closed_set_multilabel`): micro/macro/samples F1, exact match, Jaccard on label sets.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from ..errors import ScoringInputError
from .base import SampleTable, register_metric
from .label_set import LabelSet, is_label_set_path, load_label_set
from .labels import label_list, labels_of
from .lexicon import Lexicon, norm_word

UNMAPPED = "<unmapped>"


class LabelMapper:
    """Map open-vocabulary words onto a closed label set.

    >>> m = LabelMapper("meld")
    >>> [m.map(w) for w in ["furious", "thrilled", "disdain", "relaxed", "banana"]]
    ['anger', 'joy', 'disgust', 'neutral', None]
    >>> LabelMapper("goemotions").map("happy"), LabelMapper("ravdess").map("relaxed")
    ('joy', 'calm')
    """

    def __init__(self, label_set: "str | Sequence[str] | LabelSet", lexicon: Lexicon | None = None, wheel=None,
                 embeddings: bool = False, threshold: float = 0.5, margin: float = 0.05, embedder=None):
        self.lexicon = lexicon or Lexicon.default()
        self.label_set: LabelSet | None = None          # a user's label set (YAML): synonyms + lexicon mapping
        if isinstance(label_set, LabelSet) or is_label_set_path(label_set):
            self.label_set = load_label_set(label_set)
            label_set = self.label_set.labels
        elif isinstance(label_set, str):
            if label_set not in self.lexicon.label_sets:
                from ..registry import unknown_name_message

                raise ScoringInputError(unknown_name_message("label set", label_set, self.lexicon.label_sets)
                                        + " (or give the path of a label-set YAML)")
            label_set = self.lexicon.label_sets[label_set]
        self.targets = [norm_word(t) for t in label_set]
        if len(set(self.targets)) != len(self.targets):
            raise ScoringInputError(f"label set has duplicates: {label_set}")
        self.wheel = wheel
        self.embeddings = embeddings
        self.threshold = threshold
        self.margin = margin
        self._embedder = embedder
        self._cache: dict[str, tuple[str | None, str | None]] = {}
        lx = self.lexicon
        # where each target sits in the lexicon: itself, or the word its label set maps it to
        self._t_word = {t: (self.label_set.lexicon_word(t, lx) if self.label_set else None) or t for t in self.targets}
        self._t_lemma = {t: lx.normalise(self._t_word[t]) or t for t in self.targets}
        self._t_group = {t: lx.group(self._t_word[t]) for t in self.targets}
        self._t_family = {t: lx.family(self._t_word[t]) for t in self.targets}

    def map(self, word: str) -> str | None:
        return self.explain(word)[0]

    def explain(self, word: str) -> tuple[str | None, str | None]:
        """(target or None, step that decided: exact|lemma|group|family|wheel|embedding)."""
        w = norm_word(word)
        if w not in self._cache:
            self._cache[w] = self._map(w)
        return self._cache[w]

    def synonym(self, word: str) -> str | None:
        """The target a label-set name or synonym stands for (None without a label set, or no such word)."""
        return self.label_set.resolve(word) if self.label_set else None

    def map_labels(self, labels: Any) -> list[str]:
        """Ordered, de-duplicated mapped labels of one answer (unmappable words dropped)."""
        out: list[str] = []
        for lab in label_list(labels_of(labels)):
            t = self.map(lab)
            if t is not None and t not in out:
                out.append(t)
        return out

    def _pick(self, cands: list[str], key: str | None) -> str | None:
        if len(cands) == 1:
            return cands[0]
        named = [t for t in cands if self._t_lemma[t] == key or t == key]
        return named[0] if len(named) == 1 else None

    def _map(self, w: str) -> tuple[str | None, str | None]:
        if not w:
            return None, None
        if w in self.targets:
            return w, "exact"
        hit = self.synonym(w)
        if hit:
            return hit, "synonym"
        lx = self.lexicon
        lem = lx.normalise(w)
        if lem is not None:
            hit = self._pick([t for t in self.targets if self._t_lemma[t] == lem], lem)
            if hit:
                return hit, "lemma"
            grp, fam = lx.group(w), lx.family(w)
            hit = self._pick([t for t in self.targets if grp and self._t_group[t] == grp], grp)
            if hit:
                return hit, "group"
            hit = self._pick([t for t in self.targets if fam and self._t_family[t] == fam], fam)
            if hit:
                return hit, "family"
        if self.wheel is not None:
            hit = self._wheel_vote(w)
            if hit:
                return hit, "wheel"
        if self.embeddings:
            hit = self._embed(w)
            if hit:
                return hit, "embedding"
        return None, None

    def _wheel_vote(self, w: str) -> str | None:
        table = self.wheel.table
        if w not in table:
            return None
        for cols in (range(7, 12), range(2, 7)):
            votes: Counter = Counter()
            for c in cols:
                cluster = table[w][c]
                if not cluster:
                    continue
                for t in self.targets:
                    tw = self._t_word[t]
                    if tw in table and table[tw][c] == cluster:
                        votes[t] += 1
            if votes:
                (best, n), *rest = votes.most_common()
                if not rest or rest[0][1] < n:
                    return best
        return None

    def _embed(self, w: str) -> str | None:
        if self._embedder is None:
            from .embed import Embedder

            self._embedder = Embedder()
        vecs = self._embedder.encode([w] + self.targets)
        sims = vecs[1:] @ vecs[0]
        order = np.argsort(-sims)
        best = int(order[0])
        second = float(sims[order[1]]) if len(order) > 1 else -1.0
        ok = sims[best] >= self.threshold and sims[best] - second >= self.margin
        return self.targets[best] if ok else None


def _mapper(label_set, mapper: LabelMapper | None, **kw) -> LabelMapper:
    if mapper is not None:
        return mapper
    if label_set is None:
        raise ScoringInputError("closed-set metrics need label_set= (a name such as 'meld' or a list of labels)")
    return LabelMapper(label_set, **kw)


def _gold_single(cell: Any, m: LabelMapper, i: int) -> str:
    labs = label_list(labels_of(cell)) if not isinstance(cell, str) or cell.strip().startswith("[") else [norm_word(cell)]
    if len(labs) != 1:
        raise ScoringInputError(f"gold, sample {i}: expected exactly one label for a single-label set, got {labs}")
    t = labs[0] if labs[0] in m.targets else (m.map(labs[0]) if m.lexicon.normalise(labs[0]) or m.synonym(labs[0])
                                               else None)
    if t is None:
        raise ScoringInputError(f"gold, sample {i}: label {labs[0]!r} is not in the label set {m.targets}")
    return t


def closed_set_table(gold: Sequence[Any], pred: Sequence[Any], *, label_set=None, mapper: LabelMapper | None = None,
                     names: Sequence[str] | None = None, **mapper_opts) -> SampleTable:
    m = _mapper(label_set, mapper, **mapper_opts)
    y_true = np.array([_gold_single(g, m, i) for i, g in enumerate(gold)], dtype=object)
    mapped = [m.map_labels(p) for p in pred]
    y_pred = np.array([ms[0] if ms else UNMAPPED for ms in mapped], dtype=object)
    hit = np.array([t in ms for t, ms in zip(y_true, mapped)], float)
    codes = {t: k for k, t in enumerate([UNMAPPED] + m.targets)}      # code 0 = unmapped
    cols = {"y_true": y_true, "y_pred": y_pred, "hit_any": hit,
            "n_mapped": np.array([len(ms) for ms in mapped], float),
            "t_code": np.array([codes[t] for t in y_true], int), "p_code": np.array([codes[p] for p in y_pred], int)}
    return SampleTable(cols, _closed_fast, {"n_samples": len(y_true)}, list(names) if names is not None else None,
                       point=_closed_sklearn)


def _closed_fast(c: dict[str, np.ndarray], w: np.ndarray) -> dict[str, float]:
    """The same numbers as `_closed_sklearn` from one weighted confusion matrix (bootstrap speed)."""
    k = int(max(c["t_code"].max(initial=0), c["p_code"].max(initial=0))) + 1
    cm = np.bincount(c["t_code"] * k + c["p_code"], weights=w, minlength=k * k).reshape(k, k)
    total, diag = cm.sum(), np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, diag / np.where(support > 0, support, 1), 0.0)
        precision = np.where(predicted > 0, diag / np.where(predicted > 0, predicted, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.where(precision + recall > 0,
                                                                                  precision + recall, 1), 0.0)
    gold_cls = support > 0
    cls = gold_cls | (predicted > 0)
    cls[0] = False                                   # "<unmapped>" is never a class
    tw = w.sum()
    return {
        "accuracy": diag.sum() / total,
        "war": (recall * support)[gold_cls].sum() / support[gold_cls].sum(),
        "uar": recall[gold_cls].mean(),
        "weighted_f1": (f1 * support)[cls].sum() / support[cls].sum(),
        "macro_f1": f1[cls].mean(),
        "hit_rate": float((c["hit_any"] * w).sum() / tw),
        "unmapped_rate": float(((c["p_code"] == 0) * w).sum() / tw),
        "mean_mapped_labels": float((c["n_mapped"] * w).sum() / tw),
    }


def _closed_sklearn(c: dict[str, np.ndarray], w: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    keep = w > 0
    yt, yp, ww = c["y_true"][keep], c["y_pred"][keep], w[keep]
    gold_classes = sorted(set(yt))
    classes = sorted((set(yt) | set(yp)) - {UNMAPPED})
    tw = ww.sum()
    return {
        "accuracy": accuracy_score(yt, yp, sample_weight=ww),
        "war": recall_score(yt, yp, labels=gold_classes, average="weighted", sample_weight=ww, zero_division=0),
        "uar": recall_score(yt, yp, labels=gold_classes, average="macro", sample_weight=ww, zero_division=0),
        "weighted_f1": f1_score(yt, yp, labels=classes, average="weighted", sample_weight=ww, zero_division=0),
        "macro_f1": f1_score(yt, yp, labels=classes, average="macro", sample_weight=ww, zero_division=0),
        "hit_rate": float((c["hit_any"][keep] * ww).sum() / tw),
        "unmapped_rate": float(((yp == UNMAPPED) * ww).sum() / tw),
        "mean_mapped_labels": float((c["n_mapped"][keep] * ww).sum() / tw),
    }


@register_metric("closed_set", closed_set_table)
def closed_set(gold: Sequence[Any], pred: Sequence[Any], *, label_set=None, mapper: LabelMapper | None = None,
               names: Sequence[str] | None = None, **mapper_opts) -> dict[str, float]:
    """Single-label closed-set scores of open-vocabulary answers (see module docstring).

    >>> r = closed_set(["anger", "joy", "sadness", "neutral"],
    ...                [["furious"], ["thrilled", "sad"], ["happy", "sad"], ["banana"]], label_set="meld")
    >>> r["accuracy"], r["hit_rate"], r["unmapped_rate"]
    (0.5, 0.75, 0.25)
    """
    return closed_set_table(gold, pred, label_set=label_set, mapper=mapper, names=names, **mapper_opts).result()


def closed_set_multilabel_table(gold: Sequence[Any], pred: Sequence[Any], *, label_set=None,
                                mapper: LabelMapper | None = None, names: Sequence[str] | None = None,
                                **mapper_opts) -> SampleTable:
    m = _mapper(label_set, mapper, **mapper_opts)
    idx = {t: j for j, t in enumerate(m.targets)}
    Y = np.zeros((len(gold), len(m.targets)), int)
    P = np.zeros_like(Y)
    for i, g in enumerate(gold):
        for lab in label_list(labels_of(g)):
            lab = lab if lab in idx else (m.synonym(lab) or lab)
            if lab not in idx:
                raise ScoringInputError(f"gold, sample {i}: label {lab!r} is not in the label set {m.targets}")
            Y[i, idx[lab]] = 1
    for i, p in enumerate(pred):
        for t in m.map_labels(p):
            P[i, idx[t]] = 1
    return SampleTable({"Y": Y, "P": P}, _multilabel_fast, {"n_samples": len(Y)},
                       list(names) if names is not None else None, batched=True, point=_multilabel_sklearn)


def _f1(tp, fp, fn):
    den = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)


def _multilabel_fast(c: dict[str, np.ndarray], w: np.ndarray) -> dict[str, float]:
    """Weighted counts for one (N,) or many (B, N) weight vectors; equals `_multilabel_sklearn`."""
    Y, P = c["Y"].astype(float), c["P"].astype(float)
    tp_s, fp_s, fn_s = (Y * P).sum(1), ((1 - Y) * P).sum(1), (Y * (1 - P)).sum(1)
    tp, fp, fn = w @ (Y * P), w @ ((1 - Y) * P), w @ (Y * (1 - P))
    tw = w.sum(-1)
    union = tp_s + fp_s + fn_s
    with np.errstate(divide="ignore", invalid="ignore"):
        jac = np.where(union > 0, tp_s / np.where(union > 0, union, 1), 0.0)
    return {
        "micro_f1": _f1(tp.sum(-1), fp.sum(-1), fn.sum(-1)),
        "macro_f1": _f1(tp, fp, fn).mean(-1),
        "samples_f1": (w @ _f1(tp_s, fp_s, fn_s)) / tw,
        "exact_match": (w @ (fp_s + fn_s == 0).astype(float)) / tw,
        "jaccard": (w @ jac) / tw,
        "mean_pred_labels": (w @ P.sum(1)) / tw,
    }


def _multilabel_sklearn(c: dict[str, np.ndarray], w: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, jaccard_score

    keep = w > 0
    Y, P, ww = c["Y"][keep], c["P"][keep], w[keep]
    return {
        "micro_f1": f1_score(Y, P, average="micro", sample_weight=ww, zero_division=0),
        "macro_f1": f1_score(Y, P, average="macro", sample_weight=ww, zero_division=0),
        "samples_f1": f1_score(Y, P, average="samples", sample_weight=ww, zero_division=0),
        "exact_match": accuracy_score(Y, P, sample_weight=ww),
        "jaccard": jaccard_score(Y, P, average="samples", sample_weight=ww, zero_division=0),
        "mean_pred_labels": float((P.sum(1) * ww).sum() / ww.sum()),
    }


@register_metric("closed_set_multilabel", closed_set_multilabel_table)
def closed_set_multilabel(gold: Sequence[Any], pred: Sequence[Any], *, label_set=None,
                          mapper: LabelMapper | None = None, names: Sequence[str] | None = None,
                          **mapper_opts) -> dict[str, float]:
    """Multi-label closed sets (GoEmotions, SemEval E-c): gold label sets vs mapped predicted sets.
    macro F1 averages over every class of the label set (absent classes score 0 by sklearn's zero_division=0).

    >>> r = closed_set_multilabel([["joy", "love"], ["anger"]], [["happy"], ["furious", "disgusted"]],
    ...                           label_set="semeval2018_ec")
    >>> round(r["micro_f1"], 4), r["exact_match"]
    (0.6667, 0.0)
    """
    return closed_set_multilabel_table(gold, pred, label_set=label_set, mapper=mapper, names=names,
                                       **mapper_opts).result()
