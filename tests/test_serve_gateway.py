"""The gateway on `tiny` with the in-process transformers backend: parity with AffectPipeline for every modality,
streaming, logprobs, seed, stop, LoRA artifacts (static and loaded at runtime), tower batching, the official
openai client, our client and `affectllm chat --server`, and prompt 503 / 504 answers when the backend fails."""
from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serve_helpers import MEDIA, audio_part, image_part, make_lora_artifact, png_bytes, reference, wav_bytes

KEY = "test-key"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_lora_artifact(tmp_path_factory.mktemp("lora") / "lora_a")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, artifact):
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.server import start

    media = tmp_path_factory.mktemp("media")
    (media / "face.png").write_bytes(png_bytes(5))
    (media / "voice.wav").write_bytes(wav_bytes(1.1, 300.0))
    runtime = tmp_path_factory.mktemp("runtime_loras")
    make_lora_artifact(runtime / "lora_b", seed=2)
    cfg = ServeConfig(port=0, api_key=KEY, allow_dir=str(media), runtime_lora_dir=str(runtime))
    running = start("tiny", backend="hf", cfg=cfg, loras={"lora_a": str(artifact)})
    running.media_dir, running.runtime_dir = media, runtime
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def pipes(artifact):
    from affectllm.api import load
    from affectllm.artifact import load_artifact

    return {"tiny": load("tiny"), "lora_a": load_artifact(artifact)}


def ask(http, model: str, parts: list[dict], **kw) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": 12, "temperature": 0,
            "return_token_ids": True, **kw}
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("model", ["tiny", "lora_a"])
@pytest.mark.parametrize("kind", list(MEDIA))
def test_same_tokens_and_logprobs_as_pipeline(http, pipes, model, kind):
    parts = MEDIA[kind]()
    ref_tokens, ref_lps = reference(pipes[model], parts, 12)
    out = ask(http, model, parts, logprobs=True, top_logprobs=3)
    choice = out["choices"][0]
    assert choice["token_ids"] == ref_tokens
    got = [[t["logprob"] for t in e["top_logprobs"]] for e in choice["logprobs"]["content"]]
    assert len(got) == len(ref_lps)
    assert max(abs(a - b) for g, r in zip(got, ref_lps) for a, b in zip(g, r)) < 1e-5
    assert out["usage"]["completion_tokens"] == len(ref_tokens)


def test_lora_artifact_changes_the_answer(http):
    parts = MEDIA["image"]()
    assert ask(http, "tiny", parts)["choices"][0]["token_ids"] != ask(http, "lora_a", parts)["choices"][0]["token_ids"]


def test_stream_matches_non_stream(http):
    parts = MEDIA["audio"]()
    full = ask(http, "tiny", parts, logprobs=True)["choices"][0]
    text, finish, n_lp, usage = "", None, 0, None
    body = {"model": "tiny", "messages": [{"role": "user", "content": parts}], "max_tokens": 12, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}, "logprobs": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        lines = [ln for ln in resp.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    for ln in lines[:-1]:
        chunk = json.loads(ln[6:])
        assert chunk["object"] == "chat.completion.chunk"
        if chunk.get("usage"):
            usage = chunk["usage"]
            continue
        c = chunk["choices"][0]
        text += c["delta"].get("content") or ""
        finish = c["finish_reason"] or finish
        n_lp += len((c.get("logprobs") or {}).get("content") or [])
    assert text == full["message"]["content"] and finish == full["finish_reason"]
    assert n_lp == len(full["token_ids"]) and usage["completion_tokens"] == len(full["token_ids"])


def test_seed_temperature_and_stop(http):
    parts = [{"type": "text", "text": "tell me"}]
    a = ask(http, "lora_a", parts, temperature=1.0, seed=7, max_tokens=10)["choices"][0]["token_ids"]
    b = ask(http, "lora_a", parts, temperature=1.0, seed=7, max_tokens=10)["choices"][0]["token_ids"]
    assert a == b
    greedy = ask(http, "lora_a", parts, max_tokens=10)["choices"][0]["message"]["content"]
    stop = greedy[3:5]
    if stop:
        out = ask(http, "lora_a", parts, max_tokens=10, stop=[stop])["choices"][0]
        assert out["finish_reason"] == "stop" and stop not in out["message"]["content"]
        assert greedy.startswith(out["message"]["content"])


def test_json_schema_on_hf_backend(http):
    from affectllm.schema import answer_json_schema

    rf = {"type": "json_schema", "json_schema": {"name": "emotion", "schema": answer_json_schema()}}
    for fmt in (rf, {"type": "json_object"}):
        out = ask(http, "lora_a", MEDIA["text"](), max_tokens=40, response_format=fmt)["choices"][0]
        assert out["message"]["content"].strip().startswith("{"), out


def test_local_paths_inside_allow_dir(http, gateway, pipes):
    """A relative path and a file:// URL inside --allow-dir give the same answer as the same bytes inline."""
    inline = ask(http, "tiny", [image_part((gateway.media_dir / "face.png").read_bytes()),
                                audio_part((gateway.media_dir / "voice.wav").read_bytes())])
    by_path = ask(http, "tiny", [{"type": "image_url", "image_url": {"url": "face.png"}},
                                 {"type": "audio_url", "audio_url": {"url": (gateway.media_dir / "voice.wav").as_uri()}}])
    assert by_path["choices"][0]["token_ids"] == inline["choices"][0]["token_ids"]


def test_models_health_and_runtime_lora(http, gateway):
    assert http.get("/health").status_code == 200
    assert {m["id"] for m in http.get("/v1/models").json()["data"]} == {"tiny", "lora_a"}
    resp = http.post("/v1/load_lora_adapter", json={"lora_name": "lora_b", "lora_path": "lora_b"})
    assert resp.status_code == 200, resp.text
    assert "lora_b" in {m["id"] for m in http.get("/v1/models").json()["data"]}
    ask(http, "lora_b", MEDIA["image"]())
    assert http.post("/v1/unload_lora_adapter", json={"lora_name": "lora_b"}).status_code == 200
    assert http.post("/v1/chat/completions", json={"model": "lora_b", "messages": [
        {"role": "user", "content": "hi"}]}).status_code == 404


def test_tower_work_is_batched_and_batching_keeps_answers(http, gateway):
    parts = [[image_part(png_bytes(seed)), {"type": "text", "text": "hm"}] for seed in range(8)]
    single = [ask(http, "tiny", p, max_tokens=4)["choices"][0]["token_ids"] for p in parts]
    before = len(gateway.gateway.preparer.batches)
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: ask(http, "tiny", p, max_tokens=4)["choices"][0]["token_ids"], parts))
    assert together == single
    assert max(gateway.gateway.preparer.batches[before:]) > 1


