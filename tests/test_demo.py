"""`affectllm demo` end to end on `tiny` (the mini run is measured in the README): by default it serves the shipped
trained default, chats on a real text, speech clip, face and video with the gold label and the model's probability
of its label beside each, evaluates the `demo` group over HTTP and writes the report; `--train` fine-tunes on real
GoEmotions first, and a second run reuses the artifact and the finished eval rows instead of redoing them."""
from __future__ import annotations

import json

import pytest

from conftest import DATA, REPO


def test_demo_group_covers_every_modality_with_readable_cis():
    from affectllm.evaluation.tasks import load_catalog

    cat = load_catalog()
    entries = dict(cat.groups["demo"].entries)
    assert {"rec_ravdess", "rec_ckplus", "rec_meld_dev_all", "rec_goemotions_dev_random", "ov_mer2023",
            "ps_meld_order", "hall_absent_text"} == set(entries)
    # n >= 50 per task (>= 100 for recognition), except OV-MERD, whose 6 labelled clips are all the kit has
    assert all(limit >= 50 for name, limit in entries.items() if name != "ov_mer2023")
    assert all(entries[t] >= 100 for t in ("rec_ravdess", "rec_ckplus", "rec_meld_dev_all", "rec_goemotions_dev_random"))


def test_demo_on_tiny_trains_serves_evaluates_and_reuses(tmp_path, capsys):
    if not (DATA / "text" / "goemotions").is_dir():
        pytest.skip(f"real data not available: {DATA}")
    pytest.importorskip("openai")
    from affectllm.demo import SERVED_NAME, run_demo

    out = tmp_path / "demo"
    first = run_demo(out, backend="hf", limit=1, base="tiny", train_steps=2, progress=False, train=True)
    printed = capsys.readouterr().out
    final = out / "sft_lora" / "final"
    assert first["artifact"] == str(final) and (final / "adapter" / "adapter_config.json").is_file()
    assert len((out / "sft_lora" / "metrics.jsonl").read_text().splitlines()) == 2
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert summary["model"]["backend"] == "openai" and summary["model"]["model_id"] == SERVED_NAME
    ran = {n for n, t in summary["tasks"].items() if t["status"] == "ok"}
    assert {"rec_ravdess", "rec_goemotions_dev_random", "ps_meld_order", "hall_absent_text"} <= ran
    assert summary["trained_on"], "the served artifact's recipe is recorded"
    report = (out / "eval" / "report.md").read_text()
    assert "ps_meld_order" in report and ".png" in report
    assert "explanation:" in printed and "report:" in printed and "step 5/5" in printed
    assert json.loads((out / "examples.json").read_text()) == first["examples"]

    rows_before = {p: p.stat().st_mtime_ns for p in (out / "eval").glob("*/samples.jsonl")}
    ckpt_time = (final / "config.json").stat().st_mtime_ns
    second = run_demo(out, backend="hf", limit=1, base="tiny", train_steps=2, progress=False, train=True)
    printed = capsys.readouterr().out
    assert "reusing the fine-tuned artifact" in printed
    assert (final / "config.json").stat().st_mtime_ns == ckpt_time
    assert len((out / "sft_lora" / "metrics.jsonl").read_text().splitlines()) == 2
    assert {p: p.stat().st_mtime_ns for p in rows_before} == rows_before  # no eval row generated again
    assert [e["raw"] for e in second["examples"]] == [e["raw"] for e in first["examples"]]  # greedy, same model


def test_demo_without_the_data_kit_says_so_and_still_serves_and_chats(tmp_path, capsys):
    pytest.importorskip("openai")
    from affectllm.demo import run_demo

    out = run_demo(tmp_path / "demo", data_root=tmp_path / "no-data", backend="hf", base="tiny", progress=False,
                   model="tiny")
    printed = capsys.readouterr().out
    assert "absent: nothing real to train or evaluate on" in printed
    assert out["artifact"] == "tiny" and [e["input"] for e in out["examples"]] == [
        {"text": "I waited two hours and nobody even called to say they were late."}]
    assert any("speech example" in s for s in out["skipped"]) and any("video example" in s for s in out["skipped"])
    assert "skipped:" in printed and "eval task rec_ravdess (skipped" in printed
    summary = json.loads((tmp_path / "demo" / "eval" / "summary.json").read_text())
    assert summary["tasks"] and all(t["status"].startswith("skipped") for t in summary["tasks"].values())
    assert (tmp_path / "demo" / "eval" / "report.md").is_file()


