"""Closed-set metrics after label-space mapping (vs sklearn, exact hand values), the default lexicon,
dimensional metrics (CCC/Pearson), bootstrap intervals, the metric registry."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from affectllm.errors import ConfigError, ScoringInputError
from affectllm.scoring import (METRICS, LabelMapper, Lexicon, bootstrap_ci, ccc, closed_set, closed_set_multilabel,
                               dimensional, list_metrics, parse, pearson, score, score_samples)

GOLD = ["anger", "anger", "joy", "joy", "sadness", "neutral"]
PRED = [["furious"], ["sad", "angry"], ["happy"], ["banana"], ["sad"], ["calm"]]


def test_registry_holds_every_metric():
    assert set(list_metrics()) == {"mer2024_ov", "mer_wheel", "closed_set", "closed_set_multilabel", "dimensional"}
    assert METRICS.kind == "metric"
    for name in list_metrics():
        fn = METRICS.get(name)
        assert fn.__doc__ and ">>>" in fn.__doc__ and callable(fn.table)
    with pytest.raises(ConfigError, match="did you mean 'mer_wheel'"):
        score("mer_wheal", [], [])


def test_default_lexicon_contents():
    lex = Lexicon.default()
    sets = lex.label_sets
    assert sets["ravdess"] == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert sets["ckplus"] == ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
    assert sets["meld"] == ["neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust"]
    assert len(sets["goemotions"]) == 28 and "neutral" in sets["goemotions"]
    assert set(sets["ekman"]) == {"anger", "disgust", "fear", "happiness", "sadness", "surprise"}
    assert len(sets["plutchik"]) == 8 and len(sets["isear"]) == 7 and len(sets["semeval2018_ec"]) == 11
    for words in sets.values():
        assert all(lex.is_emotion(w) for w in words)
    assert {lex.normalise(w) for w in ("angry", "anger", "mad", "furious", "Furious ")} == {"anger"}
    assert lex.normalise("banana") is None and not lex.is_emotion("banana")
    assert "mad" in lex.synonyms("angry") and lex.clusters()["anger"]
    assert lex.group("irritated") == "anger" and lex.family("disdain") == "disgust"


def test_lexicon_extract():
    lex = Lexicon.default()
    assert lex.extract("Not happy at all, but relieved and a little grossed out.") == ["relieved", "grossed out"]
    assert lex.extract("She wasn't really angry; she was sad. Sad!") == ["sad"]
    assert lex.extract("Furious, FURIOUS and mad", lemmas=True) == ["anger"]
    assert lex.extract("") == []


def test_mapper_steps():
    m = LabelMapper("meld")
    assert m.explain("joy") == ("joy", "exact")
    assert m.explain("furious") == ("anger", "lemma")
    assert m.explain("annoyed") == ("anger", "group")
    assert m.explain("relaxed") == ("neutral", "family")
    assert m.explain("banana") == (None, None)
    assert LabelMapper("goemotions").explain("content") == ("joy", "group")      # the group-named target wins
    assert LabelMapper("goemotions").explain("ashamed") == ("embarrassment", "group")
    assert LabelMapper("isear").map("embarrassed") == "shame"
    assert LabelMapper("ravdess").map("relaxed") == "calm"
    assert LabelMapper("ckplus").map("disdain") == "contempt"
    assert LabelMapper(["hunger", "thirst"]).map("happy") is None
    assert m.map_labels(["Furious", "mad", "sad", "banana"]) == ["anger", "sadness"]
    with pytest.raises(ScoringInputError, match="unknown label set 'meldd'"):
        LabelMapper("meldd")


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_closed_set_exact_values_and_sklearn():
    r = closed_set(GOLD, PRED, label_set="meld")
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["war"] == pytest.approx(4 / 6)
    assert r["uar"] == pytest.approx(3 / 4)
    assert r["macro_f1"] == pytest.approx(3 / 4)
    assert r["weighted_f1"] == pytest.approx(13 / 18)
    assert r["hit_rate"] == pytest.approx(5 / 6)
    assert r["unmapped_rate"] == pytest.approx(1 / 6)
    assert r["mean_mapped_labels"] == pytest.approx(1.0)
    y_true = GOLD
    y_pred = ["anger", "sadness", "joy", "<unmapped>", "sadness", "neutral"]
    assert list(score_samples("closed_set", GOLD, PRED, label_set="meld")["y_pred"]) == y_pred
    classes = ["anger", "joy", "neutral", "sadness"]
    assert r["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert r["uar"] == pytest.approx(balanced_accuracy_score(y_true, [p if p in classes else "x" for p in y_pred]))
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=classes, average="macro"))
    assert r["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=classes, average="weighted"))


def test_closed_set_reads_parsed_predictions():
    preds = [parse('{"labels": ["Furious"], "explanation": "x"}'), parse("<answer>sad</answer>")]
    r = closed_set(["anger", "sadness"], preds, label_set="meld")
    assert r["accuracy"] == 1.0


def test_closed_set_gold_must_be_in_label_set():
    with pytest.raises(ScoringInputError, match="gold, sample 1: label 'banana'"):
        closed_set(["anger", "banana"], [["x"], ["y"]], label_set="meld")
    with pytest.raises(ScoringInputError, match="exactly one label"):
        closed_set([["anger", "joy"]], [["x"]], label_set="meld")
    assert closed_set(["angry"], [["furious"]], label_set="meld")["accuracy"] == 1.0   # gold synonyms are normalised
    with pytest.raises(ScoringInputError, match="label_set"):
        closed_set(["anger"], [["x"]])


def test_fast_resampling_paths_equal_sklearn():
    """Bootstrap uses confusion-matrix / count arithmetic; it must give sklearn's numbers for any weights."""
    from affectllm.scoring import score_table

    rng = np.random.default_rng(5)
    labels = ["anger", "joy", "sadness", "neutral", "fear"]
    words = ["furious", "happy", "sad", "calm", "scared", "banana", "annoyed", "thrilled"]
    gold = [labels[i] for i in rng.integers(0, 5, 60)]
    pred = [list(rng.choice(words, rng.integers(0, 3))) for _ in range(60)]
    t = score_table("closed_set", gold, pred, label_set="meld")
    for w in [np.ones(60)] + [np.bincount(rng.integers(0, 60, 60), minlength=60).astype(float) for _ in range(5)]:
        fast, ref = t.aggregate(t.columns, w), t.point(t.columns, w)
        for key in ref:
            assert fast[key] == pytest.approx(ref[key], abs=1e-12), key
    gold_ml = [list(rng.choice(["anger", "joy", "fear", "sadness", "love"], rng.integers(1, 3), replace=False))
               for _ in range(40)]
    t = score_table("closed_set_multilabel", gold_ml, pred[:40], label_set="semeval2018_ec")
    for w in [np.ones(40)] + [np.bincount(rng.integers(0, 40, 40), minlength=40).astype(float) for _ in range(5)]:
        fast, ref = t.aggregate(t.columns, w), t.point(t.columns, w)
        for key in ref:
            assert fast[key] == pytest.approx(ref[key], abs=1e-12), key