def test_official_openai_client(gateway):
    import openai

    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    assert {m.id for m in client.models.list()} >= {"tiny", "lora_a"}
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [
        {"type": "text", "text": "hello"}, image_part()]}], max_tokens=5, temperature=0, logprobs=True, top_logprobs=2)
    assert out.choices[0].finish_reason in ("stop", "length") and len(out.choices[0].logprobs.content) == 5
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=5, temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0).choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="unknown content part type"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [{"type": "file"}]}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="wrong", max_retries=0).models.list()


def test_client_helper_and_cli_chat_server(gateway, pipes, capsys):
    from affectllm.cli import main
    from affectllm.serve.client import AffectClient

    image, audio = gateway.media_dir / "face.png", gateway.media_dir / "voice.wav"
    local = pipes["tiny"].chat(text="so happy", image=str(image), audio=str(audio), max_new_tokens=8)
    with AffectClient(gateway.url, api_key=KEY, model="tiny") as client:
        remote = client.chat(text="so happy", image=str(image), audio=str(audio), max_new_tokens=8)
        by_path = client.chat(text="so happy", image=str(image), audio=str(audio), max_new_tokens=8, send_paths=True)
    assert remote.raw == local.raw == by_path.raw and remote.prompt == local.prompt
    assert main(["chat", "--server", gateway.url, "--api-key", KEY, "--model", "tiny", "--text", "so happy",
                 "--image", str(image), "--audio", str(audio), "--max-new-tokens", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["raw"] == local.raw


# ---- failures of the backend itself -----------------------------------------------------------------------------
class _SlowBackend:
    async def complete(self, *a):
        await asyncio.sleep(30)

    async def health(self):
        return True, "slow"

    async def close(self):
        return None


_SPARE = []


def spare_registry():
    """Models for the extra apps below (each app sets its own limits on them; the main gateway keeps its own)."""
    from affectllm.serve.models import ModelRegistry

    if not _SPARE:
        _SPARE.append(ModelRegistry("tiny", backend="hf"))
    return _SPARE[0]


def _app(gateway, backend=None, **cfg):
    """A second app on the already loaded models, with its own limits (backend None: transformers in-process)."""
    from fastapi.testclient import TestClient

    from affectllm.serve.backends import HFBackend
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.gateway import Gateway, create_app

    gw = Gateway(spare_registry(), backend, ServeConfig(**cfg), max_model_len=4096)
    if backend is None:
        gw.backend, gw.preparer.need_embeds = HFBackend(gw.executor), True
    return TestClient(create_app(gw), raise_server_exceptions=False)


def _chat(parts):
    return {"model": "tiny", "messages": [{"role": "user", "content": parts}], "max_tokens": 3, "temperature": 0}


@pytest.mark.parametrize("limit, value, part, needle", [
    ("max_frames", 2, lambda: MEDIA["video"]()[0], "max_frames"),
    ("max_video_seconds", 0.5, lambda: MEDIA["video"]()[0], "max_video_seconds"),
    ("max_audio_seconds", 0.5, lambda: audio_part(), "max_audio_seconds"),
    ("max_pixels", 100, lambda: image_part(), "max_pixels"),
    ("max_media_bytes", 1000, lambda: audio_part(), "max_media_bytes"),
])
def test_media_limits_are_configurable(gateway, limit, value, part, needle):
    p = part()
    with _app(gateway) as client:
        assert client.post("/v1/chat/completions", json=_chat([p])).status_code == 200
    with _app(gateway, **{limit: value}) as client:
        resp = client.post("/v1/chat/completions", json=_chat([p]))
        assert 400 <= resp.status_code < 500 and needle in resp.json()["error"]["message"], resp.text


def test_remote_urls_only_when_enabled(gateway, tmp_path):
    import http.server
    import threading
    from functools import partial

    (tmp_path / "face.png").write_bytes(png_bytes(5))
    (tmp_path / "big.png").write_bytes(png_bytes(5) + b"\0" * 5000)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    part = lambda name: {"type": "image_url", "image_url": {"url": f"{url}/{name}"}}  # noqa: E731
    try:
        with _app(gateway) as client:
            resp = client.post("/v1/chat/completions", json=_chat([part("face.png")]))
            assert resp.status_code == 400 and "remote URLs are disabled" in resp.text
        with _app(gateway, allow_remote_urls=True, max_media_bytes=8000) as client:
            ok = client.post("/v1/chat/completions", json=_chat([part("face.png")]))
            inline = client.post("/v1/chat/completions", json={**_chat([image_part(png_bytes(5))]),
                                                                "return_token_ids": True})
            assert ok.status_code == 200, ok.text
            assert client.post("/v1/chat/completions", json=_chat([part("missing.png")])).status_code == 400
            assert client.post("/v1/chat/completions", json=_chat([part("big.png")])).status_code == 413
            assert inline.status_code == 200
    finally:
        srv.shutdown()


def test_client_stream(gateway):
    from affectllm.serve.client import AffectClient, GatewayError

    with AffectClient(gateway.url, api_key=KEY, model="tiny") as client:
        msgs = [{"role": "user", "content": "hello"}]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in client.stream(msgs, max_tokens=6,
                                                                                          temperature=0) if c["choices"])
        assert text == client.completion(msgs, max_tokens=6, temperature=0)["choices"][0]["message"]["content"]
        with pytest.raises(GatewayError, match="HTTP 404"):
            list(client.stream(msgs, model="nope"))


@pytest.mark.parametrize("alive", [lambda: "vLLM process exited with code -9", None])
def test_dead_vllm_gives_503_promptly(gateway, alive):
    from affectllm.serve.backends import VLLMBackend
    from affectllm.serve.launcher import free_port

    backend = VLLMBackend(f"http://127.0.0.1:{free_port()}", alive=alive, max_model_len=4096)
    with _app(gateway, backend) as client:
        t0 = time.perf_counter()
        resp = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [
            {"role": "user", "content": [image_part(), {"type": "text", "text": "hi"}]}]})
        assert resp.status_code == 503 and time.perf_counter() - t0 < 10
        assert resp.json()["error"]["code"] == "backend_unavailable"
        assert client.get("/health").status_code == 503


