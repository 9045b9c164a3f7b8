"""Scored candidates (issue 12): full-sequence log-likelihood per candidate answer, never a silent fallback."""
from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest

from affectllm.data import Sample
from affectllm.errors import ConfigError
from affectllm.evaluation.backends import HFBackend, Request, make_backend, shared_prefix_logliks
from affectllm.evaluation.inputs import Item, build_messages
from affectllm.evaluation.scored import attach_scores, candidate_answer, candidate_probs

SAMPLE = Sample(id="s1", corpus="synthetic", split="test", text="I can't believe it", label="anger",
                labels=["anger"], label_set="meld")
LABELS = ["anger", "joy", "neutral"]


def _built():
    item = Item(key="k", sample=SAMPLE, prompt="emotion_closed", modalities=["text"],
                variables={"candidates": LABELS}, oracle={"kind": "labels", "gold": ["anger"], "candidates": LABELS})
    messages, pid, rec = build_messages(item)
    return [(item, Request(key="t/0/k", messages=messages, oracle=item.oracle), pid, rec)]


def test_shared_prefix_and_probs():
    rows = [[("1", -1.0), ("2", -0.5)], [("1", -1.0), ("3", -2.0), ("4", -1.0)]]
    assert shared_prefix_logliks(rows) == [-0.5, -3.0]
    assert candidate_answer("sad") == '{"labels": ["sad'
    p = candidate_probs([-1.0, -1.0, -1e9])
    assert p == pytest.approx([0.5, 0.5, 0.0])


def test_hf_scores_match_one_row_at_a_time(tiny):
    backend = HFBackend(tiny, batch_size=4)
    messages = _built()[0][1].messages
    cands = [candidate_answer(c) for c in LABELS]
    together = backend.score([Request(key="k", messages=messages, candidates=cands)])[0].logliks
    alone = [backend.score([Request(key="k", messages=messages, candidates=[c])])[0].logliks[0] for c in cands]
    assert len(together) == 3 and np.all(np.isfinite(together)) and max(together) < 0
    assert together == pytest.approx(alone, abs=1e-3)


def _teacher_forced(pipe, messages, cands) -> list[float]:
    """Reference: prompt + candidate as one sequence per candidate, no EOS after it."""
    import torch

    batch = dict(pipe.processor([messages] * len(cands), targets=cands, end_targets=False))
    assert not (batch["labels"] == pipe.processor.tokenizer.eos_token_id).any()
    with torch.inference_mode():
        return pipe.model(**batch, return_token_logprobs=True)["token_logprobs"].float().sum(1).tolist()


@pytest.mark.parametrize("with_image", [False, True])
def test_shared_prompt_scoring_equals_teacher_forcing(tiny, with_image):
    """One prefill + cached continuations gives each candidate's full-sequence log-likelihood (media prompts too),
    and the candidate is an answer's beginning: no EOS is scored after it (that EOS cost ~17 nats per candidate
    on the trained text model and decided the argmax)."""
    from conftest import picture

    messages = _built()[0][1].messages
    if with_image:
        messages = [{"role": "user", "content": [{"type": "image", "image": picture()}] + messages[0]["content"]}]
    cands = [candidate_answer(c) for c in LABELS] + ['{"labels": ["joy", "anger"]']  # unequal lengths
    got = tiny.score_candidates(messages, cands)
    assert got == pytest.approx(_teacher_forced(tiny, messages, cands), abs=1e-4)
    assert len(set(got)) == len(cands)


def test_batched_scoring_equals_one_prompt_at_a_time(tiny):
    """Left-padded prompts of different lengths, with and without an image, different candidate counts."""
    from conftest import picture

    base = _built()[0][1].messages
    long = [{"role": "user", "content": [{"type": "text", "text": "A much longer prompt than the other one. " * 4}]
             + base[0]["content"]}]
    image = [{"role": "user", "content": [{"type": "image", "image": picture()}] + base[0]["content"]}]
    convs = [base, long, image]
    cands = [[candidate_answer(c) for c in LABELS], [candidate_answer("joy")],
             [candidate_answer(c) for c in LABELS[::-1]] + ['{"labels": ["joy", "anger']]
    together = tiny.score_candidates_batch(convs, cands, end='"')
    alone = [tiny.score_candidates(m, c, end='"') for m, c in zip(convs, cands)]
    assert [len(x) for x in together] == [3, 1, 4]
    for a, b in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-4)


def test_a_label_must_close_where_it_ends(tiny):
    """With end='"' the score adds log P(next token starts with a quote): the full-vocabulary mass, checked
    against a plain forward pass; "sad" and "sadness" are told apart by whether the string closes."""
    import torch

    messages = _built()[0][1].messages
    cands = [candidate_answer("joy"), candidate_answer("anger")]
    plain = tiny.score_candidates(messages, cands)
    ended = tiny.score_candidates(messages, cands, end='"')
    tok = tiny.processor.tokenizer
    quote = [i for i, p in enumerate(tok.convert_ids_to_tokens(list(range(len(tok))))) if p.startswith('"')]
    for c, base, got in zip(cands, plain, ended):
        batch = dict(tiny.processor([messages], targets=[c], end_targets=False))
        with torch.inference_mode():
            logits = tiny.model(**batch, logits_to_keep=1)["logits"][0, -1].float().log_softmax(-1)
        assert got == pytest.approx(base + float(torch.logsumexp(logits[quote], 0)), abs=1e-4)
        assert got < base


