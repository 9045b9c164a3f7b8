"""`affectllm demo` end to end on `tiny` (the mini run is measured in the README): it fine-tunes on real GoEmotions,
serves the artifact through the gateway, evaluates the `demo` group over HTTP, writes the report and prints a chat
example; a second run reuses the artifact and the finished eval rows instead of redoing them."""
from __future__ import annotations

import json

import pytest

from conftest import DATA


def test_demo_group_lists_the_five_promised_families():
    from affectllm.evaluation.tasks import load_catalog

    cat = load_catalog()
    entries = dict(cat.groups["demo"].entries)
    assert set(entries) == {"ov", "zero_shot", "ps_meld", "hallucination", "calibration"}
    assert all(limit and limit <= 6 for limit in entries.values())


def test_demo_on_tiny_trains_serves_evaluates_and_reuses(tmp_path, capsys):
    if not (DATA / "text" / "goemotions").is_dir():
        pytest.skip(f"real data not available: {DATA}")
    pytest.importorskip("openai")
    from affectllm.demo import SERVED_NAME, run_demo

    out = tmp_path / "demo"
    first = run_demo(out, backend="hf", limit=1, base="tiny", train_steps=2, progress=False)
    printed = capsys.readouterr().out
    final = out / "sft_lora" / "final"
    assert first["artifact"] == str(final) and (final / "adapter" / "adapter_config.json").is_file()
    assert len((out / "sft_lora" / "metrics.jsonl").read_text().splitlines()) == 2
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert summary["model"]["backend"] == "openai" and summary["model"]["model_id"] == SERVED_NAME
    ran = {n for n, t in summary["tasks"].items() if t["status"] == "ok"}
    assert {"ov_ravdess", "zs_goemotions", "ps_meld", "calib_meld"} <= ran
    assert summary["trained_on"], "the served artifact's recipe is recorded"
    report = (out / "eval" / "report.md").read_text()
    assert "ps_meld" in report and ".png" in report
    assert "explanation:" in printed and "report:" in printed and "step 5/5" in printed
    assert json.loads((out / "example.json").read_text())["raw"] == first["example"]["raw"]

    rows_before = {p: p.stat().st_mtime_ns for p in (out / "eval").glob("*/samples.jsonl")}
    ckpt_time = (final / "config.json").stat().st_mtime_ns
    second = run_demo(out, backend="hf", limit=1, base="tiny", train_steps=2, progress=False)
    printed = capsys.readouterr().out
    assert "reusing the fine-tuned artifact" in printed
    assert (final / "config.json").stat().st_mtime_ns == ckpt_time
    assert len((out / "sft_lora" / "metrics.jsonl").read_text().splitlines()) == 2
    assert {p: p.stat().st_mtime_ns for p in rows_before} == rows_before  # no eval row generated again
    assert second["example"]["raw"] == first["example"]["raw"]  # greedy, same artifact


def test_demo_without_the_data_kit_says_so_and_still_serves_and_chats(tmp_path, capsys):
    pytest.importorskip("openai")
    from affectllm.demo import run_demo

    out = run_demo(tmp_path / "demo", data_root=tmp_path / "no-data", backend="hf", base="tiny", progress=False)
    printed = capsys.readouterr().out
    assert "absent: nothing real to train or evaluate on" in printed and "skipping fine-tuning" in printed
    assert out["artifact"] == "tiny" and out["example"]["input"] == {"text": "I waited two hours and nobody even "
                                                                            "called to say they were late."}
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
