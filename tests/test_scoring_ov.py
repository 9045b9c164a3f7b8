"""mer2024_ov (MER2024 open-vocabulary metric): every rule of OV_METRIC.md on small hand-computed cases,
and the published numbers on the real ov_store files (skipped without ../shared/data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from affectllm.errors import ScoringInputError
from affectllm.scoring import mer2024_ov, read_labels, read_synonym_zip, sample_ov_score, sample_ov_scores, score
from affectllm.scoring.inputs import parse_groups
from affectllm.scoring.labels import split_mer2024

DATA = Path(os.environ.get("AFFECTLLM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
STORE = DATA / "ovmer" / "ov_store"


def test_split_on_quotes_only_without_stripping():
    assert split_mer2024("['happy', 'sad']") == ["happy", "sad"]
    assert split_mer2024("[happy, sad]") == ["happy, sad"]            # one label
    assert split_mer2024("['happy',' sad']") == ["happy", " sad"]     # leading space kept
    assert split_mer2024('["don\'t believe", \'doubt\']') == ["don", "t believe", "doubt"]
    assert split_mer2024("chatter ['a'] more") == ["a"]
    assert split_mer2024("") == [] and split_mer2024(None) == []
    with pytest.raises(ValueError):
        split_mer2024("happy, sad")                                   # the official code crashes here


def test_lower_only_and_space_sensitivity():
    assert sample_ov_scores("['Happy']", "['happy']") == (1.0, 1.0)
    assert sample_ov_scores("['sad']", "['happy',' sad']") == (0.0, 0.0)


def test_apostrophe_splits_in_gold_and_pred():
    assert sample_ov_scores('["don\'t believe", \'doubt\']', "['doubt']") == (1.0, pytest.approx(1 / 3))
    assert sample_ov_scores('["don\'t believe"]', '["don\'t care"]') == (0.5, 0.5)   # 'don' matches 'don'


def test_synonym_heads_and_unknown_words():
    groups = parse_groups("[['joyful', 'happy'], ['worried', 'anxious']]")
    assert groups == [["joyful", "happy"], ["worried", "anxious"]]
    assert sample_ov_scores("['happy', 'worried']", "['joyful', 'anxious', 'zzz']", groups) == (
        pytest.approx(2 / 3), 1.0)
    assert sample_ov_score("['happy', 'worried']", "['joyful']", groups) == pytest.approx(0.75)


def test_empty_prediction_scores_zero():
    assert sample_ov_scores("['happy']", "[]") == (0.0, 0.0)
    assert sample_ov_scores("['happy']", None) == (0.0, 0.0)


def test_empty_gold_with_prediction():
    with pytest.raises(ScoringInputError, match="empty label set"):
        sample_ov_scores("[]", "['happy']")
    r = mer2024_ov(["[]", "['sad']", "[]"], ["['happy']", "['sad']", "[]"])
    assert r["skipped_empty_gold"] == 1 and r["n_samples"] == 2         # empty/empty counts as 0/0
    assert r["accuracy"] == 0.5 and r["recall"] == 0.5


def test_averages_and_score():
    gold = {"a": "['happy', 'relaxed']", "b": "['sad']", "c": "['angry', 'tense']"}
    pred = {"a": "['joyful']", "b": "['sad', 'angry']", "c": "[]"}
    syn = {"a": [["happy", "joyful"]], "b": [["sad"]], "c": [["angry"]]}
    r = score("mer2024_ov", gold, pred, synonyms=syn)
    assert r["accuracy"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert r["recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert r["score"] == pytest.approx((r["accuracy"] + r["recall"]) / 2)


def test_samples_follow_the_synonym_zip():
    gold = {"a": "['happy']", "b": "['sad']"}
    pred = {"a": "['happy']", "b": "['x']"}
    r = score("mer2024_ov", gold, pred, synonyms={"a": [["happy"]]})
    assert r["n_samples"] == 1 and r["skipped_no_synonyms"] == 1 and r["score"] == 1.0
    with pytest.raises(ScoringInputError, match="synonym zip: 1 sample"):
        score("mer2024_ov", gold, pred, synonyms={"a": [], "zzz": []})
    with pytest.raises(ScoringInputError, match="needs sample names"):
        mer2024_ov(["['a']"], ["['a']"], synonyms={"0": []})


def test_missing_bracket_is_an_input_error():
    with pytest.raises(ScoringInputError, match=r"pred, sample 'a', column 'openset'.*no '\['"):
        score("mer2024_ov", {"a": "['happy']"}, {"a": "happy"})


needs_data = pytest.mark.skipif(not (STORE / "openset-synonym.zip").is_file(), reason=f"real data not found under {STORE}")


@needs_data
def test_real_ov_store_numbers():
    gold, pred = read_labels(STORE / "check-openset.csv"), read_labels(STORE / "predict-openset.csv")
    r = score("mer2024_ov", gold, pred, synonyms=STORE / "openset-synonym.zip", bootstrap=500, seed=0)
    print(f"\nmer2024_ov on ov_store: accuracy {r['accuracy']:.4f} recall {r['recall']:.4f} avg {r['score']:.4f} "
          f"(95% CI {r['score_ci_low']:.4f}-{r['score_ci_high']:.4f})")
    assert round(r["accuracy"], 4) == 0.5818
    assert round(r["recall"], 4) == 0.4978
    assert round(r["score"], 4) == 0.5398
    assert r["accuracy"] == pytest.approx(0.581777108433735, abs=1e-12)
    assert r["recall"] == pytest.approx(0.4977911646586345, abs=1e-12)
    assert r["n_samples"] == 332 and r["skipped_empty_gold"] == 0
    assert r["score_ci_low"] < r["score"] < r["score_ci_high"]


@needs_data
def test_real_synonym_zip_read_directly():
    groups = read_synonym_zip(STORE / "openset-synonym.zip")
    assert len(groups) == 332
    assert groups["sample_00000007"] == [["joyful", "satisfied", "happy", "excited"]]
