"""MODEL_CARD.md generation (affectllm.model_card): rows come from an eval summary with n and CIs, in-domain and
transfer rows are told apart, untuned and classical baselines sit beside each row, EmoBench's always-first
baseline is computed on the very samples the task ran, and the failure modes quote the probes' numbers."""
from __future__ import annotations

import json
import shutil

import pytest

from serve_helpers import make_lora_artifact

from conftest import REPO


def _task(suite, corpus, split, n, seen, metrics, headline):
    return {"suite": suite, "status": "ok", "data": {"corpus": corpus, "split": split, "n_samples": n,
                                                     "seen_in_training": seen},
            "metrics": metrics, "headline": headline}


def _ci(key, v, lo, hi):
    return {key: v, f"{key}_ci_low": lo, f"{key}_ci_high": hi}


def test_the_card_reports_every_row_with_n_ci_and_its_baselines(tmp_path, monkeypatch):
    from affectllm.model_card import main
    from affectllm.shipped import ENV_ROOT, ship

    artifact = make_lora_artifact(tmp_path / "artifact")
    shutil.copy(REPO / "recipes" / "affect_mix.yaml", artifact / "recipe.yaml")
    (artifact / "selection.json").write_text(json.dumps({"step": 750, "value": 0.61, "tasks": [
        {"task": "rec_ravdess_dev", "metric": "closed_set.uar", "value": 0.5}]}))
    root = tmp_path / "shipped"
    monkeypatch.setenv(ENV_ROOT, str(root))
    ship(artifact, "tiny-affect", root, source={"selection": json.loads((artifact / "selection.json").read_text())})

    ev = tmp_path / "eval"
    (ev / "emobench_eu").mkdir(parents=True)
    golds = ["a", "b", "a", "c"]  # always-first is right on 2 of 4
    (ev / "emobench_eu" / "samples.jsonl").write_text(
        "".join(json.dumps({"key": str(i), "gold": {"letter": g}}) + "\n" for i, g in enumerate(golds)))
    summary = {"run": {"command": "affectllm eval --model tiny-affect --tasks model_card"}, "tasks": {
        "rec_ravdess": _task("zero_shot", "ravdess", "test", 240, True,
                             {**_ci("closed_set.uar", 0.471, 0.41, 0.53), **_ci("closed_set.accuracy", 0.48, 0.42, 0.54)},
                             ["closed_set.uar", "closed_set.accuracy"]),
        "emobench_eu": _task("emobench", "emobench", "test", 4, False, _ci("closed_set.accuracy", 0.75, 0.25, 1.0),
                             ["closed_set.accuracy"]),
        "fair_ravdess_gender": _task("fairness", "ravdess", "test", 96, True,
                                     {**_ci("gap", 0.12, 0.02, 0.25), "gender=female.closed_set.accuracy": 0.41,
                                      "gender=male.closed_set.accuracy": 0.53}, ["gap"]),
        "hall_absent_text": _task("hallucination", "meld", "dev", 50, True,
                                  {**_ci("absent_ack_rate", 0.9, 0.8, 0.98), "describes_absent_rate": 0.04},
                                  ["absent_ack_rate"]),
        "ov_mer2023": {"status": "skipped: no data"}}}
    (ev / "summary.json").write_text(json.dumps(summary))
    untuned = tmp_path / "untuned"
    untuned.mkdir()
    (untuned / "summary.json").write_text(json.dumps({"run": {"command": "affectllm eval --model tiny"}, "tasks": {
        "rec_ravdess": _task("zero_shot", "ravdess", "test", 240, False, _ci("closed_set.uar", 0.125, 0.1, 0.15),
                             ["closed_set.uar"])}}))
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s, "step_s": 3.0, "loss": 4.0 - s}) + "\n" for s in (1, 2, 3)))
    out = tmp_path / "MODEL_CARD.md"
    assert main(["tiny-affect", "--eval", str(ev), "--untuned", str(untuned), "--train-log", str(log),
                 "--out", str(out), "--machine", "test CPU"]) == 0
    card = out.read_text()
    in_domain, transfer = card.split("### In-domain")[1].split("### Zero-shot transfer")
    assert "| `rec_ravdess` | ravdess / test | 240 | closed_set.uar | **0.471 [0.410, 0.530]** | 0.125 [0.100, 0.150]" \
        in in_domain
    assert "0.383 [0.325, 0.445] (n=240): prosody-tower statistics" in in_domain  # docs/results/baselines.json
    assert "emobench_eu" in transfer and "emobench_eu" not in in_domain
    assert "0.500 (same n): always the first choice" in transfer
    assert "`ov_mer2023` (skipped: no data)" in card
    assert "female 0.410, male 0.530; gap 0.120 [0.020, 0.250] (n=96" in card
    assert "says the modality is missing in 0.900 [0.800, 0.980]" in card and "describes the missing modality " \
                                                                               "anyway in 0.040" in card
    assert "step 750" in card and "3 steps in 0.00 h" in card and "loss 3.00 -> 1.00" in card
    assert "| **0.480 [0.420, 0.540]** | not run |" in in_domain  # the untuned run has no accuracy key
    assert "the preset `tiny`" in card and "CC BY-NC-SA 4.0" in card and "test CPU" in card
    assert "Out of scope" in card and "hiring" in card