def test_request_timeout_gives_504(gateway):
    with _app(gateway, _SlowBackend(), request_timeout_s=0.5) as client:
        t0 = time.perf_counter()
        resp = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]})
        assert resp.status_code == 504 and resp.json()["error"]["type"] == "timeout_error"
        assert time.perf_counter() - t0 < 10
        assert client.get("/health").status_code == 200


def test_vllm_cpu_binds_every_core_of_a_small_machine(tmp_path, monkeypatch):
    """vLLM's auto binding keeps one core for its scheduler: on 2 cores the model got 1 thread (measured 1.85x
    slower). Small machines bind all their cores; a user's VLLM_CPU_OMP_THREADS_BIND is kept; big ones keep auto."""
    import os

    from affectllm.serve.launcher import VLLMServer

    server = VLLMServer(tmp_path / "llm", "m", workdir=tmp_path / "w", cache_root=tmp_path / "c")
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {1, 0})
    assert server.env()["VLLM_CPU_OMP_THREADS_BIND"] == "0,1"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)))
    assert "VLLM_CPU_OMP_THREADS_BIND" not in server.env()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "1")
    assert server.env()["VLLM_CPU_OMP_THREADS_BIND"] == "1"


def test_affect_score_matches_the_in_process_eval_backend(http, gateway, pipes):
    """`POST /v1/affect/score` (issue 12): the scored-candidate log-likelihoods of the eval's hf backend, for a
    LoRA entry too; bad candidates are a 400."""
    from affectllm.evaluation.backends import HFBackend, OpenAIBackend, Request

    parts = [{"type": "text", "text": "How does this sound: 'I won!'"}]
    cands = ['{"labels": ["joy"]', '{"labels": ["anger"]', '{"labels": ["neutral"]']
    for model in ("tiny", "lora_a"):
        resp = http.post("/v1/affect/score", json={"model": model, "messages": [{"role": "user", "content": parts}],
                                                   "candidates": cands})
        assert resp.status_code == 200, resp.text
        local = HFBackend(pipes[model]).score([Request(key="k", messages=[{"role": "user", "content": parts}],
                                                       candidates=cands)])[0].logliks
        assert resp.json()["logliks"] == pytest.approx(local, abs=1e-4)
        remote = OpenAIBackend(gateway.url, model=model, api_key=KEY).score(
            [Request(key="k", messages=[{"role": "user", "content": parts}], candidates=cands)])[0].logliks
        assert remote == pytest.approx(local, abs=1e-4)
    bad = http.post("/v1/affect/score", json={"model": "tiny", "messages": [{"role": "user", "content": parts}],
                                              "candidates": []})
    assert bad.status_code == 400 and "candidates" in bad.text