def test_demo_falls_back_to_transformers_serving_without_vllm_and_says_why(tmp_path, monkeypatch):
    from affectllm.demo import plan
    from affectllm.errors import ConfigError

    monkeypatch.setenv("AFFECTLLM_VLLM_PYTHON", str(tmp_path / "no-vllm" / "python"))
    p = plan(tmp_path / "out", tmp_path, None)
    assert p.backend == "hf" and "vLLM is not installed" in p.why_backend and not p.has_text_data
    with pytest.raises(ConfigError, match="no vLLM environment"):
        plan(tmp_path / "out", tmp_path, "vllm")


def test_demo_serves_the_shipped_default_and_chats_on_every_modality(tmp_path, capsys, monkeypatch):
    """No --model, no --train: the shipped default (here a tiny artifact shipped as `mini-affect`) is served with its
    LoRA merged; one real input per modality is answered with the gold label and p(first label) beside it."""
    for part in (("text", "meld"), ("speech", "ravdess"), ("face", "ckplus48"), ("av", "mer2023")):
        if not DATA.joinpath(*part).is_dir():
            pytest.skip(f"real data not available: {DATA.joinpath(*part)}")
    pytest.importorskip("openai")
    from serve_helpers import make_lora_artifact

    from affectllm.demo import run_demo
    from affectllm.shipped import DEFAULT_MODEL, ENV_ROOT, ship

    root = tmp_path / "shipped"
    monkeypatch.setenv(ENV_ROOT, str(root))
    ship(make_lora_artifact(tmp_path / "artifact"), DEFAULT_MODEL, root)
    out = run_demo(tmp_path / "demo", backend="hf", limit=1, base="tiny", progress=False)
    printed = capsys.readouterr().out
    assert out["artifact"] == DEFAULT_MODEL and "shipped with the package, sha256-checked" in printed
    assert [e["kind"] for e in out["examples"]] == ["text", "speech", "face", "video"]
    assert all(e["gold"] for e in out["examples"]) and out["skipped"] == []
    assert out["examples"][1]["source"].startswith("speech/ravdess/") and "(gold: " in printed
    probs = [e["label_probability"] for e in out["examples"] if e["labels"]]
    assert all(p is None or 0.0 < p <= 1.0 for p in probs) and "p(first label) = " in printed
    summary = json.loads((tmp_path / "demo" / "eval" / "summary.json").read_text())
    assert summary["model"]["model_id"] == DEFAULT_MODEL
    assert {n for n, t in summary["tasks"].items() if t["status"] == "ok"} >= {"rec_ravdess", "rec_ckplus", "ov_mer2023"}
    assert "rec_ravdess" in printed and "closed_set.uar" in printed


@pytest.mark.parametrize("env, expected", [({"AFFECTLLM_DATA": "/elsewhere/data"}, "/elsewhere/data"),
                                           ({}, str(REPO.parent / "shared" / "data"))])
def test_make_demo_reads_the_data_kit_where_affectllm_data_points(env, expected):
    """`make demo` once ignored AFFECTLLM_DATA and looked in ../shared/data only (measured from a clean clone)."""
    import os
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    clean = {k: v for k, v in os.environ.items() if k != "AFFECTLLM_DATA"}
    out = subprocess.run(["make", "-n", "demo"], cwd=REPO, env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout
    assert f'bash scripts/demo.sh "{expected}"' in out
    script = subprocess.run(["bash", "-c", 'set -- ; source <(sed -n "/^data=/p" scripts/demo.sh); echo "$data"'],
                            cwd=REPO, env={**clean, **env}, capture_output=True, text=True, check=True).stdout
    assert script.strip() == env.get("AFFECTLLM_DATA", "../shared/data")
