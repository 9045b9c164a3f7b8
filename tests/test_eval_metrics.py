"""Exact values of the eval suite's own metrics (hand-computed or textbook), the keyword rules of the
hallucination suite, the letter / yes-no parsers, and the small helpers suites rely on."""
from __future__ import annotations

import math

import numpy as np
import pytest

from affectllm.evaluation import metrics as M
from affectllm.evaluation.parsers import (cited_modalities, parse_letter, parse_yesno, states_missing,
                                          ungrounded_modalities)

PROBS = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [0.1, 0.3, 0.6], [0.5, 0.25, 0.25]])
Y = [0, 1, 2, 1]


def test_calibration_metrics_hand_computed():
    # confidences 0.7, 0.4 (tie -> class 0, wrong), 0.6, 0.5; correct 1, 0, 1, 0; one sample per 10-bin
    r = M.probability_metrics(PROBS, Y, n_bins=10)
    assert r["accuracy"] == 0.5
    assert r["ece"] == pytest.approx((0.3 + 0.4 + 0.4 + 0.5) / 4)
    assert r["mce"] == pytest.approx(0.5)
    assert r["brier"] == pytest.approx((0.14 + 0.56 + 0.26 + 0.875) / 4)
    assert r["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.4) + math.log(0.6) + math.log(0.25)) / 4)
    # two bins: (0, .5] holds 0.4, 0.5 (acc 0, conf .45); (.5, 1] holds 0.7, 0.6 (acc 1, conf .65)
    ece, mce = M.ece_mce(PROBS.max(1), [1, 0, 1, 0], n_bins=2)
    assert (ece, mce) == (pytest.approx(0.4), pytest.approx(0.45))
    # bin edges: 0.7 belongs to (0.6, 0.7], not to the next bin (float 0.7 * 10 = 7.000000000000001)
    rel = M.reliability([0.7, 0.1, 0.0], [1, 0, 0], n_bins=10)
    assert rel["count"][6] == 1 and rel["count"][0] == 2


def test_verbal_confidence_metrics_hand_computed():
    r = M.confidence_metrics([0.9, 0.8, 0.3, 0.6], [1, 0, 0, 1], n_bins=10)
    assert r["brier"] == pytest.approx((0.01 + 0.64 + 0.09 + 0.16) / 4)
    assert r["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.6)) / 4)
    assert r["ece"] == pytest.approx((0.1 + 0.8 + 0.3 + 0.4) / 4)
    assert r["mce"] == pytest.approx(0.8)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2.0, (6000, 5))
    true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=p) for p in true])
    overconfident = np.exp(1.7 * z) / np.exp(1.7 * z).sum(1, keepdims=True)   # = true probs at T = 1 / 1.7
    t = M.fit_temperature(overconfident, y)
    assert t == pytest.approx(1.7, rel=0.06)
    fixed = M.apply_temperature(overconfident, t)
    assert M.nll(fixed, y) < M.nll(overconfident, y)
    assert np.allclose(M.apply_temperature(true, 1.0), true)


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) style worked example (Wikipedia "Fleiss' kappa"): 10 subjects, 14 raters, 5 categories
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert M.fleiss_kappa(table) == pytest.approx(0.20993, abs=5e-5)
    assert M.fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.fleiss_kappa([[2, 0], [1, 0]])
    try:
        from statsmodels.stats.inter_rater import fleiss_kappa as sm_kappa
    except ImportError:
        return
    assert M.fleiss_kappa(table) == pytest.approx(sm_kappa(np.array(table)))


def test_ratings_table_flip_rate_and_agreement():
    preds = [["joy", "anger", "fear"], ["joy", "sadness", "fear"], ["anger", "sadness", "fear"]]
    t = M.ratings_table(preds)
    assert t.sum(1).tolist() == [3, 3, 3] and t.shape == (3, 4)
    assert M.flip_rate(preds[0], preds[1]) == pytest.approx(1 / 3)
    agree = M.agreement_matrix(preds)
    assert agree[0, 2] == pytest.approx(1 / 3) and agree[1, 2] == pytest.approx(2 / 3) and agree[0, 0] == 1
    # subjects (joy, joy, anger), (anger, sadness, sadness), (fear x3): P_i = (1/3, 1/3, 1), P̄ = 5/9;
    # p = (anger 2, fear 3, joy 2, sadness 2) / 9 -> P̄e = 21/81; kappa = (45 - 21) / (81 - 21) = 0.4
    assert M.fleiss_kappa(t) == pytest.approx(0.4)


