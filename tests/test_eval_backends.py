"""Backends: eval messages equal `AffectPipeline.build_messages`; the dummy is deterministic with readable fake
logprobs; the transformers backend runs a task end to end on `tiny`; the OpenAI backend through the gateway gives
the same greedy answers as the in-process backend."""
from __future__ import annotations

import json

import numpy as np
import pytest

from affectllm.api import AffectPipeline
from affectllm.data import Sample
from affectllm.evaluation.backends import DummyBackend, HFBackend, Request, make_backend
from affectllm.evaluation.inputs import Item, build_messages
from affectllm.evaluation.metrics import renormalise_over_candidates
from affectllm.evaluation.runner import run_eval
from affectllm.evaluation.suites.calibration import label_token_index

from conftest import DATA, tone

SAMPLE = Sample(id="s1", corpus="synthetic", split="test", audio="a.wav", text="I can't believe it", label="anger",
                labels=["anger"], label_set="meld")


def test_messages_match_affect_pipeline():
    item = Item(key="k", sample=SAMPLE, prompt="emotion_closed",
                variables={"candidates": ["anger", "joy"], "with_confidence": True})
    messages, prompt_id, record = build_messages(item)
    ref, ref_id = AffectPipeline.build_messages(text=SAMPLE.text, audio="a.wav", prompt="emotion_closed",
                                                candidates=["anger", "joy"], with_confidence=True)
    assert messages == ref and prompt_id == ref_id == "emotion_closed@2"
    assert record["modalities"] == ["audio", "text"] and record["media"] == {"audio": "a.wav"}
    only_audio, _, rec = build_messages(Item(key="k", sample=SAMPLE, modalities=["audio"]))
    assert rec["modalities"] == ["audio"] and "I can't believe it" not in only_audio[0]["content"][-1]["text"]


def test_perturbations_are_seeded_and_recorded(tmp_path):
    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, tone(1.0), 16000)
    s = Sample(id="s2", corpus="synthetic", split="test", audio=str(wav), text="one two three four five six")
    noisy = [build_messages(Item(key="k", sample=s, perturb={"kind": "snr_db", "level": 0}), seed=0)[0][0]["content"][0]
             for _ in range(2)]
    a, b = noisy[0]["audio"], noisy[1]["audio"]
    assert isinstance(a, np.ndarray) and np.array_equal(a, b)
    clean = tone(1.0)
    snr = 10 * np.log10(np.mean(clean ** 2) / np.mean((a - clean) ** 2))
    assert abs(snr) < 0.5                                            # 0 dB: noise as loud as the signal
    _, _, rec = build_messages(Item(key="k", sample=s, perturb={"kind": "word_dropout", "level": 0.5}), seed=1)
    assert rec["perturbation"] == {"kind": "word_dropout", "level": 0.5, "seed": 1}
    assert 1 <= len(rec["text"].split()) < 6


def test_dummy_backend_is_deterministic_with_readable_logprobs():
    cands = ["anger", "joy", "sadness", "neutral"]
    req = Request(key="t/0/x", messages=[], top_logprobs=5,
                  oracle={"kind": "labels", "gold": ["joy"], "candidates": cands, "modalities": ["text"]})
    a, b = DummyBackend().generate([req])[0], DummyBackend().generate([req])[0]
    assert a.text == b.text and json.loads(a.text)["labels"][0] in cands
    label = json.loads(a.text)["labels"][0]
    j = label_token_index(a.tokens, label)
    probs, covered = renormalise_over_candidates([tuple(t) for t in a.tokens[j]["top"]], cands)
    assert cands[int(np.argmax(probs))] == label and covered == pytest.approx(1.0)
    right = sum(json.loads(r.text)["labels"] == ["joy"] for r in DummyBackend(p=0.7).generate(
        [Request(key=f"k{i}", messages=[], oracle=req.oracle) for i in range(400)]))
    assert 0.6 < right / 400 < 0.85                                 # p * 1 + wrong picks never hit gold
    letters = DummyBackend(p=1.0).generate([Request(key="q", messages=[], oracle={"kind": "letter", "gold": "C"})])
    assert letters[0].text == "C"
    with pytest.raises(Exception):
        make_backend("x", "vllm")


def test_hf_backend_on_tiny_runs_a_task_end_to_end(tiny, tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"real data not available: {DATA}")
    backend = HFBackend(tiny, batch_size=4)
    s = run_eval(tiny, ["zs_ckplus"], tmp_path, backend=backend, limit=2, bootstrap=20, progress=False)
    info = s["model"]
    assert info["backend"] == "hf" and len(info["hash"]) == 16 and "state_dict" in info["hash_kind"]
    t = s["tasks"]["zs_ckplus"]
    assert t["status"] == "ok" and t["n_records"] == 2 and (tmp_path / t["plots"][0]).is_file()
    rows = [json.loads(line) for line in (tmp_path / "zs_ckplus" / "samples.jsonl").open()]
    assert all(r["input"]["modalities"] == ["image"] and r["finish_reason"] in ("stop", "length") for r in rows)
    assert (tmp_path / "report.md").is_file()
    out = backend.generate([Request(key="k", messages=build_messages(Item(key="k", sample=SAMPLE, modalities=["text"]))[0],
                                    max_new_tokens=4, top_logprobs=3)])[0]
    assert len(out.tokens) <= 4 and all(len(t["top"]) == 3 for t in out.tokens)
    assert out.tokens[0]["top"][0][1] >= out.tokens[0]["top"][1][1]


@pytest.mark.slow        # ~25-60 s on the shared 2-core box (a second tiny inside the gateway); run with -m slow
def test_openai_backend_through_the_gateway_matches_the_hf_backend(tiny, tmp_path):
    if not DATA.is_dir():
        pytest.skip(f"real data not available: {DATA}")
    pytest.importorskip("openai")
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.server import start

    running = start("tiny", backend="hf", cfg=ServeConfig(port=0))
    try:
        remote = run_eval(running.url + "/v1", ["zs_meld", "rob_ckplus"], tmp_path / "remote", limit=2, bootstrap=20,
                          progress=False)
    finally:
        running.stop()
    local = run_eval(tiny, ["zs_meld", "rob_ckplus"], tmp_path / "local", backend=HFBackend(tiny, batch_size=1),
                     limit=2, bootstrap=20, progress=False)
    assert remote["model"]["backend"] == "openai" and remote["model"]["model_id"] == "tiny"
    for name in ("zs_meld", "rob_ckplus"):                          # rob_ckplus sends blurred / occluded arrays
        a = {r["key"]: r["raw"] for r in map(json.loads, (tmp_path / "remote" / name / "samples.jsonl").open())}
        b = {r["key"]: r["raw"] for r in map(json.loads, (tmp_path / "local" / name / "samples.jsonl").open())}
        assert a == b and len(a) >= 2
        assert remote["tasks"][name]["metrics"] == pytest.approx(local["tasks"][name]["metrics"], nan_ok=True)
