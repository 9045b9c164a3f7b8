"""Acceptance for issue 12: a constant "neutral" model and a random model must not pass the eval suite.
Each test here fails on the metric code before issue 12 (no majority share, kappa flag, label-prior baseline,
chance interval or value-level grounding existed; calibration was judged on a temperature fitted to 8 samples)."""
from __future__ import annotations

import numpy as np
import pytest

from affectllm.evaluation.backends import DummyBackend
from affectllm.evaluation.calib import calibration_report, guarded_temperature
from affectllm.evaluation.degenerate import answer_stats, chance_check, instance_sensitivity, kappa_flag
from affectllm.evaluation.runner import run_eval

from conftest import DATA

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not available: {DATA}")


def test_answer_stats_flag_a_constant_model():
    s = answer_stats(["neutral"] * 12, n_candidates=7)
    assert s["majority_share"] == 1.0 and s["answer_entropy_norm"] == 0.0 and kappa_flag(1.0)
    u = answer_stats(list("abcdefg") * 3, n_candidates=7)
    assert u["answer_entropy_norm"] == pytest.approx(1.0) and kappa_flag(u["majority_share"]) is None
    assert instance_sensitivity(np.array([[1, 0], [1, 1]])).tolist() == [0.0, 1.0]


def test_temperature_needs_100_fit_samples_and_is_flagged_at_its_bound():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7) * 0.3, 8)
    assert guarded_temperature(p, rng.integers(0, 7, 8)) == (None, "not fitted: 8 fit samples < 100")
    confident_wrong = np.tile(np.eye(7)[0] * 0.94 + 0.01, (200, 1))     # always "class 0" with p = 0.95
    t, status = guarded_temperature(confident_wrong, np.arange(200) % 7)
    assert t == pytest.approx(20.0, rel=1e-2) and status == "saturated: not calibrated"
    m = calibration_report(confident_wrong, np.arange(200) % 7, confident_wrong[:70], np.arange(70) % 7, 7)
    assert "logprob_scaled.ece" not in m and m["better_than_prior"] == 0.0 and m["prior.ece"] < m["logprob.ece"]


@pytest.fixture(scope="module")
def degenerate_runs(tmp_path_factory):
    if not DATA.is_dir():
        pytest.skip(f"real data not available: {DATA}")
    out = {}
    for mode in ("constant", "random"):
        tmp = tmp_path_factory.mktemp(mode)
        out[mode] = run_eval("dummy", ["ps_meld", "calib_meld"], tmp, backend=DummyBackend(mode=mode),
                             limit=70, bootstrap=200, progress=False)
    return out


@needs_data
def test_constant_model_is_flagged(degenerate_runs):
    t = degenerate_runs["constant"]["tasks"]
    ps, cal = t["ps_meld"]["metrics"], t["calib_meld"]["metrics"]
    assert ps["majority_share"] == 1.0 and ps["kappa_flagged"] == 1.0 and ps["answer_entropy_norm"] == 0.0
    assert any("kappa uninformative" in n for n in t["ps_meld"]["notes"])
    assert ps["order_flip_rate"] == 0.0 == ps["order_flip_rate_ci_high"]  # constant: never flips
    rnd = degenerate_runs["random"]["tasks"]["ps_meld"]["metrics"]
    assert rnd["order_flip_rate_ci_low"] <= rnd["order_flip_rate"] <= rnd["order_flip_rate_ci_high"]
    assert rnd["order_flip_rate_ci_low"] > 0.15  # a random answerer flips most answers, and the CI says so
    # calibration no better than always answering the training class frequencies
    assert cal["better_than_prior"] == 0.0
    assert cal["logprob.ece"] >= cal["prior.ece"] and cal["logprob.nll"] >= cal["prior.nll"]
    assert cal["logprob.brier"] >= cal["prior.brier"]


@needs_data
@pytest.mark.parametrize("mode", ["constant", "random"])
def test_degenerate_models_score_at_chance_with_intervals_that_include_it(degenerate_runs, mode):
    t = degenerate_runs[mode]["tasks"]
    cal = t["calib_meld"]["metrics"]
    assert cal["scored.n"] == 70 and cal["scored.chance"] == pytest.approx(1 / 7)
    assert cal["scored.ci_includes_chance"] == 1.0
    assert cal["scored.accuracy_ci_low"] <= 1 / 7 <= cal["scored.accuracy_ci_high"]
    assert cal["closed_set.accuracy_ci_low"] <= 1 / 7 <= cal["closed_set.accuracy_ci_high"]
    per = t["ps_meld"]["tables"]["per_variant"]
    inside = [v["accuracy_ci_low"] <= 1 / 7 <= v["accuracy_ci_high"] for v in per.values()]
    assert sum(inside) >= len(inside) - 2          # 12 variants x 95% intervals: one or two may miss by chance


def test_chance_check_separates_a_real_model():
    assert chance_check([1] * 60 + [0] * 10, 7)["ci_includes_chance"] == 0.0
    assert chance_check([1] * 10 + [0] * 60, 7)["ci_includes_chance"] == 1.0


def test_absent_modality_answers_are_classified():
    from affectllm.evaluation.grounding import classify_absent

    assert classify_absent("No video was provided, so I cannot see the face.") == "missing"
    assert classify_absent("I don't know.") == "dont_know"
    assert classify_absent("I can't tell what they feel.") == "dont_know"
    assert classify_absent("As an AI, I cannot identify emotions.") == "refusal"
    assert classify_absent("The face looks tense.") == "other"


