"""Bring your own data, the model side: `affectllm eval --manifest` runs the zero-shot, calibration, prompt-
sensitivity, hallucination and fairness suites on a user's corpus (synthetic tones and faces made here) with exact
counts; a task YAML takes `dataset: {manifest, label_set}`; the report says whether the model's recipe trained on
the corpus; `affectllm predict` on `tiny` in process (resumable) feeds `affectllm score`, whose numbers equal the
eval's and a hand count."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from affectllm.cli import main
from affectllm.data import read_manifest
from affectllm.errors import ConfigError
from affectllm.evaluation.backends import DummyBackend, HFBackend
from affectllm.evaluation.manifest_tasks import manifest_tasks
from affectllm.evaluation.runner import run_eval
from affectllm.evaluation.tasks import build_task, evals_dir, load_yaml
from affectllm.scoring import LabelMapper

from byod_helpers import crema_like, faces_like


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """clips.jsonl: 8 actors x 4 emotions, speaker-disjoint (seed 0: train 1001 1002 1005 1006, dev 1004 1008,
    test 1003 1007, both male); faces.jsonl: 4 moods x 3 faces, all 'test'."""
    root = tmp_path_factory.mktemp("byod") / "my_corpus"
    crema_like(root)
    faces_like(root / "faces")
    labels = root / "labels.yaml"
    assert main(["data", "csv", str(root / "clips.csv"), "--label-set", str(labels), "--split-by", "speaker",
                 "--out", str(root / "clips.jsonl")]) == 0
    assert main(["data", "folders", str(root / "faces"), "--label-set", str(labels), "--out",
                 str(root / "faces.jsonl")]) == 0
    return root


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_manifest_runs_every_suite_it_can_with_exact_counts(corpus, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--model", "dummy", "--dummy-p", "1.0", "--manifest", str(corpus / "clips.jsonl"),
                 "--label-set", str(corpus / "labels.yaml"), "--output", str(out), "--bootstrap", "20",
                 "--no-progress"]) == 0
    assert "fair_clips_gender: skipped: needs labels and >= 2 gender groups in the test rows, found {'male': 8}" \
        in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    t = s["tasks"]
    assert sorted(t) == ["calib_clips", "fair_clips_gender", "hall_absent_clips", "hall_grounding_clips",
                         "hall_pairs_clips", "ps_clips", "zs_clips"]
    assert {n: x.get("n_records") for n, x in t.items() if x["status"] == "ok"} == {
        "zs_clips": 8, "calib_clips": 16, "ps_clips": 96, "hall_absent_clips": 8, "hall_pairs_clips": 16,
        "hall_grounding_clips": 8}
    m = {n: x["metrics"] for n, x in t.items() if x["status"] == "ok"}
    assert (m["zs_clips"]["closed_set.accuracy"], m["zs_clips"]["closed_set.unmapped_rate"]) == (1.0, 0.0)
    assert m["calib_clips"]["n_fit"] == 8 and m["calib_clips"]["closed_set.accuracy"] == 1.0
    assert (m["ps_clips"]["accuracy_mean"], m["ps_clips"]["flip_rate_vs_base"]) == (1.0, 0.0)
    assert m["hall_pairs_clips"]["pair_accuracy"] == 1.0 and m["hall_absent_clips"]["absent_ack_rate"] == 1.0
    zs = t["zs_clips"]["data"]
    assert zs["manifest"] == str(corpus / "clips.jsonl") and zs["split"] == "test" and zs["n_samples"] == 8
    assert zs["label_set"] == str(corpus / "labels.yaml") and zs["seen_in_training"] is None
    assert sorted(p.name for p in (out / "tasks").iterdir()) == sorted(f"{n}.yaml" for n in t if n != "fair_clips_gender")
    report = (out / "report.md").read_text()
    assert "corpus seen in training: unknown" in report and "**skipped: needs labels and >= 2 gender" in report
    # a task file it wrote runs again on its own, to the same numbers
    again = run_eval("dummy", [str(out / "tasks" / "zs_clips.yaml")], tmp_path / "again",
                     backend=DummyBackend(p=1.0), bootstrap=20, progress=False)
    assert again["tasks"]["zs_clips"]["metrics"] == pytest.approx(t["zs_clips"]["metrics"])


def test_report_marks_the_corpus_unseen_unless_the_recipe_trained_on_it(corpus, tmp_path):
    class Trained(DummyBackend):
        def __init__(self, corpora):
            super().__init__(p=1.0)
            self.corpora = corpora

        def info(self):
            return {**super().info(), "recipe": {"data": {"corpora": self.corpora}}}

    other = tmp_path / "train_only.jsonl"                 # a different training manifest with rows of 'clips'
    other.write_text("".join(line + "\n" for line in (corpus / "clips.jsonl").read_text().splitlines()[:3]))
    cases = {"unseen": (["goemotions", "meld"], False), "same manifest": ([str(corpus / "clips.jsonl")], True),
             "corpus inside a manifest": ([str(other)], True), "by name": (["clips"], True)}
    for name, (corpora, seen) in cases.items():
        tasks, _ = manifest_tasks(corpus / "clips.jsonl", corpus / "labels.yaml", tmp_path / name, ("zero_shot",))
        s = run_eval("dummy", tasks, tmp_path / name, backend=Trained(corpora), bootstrap=20, progress=False)
        zs = s["tasks"]["zs_clips"]
        assert zs["data"]["seen_in_training"] is seen, name
        assert zs["tables"]["leave_one_out"]["held_out"] is (not seen), name
        report = (tmp_path / name / "report.md").read_text()
        assert ("**no, unseen** (zero-shot transfer" in report) is (not seen), name
        assert ("| zs_clips (unseen corpus) |" in report) is (not seen), name
        section = "### Transfer (corpora the model never saw" if not seen else "### In-domain (the model's recipe"
        head = report.split("## zs_clips")[0]
        assert section in head and head.index(section) < head.index("| zs_clips"), name


def _task_yaml(folder: Path, **dataset) -> Path:
    path = folder / "zs_my_faces.yaml"
    path.write_text(yaml.safe_dump({"task": "zs_my_faces", "include": str(evals_dir() / "zero_shot" / "_zero_shot.yaml"),
                                    "dataset": dataset, "metric_list": [{"metric": "closed_set"}],
                                    "metadata": {"version": 1}}))
    return path


def test_a_task_yaml_takes_a_manifest_dataset_with_paths_relative_to_it(corpus, tmp_path):
    path = _task_yaml(corpus, manifest="faces.jsonl", label_set="labels.yaml")
    task = build_task(load_yaml(path), path)
    assert task.dataset["manifest"] == str(corpus / "faces.jsonl") and task.dataset["split"] == "all"
    assert task.metric_list[0].options["label_set"] == str(corpus / "labels.yaml")
    s = run_eval("dummy", [str(path)], tmp_path / "o", backend=DummyBackend(p=1.0), bootstrap=20, progress=False)
    t = s["tasks"]["zs_my_faces"]
    assert t["n_records"] == 12 and t["metrics"]["closed_set.accuracy"] == 1.0 and t["data"]["corpus"] == "faces"
    recs = rows(tmp_path / "o" / "zs_my_faces" / "samples.jsonl")
    assert sorted(r["gold"]["label"] for r in recs) == ["angry"] * 3 + ["happy"] * 3 + ["neutral"] * 3 + ["sad"] * 3
    assert all(r["input"]["modalities"] == ["image"] for r in recs)
    with pytest.raises(ConfigError, match="manifest not found"):
        build_task(load_yaml(_task_yaml(tmp_path, manifest="nope.jsonl")), tmp_path / "zs_my_faces.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: [happy, HAPPY]\n")
    (tmp_path / "faces.jsonl").write_text((corpus / "faces.jsonl").read_text())
    with pytest.raises(ConfigError, match="bad.yaml: label 'happy'.*collides"):
        build_task(load_yaml(_task_yaml(tmp_path, manifest="faces.jsonl", label_set="bad.yaml")),
                   tmp_path / "zs_my_faces.yaml")
    cal = load_yaml(_task_yaml(tmp_path, manifest="faces.jsonl", label_set=str(corpus / "labels.yaml")))
    cal.update(suite="calibration", options={"fit_split": "dev"})
    with pytest.raises(ConfigError, match="options.fit_split needs dataset.split"):
        build_task(cal, tmp_path / "zs_my_faces.yaml")


def test_predict_on_tiny_resumes_and_feeds_score_with_the_eval_numbers(corpus, tiny, tmp_path, capsys):
    """In process on `tiny`: 8 test clips predicted (then 3 lost rows regenerated), scored by `affectllm score`,
    and equal, sample by sample and in accuracy, to the zero-shot eval of the same manifest."""
    from affectllm.evaluation.predict import predict

    preds = tmp_path / "preds.jsonl"
    kw = dict(split="test", with_confidence=False, max_new_tokens=48, progress=False)
    first = predict(corpus / "clips.jsonl", preds, backend=HFBackend(tiny, batch_size=1), **kw)
    assert first == {"rows": 8, "generated": 8, "resumed": 0, "errors": 0, "output": str(preds)}
    got = rows(preds)
    assert [r["id"] for r in got] == [s.id for s in read_manifest(corpus / "clips.jsonl", root=corpus)
                                      if s.split == "test"]
    assert all(r["modalities"] == ["audio", "text"] and r["prompt_id"] == "emotion_ov@2" for r in got)
    preds.write_text("".join(json.dumps(r) + "\n" for r in got[:5]))             # an interrupted run
    again = predict(corpus / "clips.jsonl", preds, backend=HFBackend(tiny, batch_size=1), **kw)
    assert (again["generated"], again["resumed"], again["rows"]) == (3, 5, 8)
    assert [r["raw"] for r in rows(preds)] == [r["raw"] for r in got]
    with pytest.raises(Exception, match="holds results of a different run"):
        predict(corpus / "clips.jsonl", preds, backend=HFBackend(tiny, batch_size=1), **{**kw, "max_new_tokens": 9})

    capsys.readouterr()
    assert main(["score", "--gold", str(corpus / "clips.jsonl"), "--pred", str(preds), "--metric", "closed_set",
                 "--label-set", str(corpus / "labels.yaml"), "--json"]) == 2          # gold has 32 ids, pred 8
    assert "24 gold name(s) missing" in capsys.readouterr().err
    gold = tmp_path / "gold_test.jsonl"
    gold.write_text("".join(line + "\n" for line in (corpus / "clips.jsonl").read_text().splitlines()
                            if json.loads(line)["split"] == "test"))
    assert main(["score", "--gold", str(gold), "--pred", str(preds), "--metric", "closed_set", "--label-set",
                 str(corpus / "labels.yaml"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    mapper = LabelMapper(str(corpus / "labels.yaml"))
    by_id = {s.id: s.label for s in read_manifest(gold, root=corpus)}
    hand = [((mapper.map_labels(r["labels"]) or ["<unmapped>"])[0] == by_id[r["id"]]) for r in rows(preds)]
    assert scored["n_samples"] == 8 and scored["accuracy"] == pytest.approx(sum(hand) / 8)
    assert scored["unmapped_rate"] == pytest.approx(sum(not mapper.map_labels(r["labels"]) for r in rows(preds)) / 8)

    tasks, _ = manifest_tasks(corpus / "clips.jsonl", corpus / "labels.yaml", tmp_path / "eval",
                              ("zero_shot", "calibration"))
    s = run_eval(tiny, tasks, tmp_path / "eval", backend=HFBackend(tiny, batch_size=1), bootstrap=20, progress=False)
    zs, cal = s["tasks"]["zs_clips"], s["tasks"]["calib_clips"]
    assert (zs["n_records"], cal["n_records"], cal["metrics"]["n_fit"]) == (8, 16, 8.0)
    assert zs["metrics"]["closed_set.accuracy"] == pytest.approx(scored["accuracy"])
    eval_raw = {r["sample_id"]: r["raw"] for r in rows(tmp_path / "eval" / "zs_clips" / "samples.jsonl")}
    assert eval_raw == {r["id"]: r["raw"] for r in rows(preds)}                 # one answer path, not two
    assert 0.0 <= cal["metrics"]["logprob_coverage"] <= 1.0 and "verbal_coverage" in cal["metrics"]


@pytest.mark.parametrize("data, expected", [
    ({"corpora": ["goemotions"], "mixture": [{"corpus": "ckplus"}, {"corpus": "ravdess"}, {"corpus": "ckplus"}]},
     ["ckplus", "ravdess"]),                                        # a mixture replaces the data.corpora default
    ({"corpora": ["meld", "goemotions"]}, ["meld", "goemotions"]),
    ({}, None)])
def test_trained_on_reads_the_mixture_of_a_recipe(data, expected):
    from types import SimpleNamespace

    from affectllm.evaluation.suites.zero_shot import corpus_seen, trained_on

    ctx = SimpleNamespace(backend_info={"recipe": {"data": data}})
    assert trained_on(ctx) == expected
    if expected:
        assert corpus_seen(ctx, {"corpus": expected[0]}) is True
        assert corpus_seen(ctx, {"corpus": "goemotions"}) is ("goemotions" in expected)