def test_multilabel_exact_values():
    gold = [["joy", "love"], ["anger"], ["fear", "sadness"]]
    pred = [["happy"], ["furious", "disgusted"], ["scared", "sad", "hopeless"]]
    r = closed_set_multilabel(gold, pred, label_set="semeval2018_ec")
    assert r["micro_f1"] == pytest.approx(0.8)
    assert r["macro_f1"] == pytest.approx(4 / 11)        # over all 11 classes; absent ones score 0
    assert r["samples_f1"] == pytest.approx(7 / 9)
    assert r["exact_match"] == pytest.approx(1 / 3)
    assert r["jaccard"] == pytest.approx(2 / 3)
    cols = score_samples("closed_set_multilabel", gold, pred, label_set="semeval2018_ec")
    assert r["micro_f1"] == pytest.approx(f1_score(cols["Y"], cols["P"], average="micro"))
    with pytest.raises(ScoringInputError, match="not in the label set"):
        closed_set_multilabel([["joy", "glee"]], [["x"]], label_set="semeval2018_ec")


def test_ccc_and_pearson_exact():
    t, p = [1, 2, 3, 4], [2, 2, 4, 5]
    assert ccc(t, p) == pytest.approx(11 / 14)
    assert pearson(t, p) == pytest.approx(1.375 / math.sqrt(1.25 * 1.6875))
    from scipy.stats import pearsonr

    assert pearson(t, p) == pytest.approx(pearsonr(t, p)[0])
    assert ccc(t, t) == pytest.approx(1.0)
    assert ccc([1, 2, 3], [11, 12, 13]) < 0.1 < pearson([1, 2, 3], [11, 12, 13])   # bias is penalised
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert ccc(t, p, weights=[2, 1, 1, 1]) == pytest.approx(ccc([1, 1, 2, 3, 4], [2, 2, 2, 4, 5]))