def test_end_mass_sums_the_listed_closing_tokens():
    from affectllm.serve.protocol import end_mass

    assert end_mass([('"]}', np.log(0.5)), ('"],', np.log(0.25)), ("al", np.log(0.2))], '"') == \
        pytest.approx(np.log(0.75))
    assert end_mass([("al", -0.1)], '"') == -50.0


class _Server(BaseHTTPRequestHandler):
    mode = "refuse"

    def log_message(self, *a):
        pass

    def _send(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "x"}]})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/affect/score"):          # plain vLLM: no affectllm route
            return self._send(404, {"detail": "Not Found"})
        if self.mode == "refuse":
            return self._send(400, {"error": {"message": "prompt_logprobs: extra inputs are not permitted",
                                              "type": "invalid_request_error"}})
        label = json.loads(req["messages"][-1]["content"] + '"]}')["labels"][0]
        lp = {"anger": -0.1, "joy": -2.0, "neutral": -3.0}[label]
        plp = [None, {"11": {"logprob": -1.0}}, {str(100 + len(label)): {"logprob": lp}}]
        # the next token's alternatives: a closing quote with probability 0.5 (two tokens), or a longer label
        top = [{"token": '"]}', "logprob": math.log(0.3), "bytes": None},
               {"token": '"],', "logprob": math.log(0.2), "bytes": None},
               {"token": "ness", "logprob": math.log(0.4), "bytes": None}]
        logprobs = {"content": [{"token": '"]}', "logprob": math.log(0.3), "bytes": None, "top_logprobs": top}]}
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "prompt_logprobs": plp,
                         "choices": [{"index": 0, "finish_reason": "length", "logprobs": logprobs,
                                      "message": {"role": "assistant", "content": "x"}}]})


@pytest.fixture(params=["refuse", "vllm"])
def server(request):
    handler = type("H", (_Server,), {"mode": request.param})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield request.param, f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_openai_scoring_or_a_clear_error_naming_the_task(server):
    pytest.importorskip("openai")
    mode, url = server
    backend = make_backend(url, concurrency=2)
    suite = SimpleNamespace(candidates=lambda task, s: LABELS)
    built = _built()
    responses = [SimpleNamespace(logliks=None, error=None)]
    if mode == "refuse":
        with pytest.raises(ConfigError, match="calib_meld.*prompt logprobs"):
            attach_scores(SimpleNamespace(name="calib_meld"), suite, backend, built, responses)
    else:
        attach_scores(SimpleNamespace(name="calib_meld"), suite, backend, built, responses)
        assert responses[0].logliks == pytest.approx(np.array([-0.1, -2.0, -3.0]) + math.log(0.5))


def test_recognition_option_scored_reports_the_argmax(tmp_path):
    from conftest import DATA

    if not DATA.is_dir():
        pytest.skip(f"real data not available: {DATA}")
    from affectllm.evaluation.backends import DummyBackend
    from affectllm.evaluation.runner import run_eval
    from affectllm.evaluation.tasks import evals_dir

    base = evals_dir() / "_base.yaml"
    (tmp_path / "t.yaml").write_text(
        f"task: rec_meld_scored\ninclude: {base}\nsuite: zero_shot\nprompt: {{name: emotion_closed}}\n"
        "dataset: {corpus: meld, split: dev, modalities: [text], stratify: label, limit: 70}\n"
        "options: {scored: true}\nmetric_list:\n  - {metric: closed_set, options: {label_set: meld}}\n"
        "metadata: {version: 1}\n")
    for mode, right in (("oracle", True), ("constant", False)):
        s = run_eval("dummy", [str(tmp_path / "t.yaml")], tmp_path / mode, backend=DummyBackend(p=0.9, mode=mode),
                     bootstrap=100, progress=False)
        m = s["tasks"]["rec_meld_scored"]["metrics"]
        assert m["scored.n"] == 70 and "scored.uar_ci_low" in m
        assert m["scored.ci_includes_chance"] == (0.0 if right else 1.0)


def test_candidates_without_a_shared_first_token(tiny):
    convs = [_built()[0][1].messages] * 2
    cands = [["joy", "anger"], ["neutral", "joy"]]
    together = tiny.score_candidates_batch(convs, cands, end='"')
    assert together[0] == pytest.approx(tiny.score_candidates(convs[0], cands[0], end='"'), abs=1e-4)
    assert together[1] == pytest.approx(tiny.score_candidates(convs[1], cands[1], end='"'), abs=1e-4)