def test_untuned_runs_of_separate_tasks_merge_and_a_task_in_two_runs_is_refused(tmp_path):
    from affectllm.model_card import _merged_summaries

    def run(name, command, tasks):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({"run": {"command": command},
                                                         "tasks": {t: {"status": "ok"} for t in tasks}}))
        return str(folder)

    a, b = run("a", "eval A", ["rec_ravdess"]), run("b", "eval B", ["ov_ovmerd_text"])
    merged = _merged_summaries([a, b])
    assert sorted(merged["tasks"]) == ["ov_ovmerd_text", "rec_ravdess"] and "eval A` and `eval B" in \
        merged["run"]["command"]
    with pytest.raises(ValueError, match="rec_ravdess"):
        _merged_summaries([a, run("c", "eval C", ["rec_ravdess"])])
    assert _merged_summaries(None) is None


def test_a_model_trained_in_stages_ships_and_describes_every_stage(tmp_path, monkeypatch):
    """A recipe that continued another artifact (model.base) ships the earlier recipes under stages/ (in the
    manifest, so sha256-checked), and the card lists each stage's data, schedule, wall time and machine."""
    import yaml

    from affectllm.model_card import main
    from affectllm.shipped import ENV_ROOT, MANIFEST, ship, shipped_path

    first = make_lora_artifact(tmp_path / "stage1")
    shutil.copy(REPO / "recipes" / "affect_mix.yaml", first / "recipe.yaml")
    second = make_lora_artifact(tmp_path / "stage2")
    recipe = yaml.safe_load((REPO / "recipes" / "affect_mix_stage2.yaml").read_text())
    recipe["model"]["base"] = str(first)
    (second / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    root = tmp_path / "shipped"
    monkeypatch.setenv(ENV_ROOT, str(root))
    ship(second, "two-stage", root)
    listed = json.loads((root / "two-stage" / MANIFEST).read_text())["files"]
    assert "stages/1-affect_mix.yaml" in listed and "recipe.yaml" in listed
    assert shipped_path("two-stage")  # verified, the stage file included
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "summary.json").write_text(json.dumps({"run": {"command": "affectllm eval"}, "tasks": {}}))
    out = tmp_path / "MODEL_CARD.md"
    assert main(["two-stage", "--eval", str(ev), "--wall-s", "4020", "900", "--machine", "Xeon A", "EPYC B",
                 "--out", str(out)]) == 0
    card = out.read_text()
    assert "recipes `affect_mix` then `affect_mix_stage2`" in card
    assert "### Stage 1: `affect_mix`" in card and "### Stage 2: `affect_mix_stage2` (continues stage 1)" in card
    assert ("`affectllm train recipes/affect_mix.yaml` then `affectllm train recipes/affect_mix_stage2.yaml`, then "
            "`python -m affectllm.shipped runs/affect_mix_stage2/best --name two-stage`") in card
    assert "stage 1 wall time including dev evaluations: 1.12 h" in card and "stage 1 machine: Xeon A" in card
    assert "stage 2 wall time including dev evaluations: 0.25 h" in card and "stage 2 machine: EPYC B" in card
    assert "scenario 1" in card.split("### Stage 2")[1]  # stage 2's own mixture
    (root / "two-stage" / "stages" / "1-affect_mix.yaml").write_text("name: changed\n")
    with pytest.raises(Exception, match="stages/1-affect_mix.yaml"):
        shipped_path("two-stage")


def _card_without_results(name: str, tmp_path) -> str:
    """The card of a shipped model from an eval run with no task rows (what the stage sections say is under test)."""
    from affectllm.model_card import main

    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "summary.json").write_text(json.dumps({"run": {"command": "affectllm eval"}, "tasks": {}}))
    out = tmp_path / "MODEL_CARD.md"
    assert main([name, "--eval", str(ev), "--out", str(out)]) == 0
    return out.read_text()


