"""Every task YAML runs end to end on the dummy backend (real data from ../shared/data; skipped when absent) and
produces per-sample JSONL, summaries, report.md and its PNG plots; a crashed run resumes without duplicates to the
same summary; sampling tasks need >= 3 seeds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from affectllm.errors import AffectError, ConfigError
from affectllm.evaluation.backends import DummyBackend
from affectllm.evaluation.runner import run_eval
from affectllm.evaluation.tasks import load_catalog

from conftest import DATA

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not available: {DATA}")
ROW_KEYS = {"key", "task", "seed", "variant", "sample_id", "prompt_id", "input", "raw", "parsed", "scores", "gold"}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    from affectllm.cli import main

    out = tmp_path_factory.mktemp("all")
    names = sorted(load_catalog().tasks)
    assert main(["eval", "--model", "dummy", "--tasks", ",".join(names), "--limit", "2", "--output", str(out),
                 "--bootstrap", "20", "--no-progress"]) == 0
    return out, names, json.loads((out / "summary.json").read_text())


def test_every_task_runs_end_to_end_on_the_dummy_backend(full_run):
    out, names, summary = full_run
    assert set(summary["tasks"]) == set(names)
    assert summary["model"]["hash"] and summary["run"]["seeds"] == [0, 1, 2] and summary["prompt_versions"]
    report = (out / "report.md").read_text()
    for name in names:
        t = summary["tasks"][name]
        assert t["status"] == "ok", (name, t["status"])
        assert t["n_records"] > 0 and t["prompt_ids"] and t["decoding"]["temperature"] == 0.0 and t["seeds"] == [0]
        assert any(k in t["metrics"] for k in t["headline"]), (name, t["headline"], sorted(t["metrics"])[:20])
        samples = rows(out / name / "samples.jsonl")
        assert len(samples) == t["n_records"] and len({r["key"] for r in samples}) == len(samples)
        assert all(ROW_KEYS <= set(r) for r in samples)
        assert json.loads((out / name / "summary.json").read_text())["metrics"] == pytest.approx(t["metrics"],
                                                                                                 nan_ok=True)
        assert t["plots"], name
        for p in t["plots"]:
            assert (out / p).is_file() and (out / p).stat().st_size > 1000 and f"]({p})" in report
        assert f"## {name}" in report


def test_suite_outputs_have_their_special_numbers(full_run):
    _, _, s = full_run
    m = {n: t["metrics"] for n, t in s["tasks"].items()}
    assert {"mer_wheel.mer2025", "mer_wheel.mer2025_lc", "mer_wheel.oov_rate_pred", "mer2024_ov.score"} <= set(m["ov_mer2023"])
    assert {"fleiss_kappa", "flip_rate_vs_base", "accuracy_range"} <= set(m["ps_meld"])
    assert len(s["tasks"]["ps_meld"]["tables"]["per_variant"]) == 12
    assert {"pair_accuracy", "yes_rate", "emotion.pair_accuracy", "intensity.pair_accuracy"} <= set(m["hall_pairs_ravdess"])
    assert "absent_ack_rate" in m["hall_absent_text"] and "ungrounded_rate" in m["hall_grounding_meld"]
    assert {"text_only_rate", "other_only_rate", "single_modality_rate"} <= set(m["hall_conflict_face"])
    assert {"logprob.ece", "logprob.ece15", "prior.ece", "logprob_batchcal.ece", "verbal.brier",
            "scored.accuracy"} <= set(m["calib_ravdess"])
    # a handful of fit samples: no temperature (issue 12: T once hit its bound with 8 fit samples)
    assert "temperature" not in m["calib_ravdess"]
    assert s["tasks"]["calib_ravdess"]["tables"]["temperature_status"].startswith("not fitted")
    calib = s["tasks"]["calib_ravdess"]
    assert m["calib_ravdess"]["n_fit"] == 2 and calib["data"]["split"] == "test"
    assert {"clean.closed_set.accuracy", "snr_db:0.delta", "drop:audio.delta"} <= set(m["rob_ravdess"])
    assert "snr_db" in s["tasks"]["rob_ravdess"]["tables"]["curves"]
    assert "gender=female.closed_set.accuracy" in m["fair_ravdess_gender"]
    assert s["tasks"]["zs_meld"]["tables"]["leave_one_out"]["held_out"] is None          # no recipe for the dummy
    assert "language=en.accuracy" in m["emobench_eu"]


def test_scored_choices_pick_the_most_likely_choice(full_run):
    out, _, s = full_run
    records = rows(out / "emobench_eu_scored" / "samples.jsonl")
    assert records and s["tasks"]["emobench_eu_scored"]["prompt_ids"] == ["emotion_ov@2"]  # scenario only, no letters
    for r in records:
        logliks, choices = r["label_probs"]["logliks"], r["meta"]["choices"]
        best = max(range(len(choices)), key=lambda i: logliks[i])
        assert len(logliks) == len(choices) and r["parsed"]["choice"] == choices[best]
        assert r["parsed"]["letter"] == "ABCDEF"[best] and r["scores"]["closed_set.pred"] == "abcdef"[best]


def test_resume_after_a_crash_gives_no_duplicates_and_the_same_summary(tmp_path):
    tasks = ["hall_pairs_ckplus", "zs_meld"]
    clean = run_eval("dummy", tasks, tmp_path / "clean", backend="dummy", limit=3, bootstrap=20, progress=False)
    crashed = DummyBackend(fail_after=5, batch_size=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_eval("dummy", tasks, tmp_path / "resumed", backend=crashed, limit=3, bootstrap=20, progress=False)
    partial = rows(tmp_path / "resumed" / "hall_pairs_ckplus" / "samples.jsonl")
    assert len(partial) == 4                                       # two whole batches were written before the crash
    with open(tmp_path / "resumed" / "hall_pairs_ckplus" / "samples.jsonl", "a") as f:
        f.write('{"key": "0/torn')                                 # a crash in the middle of a line
    backend = DummyBackend()
    resumed = run_eval("dummy", tasks, tmp_path / "resumed", backend=backend, limit=3, bootstrap=20, progress=False)
    assert backend.answered == 6 + 3 - 4                           # only the missing requests were generated
    for name in tasks:
        got = rows(tmp_path / "resumed" / name / "samples.jsonl")
        assert len({r["key"] for r in got}) == len(got) == resumed["tasks"][name]["n_records"]
        assert resumed["tasks"][name]["metrics"] == pytest.approx(clean["tasks"][name]["metrics"], nan_ok=True)
    again = DummyBackend()
    run_eval("dummy", tasks, tmp_path / "resumed", backend=again, limit=3, bootstrap=20, progress=False)
    assert again.answered == 0
    got_before = {name: rows(tmp_path / "resumed" / name / "samples.jsonl") for name in tasks}
    with pytest.raises(AffectError, match="holds results of a different run"):
        run_eval("dummy", tasks, tmp_path / "resumed", backend=DummyBackend(p=0.2), limit=3, progress=False)
    other = DummyBackend(p=0.2)            # a folder the caller owns (affectllm demo): old rows moved aside, kept
    redone = run_eval("dummy", tasks, tmp_path / "resumed", backend=other, limit=3, bootstrap=20, progress=False,
                      replace_stale=True)
    assert other.answered == 9 and all(redone["tasks"][n]["n_records"] == clean["tasks"][n]["n_records"] for n in tasks)
    for name in tasks:
        assert rows(tmp_path / "resumed" / f"{name}.stale-1" / "samples.jsonl") == got_before[name]


def test_sampling_tasks_need_three_seeds_and_report_an_interval_over_them(tmp_path):
    spec = yaml.safe_load((Path(load_catalog().tasks["zs_meld"].path)).read_text())
    spec.update(task="zs_meld_sampled", include=str(Path(load_catalog().tasks["zs_meld"].path).parent / "_zero_shot.yaml"),
                generation={"max_new_tokens": 48, "temperature": 0.8})
    path = tmp_path / "zs_meld_sampled.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="--seeds 3"):
        run_eval("dummy", [str(path)], tmp_path / "one", backend="dummy", limit=4, seeds=1, progress=False)
    s = run_eval("dummy", [str(path)], tmp_path / "three", backend="dummy", limit=4, seeds=3, bootstrap=20,
                 progress=False)["tasks"]["zs_meld_sampled"]
    assert s["seed_dependent"] and s["seeds"] == [0, 1, 2] and len(s["per_seed"]) == 3
    accs = [p["closed_set.accuracy"] for p in s["per_seed"]]
    assert s["metrics"]["closed_set.accuracy"] == pytest.approx(sum(accs) / 3)
    assert "closed_set.accuracy_std" in s["metrics"] and "closed_set.accuracy_ci_low" in s["metrics"]
    assert len({r["seed"] for r in rows(tmp_path / "three" / "zs_meld_sampled" / "samples.jsonl")}) == 3


def test_leave_one_corpus_out_is_read_from_the_checkpoint_recipe(tmp_path):
    class Trained(DummyBackend):
        def info(self):
            return {**super().info(), "recipe": {"data": {"corpora": ["meld", "goemotions"]}}}

    s = run_eval("dummy", ["zs_meld", "zs_ravdess"], tmp_path, backend=Trained(), limit=2, bootstrap=20, progress=False)
    assert s["trained_on"] == ["meld", "goemotions"]
    assert s["tasks"]["zs_meld"]["tables"]["leave_one_out"]["held_out"] is False
    assert s["tasks"]["zs_ravdess"]["tables"]["leave_one_out"]["held_out"] is True


def test_missing_corpus_is_skipped_not_fatal(tmp_path):
    s = run_eval("dummy", ["zs_meld"], tmp_path / "o", backend="dummy", limit=2, progress=False,
                 data_root=tmp_path / "no-data")
    assert s["tasks"]["zs_meld"]["status"].startswith("skipped: corpus 'meld' not found")
    assert "skipped" in (tmp_path / "o" / "report.md").read_text()