def test_dimensional_metric():
    gold = [{"valence": 0.5, "arousal": 0.1}, {"valence": -0.5, "arousal": 0.4}, {"valence": 0.0, "arousal": None},
            {"valence": 0.9, "arousal": 0.8}]
    pred = [parse('{"labels": ["happy"], "explanation": "", "valence": 0.4, "arousal": 0.2}'),
            {"valence": -0.2, "arousal": 0.5}, {"valence": None}, {"valence": 0.7, "arousal": 0.6}]
    r = dimensional(gold, pred)
    assert r["n_valence"] == 3 and r["missing_pred_valence"] == 1 and r["n_arousal"] == 3
    assert r["ccc_valence"] == pytest.approx(ccc([0.5, -0.5, 0.9], [0.4, -0.2, 0.7]))
    assert "ccc_dominance" not in r


def test_bootstrap_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=200)
    gold = [{"valence": float(v)} for v in truth]
    pred = [{"valence": float(v + rng.normal(scale=0.5))} for v in truth]
    point = dimensional(gold, pred)["ccc_valence"]
    a = bootstrap_ci("dimensional", gold, pred, n=300, seed=7)
    b = bootstrap_ci(dimensional, gold, pred, n=300, seed=7)
    c = bootstrap_ci("dimensional", gold, pred, n=300, seed=8)
    assert a == b and a != c
    lo, hi = a["ccc_valence"]
    assert lo < point < hi and hi - lo < 0.3

    g = GOLD * 10
    pr = PRED * 10
    r = score("closed_set", g, pr, label_set="meld", bootstrap=200, seed=1)
    for key in ("accuracy", "uar", "macro_f1", "hit_rate"):
        assert r[f"{key}_ci_low"] <= r[key] <= r[f"{key}_ci_high"]


def test_score_input_shapes():
    with pytest.raises(ScoringInputError, match="2 samples but pred has 1"):
        score("closed_set", ["anger", "joy"], [["x"]], label_set="meld")
    with pytest.raises(ScoringInputError, match="both be dicts"):
        score("closed_set", {"a": "anger"}, [["x"]], label_set="meld")
    r = score("closed_set", {"a": "anger", "b": "joy"}, {"b": ["happy"], "a": ["mad"]}, label_set="meld")
    assert r["accuracy"] == 1.0
    assert list(score_samples("closed_set", {"a": "anger"}, {"a": ["mad"]}, label_set="meld")["names"]) == ["a"]


@pytest.mark.slow
def test_embedding_fallback_minilm():
    m = LabelMapper("meld", embeddings=True)
    assert m.explain("weepy") == ("sadness", "embedding")
    assert m.map("table") is None