def test_an_interpolated_model_names_both_sources_and_its_weight(tmp_path, monkeypatch):
    """Stage `interpolate` has no data of its own: the card says what it blends, the weight chosen on dev, and the
    LoRA rank of the shipped adapter (the sum of the sources'), with both earlier stages shipped under stages/."""
    import yaml

    from affectllm.shipped import ENV_ROOT, MANIFEST, ship
    from affectllm.train.interpolate import write_interpolated

    first = make_lora_artifact(tmp_path / "stage1")
    shutil.copy(REPO / "recipes" / "affect_mix.yaml", first / "recipe.yaml")
    second = make_lora_artifact(tmp_path / "stage2", seed=2)
    recipe = yaml.safe_load((REPO / "recipes" / "affect_mix_stage2.yaml").read_text())
    recipe["model"]["base"] = str(first)
    (second / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    mixed = write_interpolated(first, second, 0.25, tmp_path / "mixed")
    recipe = yaml.safe_load((REPO / "recipes" / "affect_mix_interpolate.yaml").read_text())
    recipe["model"]["base"], recipe["interpolate"]["start"] = str(second), str(first)
    (mixed / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    root = tmp_path / "shipped"
    monkeypatch.setenv(ENV_ROOT, str(root))
    ship(mixed, "blend", root, {"selection": {"step": 1, "alpha": 0.25, "value": 0.6, "tasks": []}})
    listed = json.loads((root / "blend" / MANIFEST).read_text())["files"]
    assert {"stages/1-affect_mix.yaml", "stages/2-affect_mix_stage2.yaml"} <= set(listed)
    card = _card_without_results("blend", tmp_path)
    assert "### Stage 3: `affect_mix_interpolate` (continues stage 2)" in card
    assert "No data of its own" in card.split("### Stage 3")[1].split("##")[0]
    assert "LoRA r=16, alpha=32" in card  # 8 + 8, the first source's scaling 2 kept
    assert "checkpoint: interpolation weight a = 0.25" in card
    assert f"(1 - a) x `{first}` + a x `{second}`" in card and "no training step" in card


def test_a_bar_margin_selection_is_named_as_such(tmp_path, monkeypatch):
    """A run that chose by run.eval_bars is not described as choosing by the mean dev headline."""
    import yaml

    from affectllm.shipped import ENV_ROOT, ship

    artifact = make_lora_artifact(tmp_path / "artifact")
    recipe = yaml.safe_load((REPO / "recipes" / "affect_mix_interpolate_bars.yaml").read_text())
    (artifact / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    root = tmp_path / "shipped"
    monkeypatch.setenv(ENV_ROOT, str(root))
    ship(artifact, "barred", root, {"selection": {"step": 1, "alpha": 0.5, "value": -0.001, "tasks": []}})
    card = _card_without_results("barred", tmp_path)
    assert "mean dev headline" not in card
    assert "by the worst margin to the bars" in card and "checkpoint: interpolation weight a = 0.5, the best" in card
    assert "biased upwards" in card and "run group `bars_dev_heldout`" in card  # chosen on the reported dev rows
    from affectllm.model_card import main

    held = tmp_path / "heldout"
    held.mkdir()
    (held / "summary.json").write_text(json.dumps({"run": {"command": "affectllm eval --tasks bars_dev_heldout"},
                                                   "tasks": {"rec_meld_dev_heldout": {"status": "failed: x"}}}))
    out = tmp_path / "CARD2.md"
    assert main(["barred", "--eval", str(tmp_path / "eval"), str(held), "--out", str(out)]) == 0
    assert "`rec_meld_dev_heldout` score dev rows disjoint from them" in out.read_text()
    with pytest.raises(ValueError, match="already come from an earlier run"):
        main(["barred", "--eval", str(held), str(held), "--out", str(out)])


def test_train_facts_come_from_a_log_or_from_a_kept_facts_file(tmp_path):
    """A stage trained elsewhere keeps its facts in a .json (its metrics.jsonl stayed on that machine); a log gives the
    same three facts, summed from its steps."""
    from affectllm.model_card import _train_facts

    log = tmp_path / "metrics.jsonl"
    log.write_text("\n".join(json.dumps({"step": i, "step_s": 2.0, "loss": 5.0 - i}) for i in (1, 2, 3)) + "\n")
    assert _train_facts(log) == {"steps": 3, "train_s": 6.0, "loss_first_last": (4.0, 2.0)}
    kept = tmp_path / "facts.json"
    kept.write_text(json.dumps({"source": "elsewhere", "steps": 1000, "train_s": 3744, "loss_first_last": [4.16, 0.34]}))
    assert _train_facts(kept) == {"steps": 1000, "train_s": 3744, "loss_first_last": [4.16, 0.34]}
    assert _train_facts(tmp_path / "missing.jsonl") == {}