def test_merged_lora_serves_the_artifact_alone_with_the_same_scores(tmp_path):
    """`--merge-lora`: the artifact's LoRA folded into its LLM (in fp32) is served as the only model. It scores
    candidates and answers like the unmerged artifact, and refuses another LoRA on top of its merged weights."""
    from affectllm.artifact import load_artifact
    from affectllm.errors import ConfigError
    from affectllm.evaluation.backends import HFBackend, Request
    from affectllm.serve.models import ModelRegistry

    artifact = make_lora_artifact(tmp_path / "lora_m", seed=5)
    reg = ModelRegistry(str(artifact), backend="hf", merge_lora=True, main_name="merged")
    assert reg.merged and reg.names() == ["merged"] and reg.default == "merged"
    assert not hasattr(reg.base.pipe.model.language_model, "peft_config")
    assert reg.base.pipe.model.language_model.config._name_or_path == ""  # vLLM must not load the base's folder
    msgs = [{"role": "user", "content": [{"type": "text", "text": "How does this sound: 'I won!'"}]}]
    cands = ['{"labels": ["joy"]', '{"labels": ["anger"]', '{"labels": ["neutral"]']
    unmerged = load_artifact(artifact)
    want = HFBackend(unmerged).score([Request(key="k", messages=msgs, candidates=cands)])[0].logliks
    got = HFBackend(reg.base.pipe).score([Request(key="k", messages=msgs, candidates=cands)])[0].logliks
    assert got == pytest.approx(want, abs=1e-3)
    assert max(want) - min(want) > 1e-2  # the candidates differ, so equality above says something
    assert reg.base.pipe.chat(text="I won!", max_new_tokens=8).raw == unmerged.chat(text="I won!", max_new_tokens=8).raw
    with pytest.raises(ConfigError, match="merged"):
        reg.add_lora("other", artifact)


def test_first_label_probability_spans_exactly_the_label_tokens():
    import math

    from affectllm.serve.client import first_label_probability

    toks = [('{"', -0.01), ("labels", -0.02), ('":', -0.0), (' ["', -0.03), ("ang", math.log(0.5)), ("ry", math.log(0.8)),
            ('",', -0.4), (' "', -0.1), ("sad", -2.0), ('"]', -0.0)]
    assert first_label_probability(toks) == pytest.approx(0.4)
    assert first_label_probability([('{"', -0.1), ("labels", -0.1), ('": []}', -0.1)]) is None  # no label written
    assert first_label_probability([(' ["', 0.0), ("joy", -0.1)]) is None  # cut off before the closing quote


def test_chat_with_label_probability_through_the_gateway(gateway):
    from affectllm.serve.client import AffectClient

    with AffectClient(gateway.url, api_key=KEY) as client:
        res = client.chat(text="I won!", model="tiny", max_new_tokens=12, label_probability=True)
        plain = client.chat(text="I won!", model="tiny", max_new_tokens=12)
    assert res.raw == plain.raw and plain.label_probability is None
    if res.prediction.labels and '"]' in res.raw:
        assert 0.0 < res.label_probability <= 1.0