def test_pair_scores_need_both_answers_right():
    r = M.pair_scores(["yes", "yes", "no", None, "yes"], ["no", "yes", "no", "no", "no"])
    assert r["pair_accuracy"] == pytest.approx(2 / 5)
    assert r["yes_accuracy"] == pytest.approx(3 / 5) and r["no_accuracy"] == pytest.approx(4 / 5)
    assert r["question_accuracy"] == pytest.approx(7 / 10)
    assert r["yes_rate"] == pytest.approx(4 / 10) and r["unparsed_rate"] == pytest.approx(1 / 10)
    assert M.pair_scores(["yes"] * 4, ["yes"] * 4)["pair_accuracy"] == 0.0      # always-yes scores nothing


def test_renormalise_over_candidates():
    top = [("happy", math.log(0.5)), (" sad", math.log(0.2)), ("an", math.log(0.1)), ("{", math.log(0.1))]
    p, covered = M.renormalise_over_candidates(top, ["happy", "sad", "angry", "anxious", "calm"])
    assert covered == pytest.approx(0.8)
    # "an" supports angry and anxious equally; calm got floor = min listed prob / 10 = 0.01
    raw = np.array([0.5, 0.2, 0.05, 0.05, 0.01])
    assert np.allclose(p, raw / raw.sum())


def test_seed_interval_and_bootstrap_mean():
    mean, sd, lo, hi = M.seed_interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and sd == pytest.approx(0.1)
    assert hi - mean == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)      # t(0.975, 2) = 4.3027
    assert math.isnan(M.seed_interval([0.4])[2])
    ci = M.bootstrap_mean(200, [1, 0, 1, 1, np.nan], "x")
    assert 0 <= ci["x_ci_low"] <= 0.75 <= ci["x_ci_high"] <= 1


@pytest.mark.parametrize("text", [
    "I can't hear the speaker; only the transcript was given.",
    "There is no audio in this input.",
    "The audio was not provided, so I cannot judge the voice.",
    "Without the video I cannot describe the face.",
    "Based solely on the text, the speaker seems annoyed.",
    "No video was given.",
    "I'm unable to see any facial expression here.",
])
def test_states_missing_positives(text):
    assert states_missing(text)


@pytest.mark.parametrize("text", [
    "The voice sounds tense and high-pitched, suggesting anger.",
    "Her facial expression shows a frown and raised brows.",
    "The speaker sounds happy.",
    "The voice is not clear but seems sad.",
])
def test_states_missing_negatives(text):
    assert not states_missing(text)


def test_modality_word_detector_and_grounding():
    assert cited_modalities("Her voice trembles; the pitch rises.") == {"audio"}
    assert cited_modalities("A smile and raised eyebrows in the video.") == {"visual"}
    assert cited_modalities("The words 'I hate this' express anger.") == {"text"}
    assert cited_modalities("No audio was provided. The text says she is scared.") == {"text"}
    assert cited_modalities("No audio was provided.") == set()
    assert cited_modalities("VOICE and FACE") == {"audio", "visual"}                  # case-insensitive
    assert cited_modalities("The voiceover mentions nothing") == set()                 # whole words only
    assert ungrounded_modalities("tense voice, frowning face", ["text"]) == {"audio", "visual"}
    assert ungrounded_modalities("tense voice, frowning face", ["video", "text"]) == set()   # video has sound
    assert ungrounded_modalities("tense voice, frowning face", ["audio"]) == {"visual"}
    assert ungrounded_modalities("tense voice, frowning face", ["image"]) == {"audio"}
    # an image-only answer that quotes "the text" invents an input (seen from a tuned `mini` on CK+)
    assert ungrounded_modalities('The text says "The sun is rising."', ["image"]) == {"text"}
    assert ungrounded_modalities('The text says "The sun is rising."', ["image", "text"]) == set()


def test_letter_and_yesno_parsers():
    assert [parse_letter(t) for t in ["B", "(c) Delight", "Answer: D", "answer is (e).", '{"answer": "A"}',
                                      "A person would feel sad", "I think it is F"]] == ["B", "C", "D", "E", "A", None,
                                                                                        "F"]
    assert parse_letter("G", ["x", "y", "z"]) is None                                  # beyond the choices
    assert parse_letter("She would feel delight", ["Anger", "Delight"]) == "B"
    assert parse_letter("Delight or anger", ["Anger", "Delight"]) is None               # two choices quoted
    assert [parse_yesno(t) for t in ["Yes.", "no, not really", "It is TRUE", "maybe", ""]] == ["yes", "no", "yes",
                                                                                               None, None]


@pytest.mark.parametrize("module", ["affectllm.evaluation.metrics", "affectllm.evaluation.parsers",
                                    "affectllm.evaluation.suites.zero_shot"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
