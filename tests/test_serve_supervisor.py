"""The supervised engine (issue 14, item 2) and the gateway's failure paths, against a real child process: the
real `VLLMServer` launcher, supervisor, gateway and HTTP backend run `tests/fake_vllm.py` in place of vLLM (only
`VLLMServer.command` is replaced), so every case below kills -9 a real process and finishes in seconds. The same
kill under real vLLM is test_serve_faults_vllm.py (slow)."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from serve_helpers import kill_under_load

FAKE = str(Path(__file__).with_name("fake_vllm.py"))


def _start_stack(tmp: Path, monkeypatch, **opts):
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.launcher import VLLMServer
    from affectllm.serve.server import VLLMOptions, start

    events = tmp / "events"
    events.mkdir(parents=True)
    monkeypatch.setenv("AFFECTLLM_VLLM_PYTHON", sys.executable)
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp / "cache"))
    monkeypatch.setattr(VLLMServer, "command",
                        lambda self: [sys.executable, FAKE, "--port", str(self.port), "--api-key", self.api_key])
    vllm = VLLMOptions(extra_env={"FAKE_VLLM_EVENTS": str(events), "FAKE_VLLM_FAIL": str(tmp / "fail")},
                       ready_timeout_s=30, **opts)
    running = start("tiny", backend="vllm", cfg=ServeConfig(port=0, request_timeout_s=30), vllm=vllm)
    return running, events


def _engine_pids(events: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in events.glob("start-*")]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait(cond, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - t0


def _state(running) -> str:
    return running.supervisor.state.value


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("supervised")
    running, events = _start_stack(tmp, mp, restart_backoff_s=0.2, max_restarts=3)
    try:
        yield running, events
    finally:
        running.stop()
        mp.undo()
        assert not [p for p in _engine_pids(events) if _alive(p)], "an engine process outlived the gateway"


def _chat(url: str, parts=None, timeout: float = 30, **kw) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=timeout, json={
        "model": "tiny", "messages": [{"role": "user", "content": parts or "hi"}], "max_tokens": 4, **kw})


def test_killed_engine_is_restarted_and_503_says_when_to_retry(stack):
    running, events = stack
    assert _chat(running.url).status_code == 200
    health = httpx.get(f"{running.url}/health").json()
    assert health["status"] == "ok" and health["engine"]["state"] == "ready"
    old = running.vllm.proc.pid
    os.kill(old, signal.SIGKILL)
    _wait(lambda: _state(running) == "restarting", 5, "the supervisor to notice")
    resp = _chat(running.url)
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["Retry-After"]) >= 1 and resp.json()["error"]["code"] == "backend_unavailable"
    assert "restarting" in resp.json()["error"]["message"]
    h = httpx.get(f"{running.url}/health")
    assert h.status_code == 503 and h.json()["status"] == "restarting" and "Retry-After" in h.headers
    back = _wait(lambda: _state(running) == "ready", 15, "the restart")
    assert _chat(running.url).status_code == 200
    assert running.vllm.proc.pid != old and not _alive(old)
    health = httpx.get(f"{running.url}/health").json()
    assert health["engine"]["restarts"] >= 1 and "-9" in health["engine"]["last_exit"]
    print(f"back {back:.1f} s after the supervisor noticed")


@pytest.mark.slow  # 10-20 s on 2 busy cores (the towers of 16 clients); the same under real vLLM: test_serve_faults_vllm
def test_kill_under_16_mixed_clients_no_500_no_hang(stack):
    running, _ = stack
    stats = kill_under_load(running, lambda: os.kill(running.vllm.proc.pid, signal.SIGKILL), timeout=20,
                            restart_timeout=20)
    print(stats)


def test_client_disconnect_mid_stream_frees_its_slot(stack):
    """The gateway counts the request done and aborts the upstream stream (vLLM's slot) when the client goes."""
    running, events = stack
    gw = running.gateway
    _wait(lambda: gw.in_flight == 0, 10, "idle")
    (events / "stream_delay").write_text("0.1")
    before = len(list(events.glob("aborted-*")))
    old_limit, gw.cfg.max_pending = gw.cfg.max_pending, 1
    try:
        with httpx.Client(timeout=30) as c:
            with c.stream("POST", f"{running.url}/v1/chat/completions", json={
                    "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200,
                    "stream": True}) as r:
                assert r.status_code == 200
                lines = r.iter_lines()  # kept: a dropped iterator closes the connection (a disconnect)
                assert next(lines).startswith("data: ")
                assert gw.in_flight == 1
                assert _chat(running.url).status_code == 429  # the one slot is taken
        _wait(lambda: gw.in_flight == 0, 5, "the slot to be freed")
        _wait(lambda: len(list(events.glob("aborted-*"))) > before, 5, "the upstream stream to be aborted")
        assert _chat(running.url).status_code == 200
    finally:
        gw.cfg.max_pending = old_limit
        (events / "stream_delay").unlink()


def test_crash_loop_gives_up_after_n_tries_with_one_clear_line(tmp_path, monkeypatch, caplog):
    running, events = _start_stack(tmp_path, monkeypatch, restart_backoff_s=0.05, max_restarts=3)
    try:
        (tmp_path / "fail").write_text("")  # from now on the engine exits at start
        with caplog.at_level(logging.INFO, logger="affectllm.serve"):
            os.kill(running.vllm.proc.pid, signal.SIGKILL)
            _wait(lambda: _state(running) == "failed", 15, "the supervisor to give up")
        assert len(_engine_pids(events)) == 1 + 3  # the first start, then three tries
        giving_up = [r for r in caplog.records if "giving up" in r.getMessage()]
        assert len(giving_up) == 1 and giving_up[0].levelno == logging.ERROR
        assert "3 restart tries in a row" in giving_up[0].getMessage()
        resp = _chat(running.url)
        assert resp.status_code == 503 and "Retry-After" not in resp.headers
        assert "gave up" in resp.json()["error"]["message"]
        h = httpx.get(f"{running.url}/health")
        assert h.status_code == 503 and h.json()["status"] == "failed" and h.json()["engine"]["tries"] == 3
    finally:
        running.stop()
    assert not [p for p in _engine_pids(events) if _alive(p)]


def test_stop_while_restarting_leaves_no_process(tmp_path, monkeypatch):
    running, events = _start_stack(tmp_path, monkeypatch, restart_backoff_s=0.3, max_restarts=3)
    os.kill(running.vllm.proc.pid, signal.SIGKILL)
    _wait(lambda: _state(running) == "restarting", 5, "the supervisor to notice")
    time.sleep(0.35)  # the new engine is starting now
    t0 = time.monotonic()
    running.stop()
    assert time.monotonic() - t0 < 15
    assert _state(running) == "stopped"
    time.sleep(0.5)
    assert not [p for p in _engine_pids(events) if _alive(p)], "an engine started during stop() survived it"