def test_value_claims_are_checked_against_the_measured_tone(tmp_path):
    import soundfile as sf

    from affectllm.data.targets import tower_speech_cues
    from affectllm.evaluation.grounding import grounding_scores

    from conftest import tone

    wav = tmp_path / "t.wav"
    sf.write(wav, tone(1.5, freq=220.0), 16000)
    cues = tower_speech_cues(str(wav))
    assert abs(cues["pitch_mean_hz"] - 220) < 15
    right = grounding_scores("The pitch averages 222 Hz.", cues)
    wrong = grounding_scores("The pitch averages 380 Hz and the energy is -60 dBFS.", cues)
    assert right == {"n_claims": 1.0, "n_verifiable": 1.0, "n_wrong": 0.0}
    assert wrong["n_verifiable"] == 2 and wrong["n_wrong"] == 2
    assert grounding_scores("It sounds higher than usual.", cues)["n_claims"] == 0


@needs_data
def test_invented_prosody_numbers_are_caught(tmp_path):
    s = run_eval("dummy", ["hall_grounding_ravdess"], tmp_path, backend=DummyBackend(mode="invent_prosody"),
                 limit=8, bootstrap=100, progress=False)
    m = s["tasks"]["hall_grounding_ravdess"]["metrics"]
    assert m["value_claims_per_explanation"] >= 3 and m["value_claims_verifiable_rate"] > 0.9
    assert m["value_claims_wrong_rate"] > 0.5 and m["ungrounded_rate"] == 0.0   # the old word rule saw nothing


@needs_data
def test_a_split_smaller_than_asked_says_so_and_reports_carry_n(tmp_path):
    s = run_eval("dummy", ["hall_pairs_ckplus"], tmp_path, limit=100000, bootstrap=20, progress=False)
    t = s["tasks"]["hall_pairs_ckplus"]
    assert t["data"]["short_of_limit"] and any("fewer than the 100000 asked for" in n for n in t["notes"])
    report = (tmp_path / "report.md").read_text()
    assert f"| {t['data']['n_samples']} / {t['n_records']} |" in report
    assert "(no CI)" not in report  # every headline rate of the paired probes carries its bootstrap CI
    m = t["metrics"]
    for key in ("pair_accuracy", "question_accuracy", "yes_rate"):
        assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"], key


def test_reports_never_show_absolute_machine_paths(tmp_path):
    from affectllm.evaluation.backends import REPO_ROOT, local_identity, portable_path

    assert portable_path(REPO_ROOT / "runs" / "x") == "runs/x"
    assert portable_path(REPO_ROOT.parent / "shared" / "data") == "../shared/data"
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert str(tmp_path) not in local_identity(str(tmp_path / "ckpt"))["hash_kind"]


def test_the_model_line_of_a_report_is_not_an_absolute_path(tmp_path):
    """An artifact evaluated from a folder outside the repository is named by its last parts, not its path."""
    from affectllm.evaluation.backends import HFBackend
    from serve_helpers import make_lora_artifact

    artifact = make_lora_artifact(tmp_path / "runs" / "mine")
    info = HFBackend(str(artifact)).info()
    assert str(tmp_path) not in info["model_id"] and info["model_id"].endswith("runs/mine")


@needs_data
def test_spread_agreement_and_calibration_numbers_carry_cis(degenerate_runs):
    """The secondary numbers a reader compares (accuracy spread over prompts, kappa, majority share, ECE/NLL and
    their difference to the label prior) each come with a bootstrap interval that holds the point estimate."""
    from affectllm.evaluation.report import needs_ci

    for mode, run in degenerate_runs.items():
        for name in ("ps_meld", "calib_meld"):
            t = run["tasks"][name]
            m = t["metrics"]
            missing = [k for k in t["headline"] if k in m and needs_ci(k, m)]
            assert not missing, (mode, name, missing)
    m = degenerate_runs["random"]["tasks"]["ps_meld"]["metrics"]
    for key in ("accuracy_mean", "accuracy_min", "accuracy_max", "fleiss_kappa", "majority_share"):
        assert m[f"{key}_ci_low"] <= m[key] + 1e-9 and m[key] - 1e-9 <= m[f"{key}_ci_high"], key
    assert m["accuracy_range_ci_high"] > 0  # twelve prompts answered at random do not agree by chance
    cal = degenerate_runs["random"]["tasks"]["calib_meld"]["metrics"]
    assert cal["ece_minus_prior_ci_low"] <= cal["ece_minus_prior"] <= cal["ece_minus_prior_ci_high"]


@needs_data
def test_the_default_suite_reports_no_number_without_a_ci(tmp_path):
    """Every headline number of every task in the default group has its interval (what the report calls "(no CI)"
    is a failure here); n/a values, counts, flags and fitted parameters are not estimates and are exempt."""
    from affectllm.evaluation.report import needs_ci

    s = run_eval("dummy", "default", tmp_path, backend=DummyBackend(mode="random"), bootstrap=50, progress=False)
    missing = {name: [k for k in t.get("headline", []) if k in t["metrics"] and needs_ci(k, t["metrics"])]
               for name, t in s["tasks"].items() if t.get("status") == "ok"}
    assert not {k: v for k, v in missing.items() if v}
    assert "(no CI)" not in (tmp_path / "report.md").read_text()
