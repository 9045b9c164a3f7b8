"""Keeps the engine (the vLLM process) serving under a gateway that outlives it.

A watcher thread polls the process. When it dies (a crash, the OOM killer, a `kill -9`), the supervisor kills
what is left of its process group at once (so every in-flight request fails fast with 503 instead of waiting on a
socket nobody serves), restarts it after an exponential backoff, and runs `on_ready` (warm-up, runtime LoRAs)
before it reports ready again. While it is down, `reason()` says why and `retry_after()` estimates when it will
be back, which the gateway sends as 503 + Retry-After. A crash loop stops after `max_restarts` tries in a row
(the count resets once the engine has stayed up `stable_s`), with one error line saying so.

The engine is duck-typed, as `VLLMServer` is: start(), wait_ready(timeout), alive() -> None | why, stop(),
log_tail(n). The thread that starts a process is its parent for PR_SET_PDEATHSIG, so the watcher lives as long as
the gateway does and stops the engine itself on close()."""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable

log = logging.getLogger("affectllm.serve")


class EngineState(str, Enum):
    READY = "ready"
    RESTARTING = "restarting"
    FAILED = "failed"  # gave up after max_restarts tries in a row
    STOPPED = "stopped"


@dataclass
class RestartPolicy:
    max_restarts: int = 5  # restart tries in a row (without `stable_s` of service between them) before giving up
    backoff_s: float = 1.0  # wait before try k: backoff_s * 2**(k-1), at most max_backoff_s
    max_backoff_s: float = 30.0
    stable_s: float = 60.0
    ready_timeout_s: float = 900.0
    poll_s: float = 0.25


class EngineSupervisor:
    def __init__(self, engine, policy: RestartPolicy | None = None, on_ready: Callable[[], None] | None = None,
                 start_s: float = 30.0):
        """`engine` is already started and ready; `start_s` (how long that took) seeds the Retry-After estimate."""
        self.engine, self.policy, self.on_ready = engine, policy or RestartPolicy(), on_ready
        self.state = EngineState.READY
        self.restarts = 0  # successful restarts over the gateway's life
        self.tries = 0  # restart tries since the engine was last stable
        self.last_exit: str | None = None
        self.start_s = start_s
        self._ready_since = time.monotonic()
        self._back_at: float | None = None  # estimated time the engine serves again (monotonic)
        self._closing = threading.Event()
        self._lock = threading.Lock()  # start/stop of the process vs close()
        self._thread = threading.Thread(target=self._watch, name="affectllm-engine-supervisor", daemon=True)
        self._thread.start()

    # ---- what the gateway asks ----------------------------------------------------------------------------------
    def reason(self) -> str | None:
        """None while the engine serves, else why it does not (for a 503's message)."""
        if self.state is EngineState.READY:
            return self.engine.alive()
        if self.state is EngineState.RESTARTING:
            return f"{self.last_exit}; restarting it (try {self.tries} of {self.policy.max_restarts})"
        if self.state is EngineState.FAILED:
            return f"{self.last_exit}; gave up after {self.policy.max_restarts} restart tries in a row"
        return "the engine is stopped"

    def retry_after(self) -> int | None:
        """Seconds until the engine should serve again (for Retry-After); None when it will not come back."""
        if self.state in (EngineState.FAILED, EngineState.STOPPED):
            return None
        back = self._back_at if self.state is EngineState.RESTARTING and self._back_at else \
            time.monotonic() + self.policy.backoff_s + self.start_s  # died, not yet noticed
        return max(1, math.ceil(back - time.monotonic()))

    def status(self) -> dict:
        return {"state": self.state.value, "restarts": self.restarts, "tries": self.tries,
                "max_restarts": self.policy.max_restarts, "last_exit": self.last_exit,
                "retry_after_s": self.retry_after() if self.state is EngineState.RESTARTING else None}

    # ---- the watcher --------------------------------------------------------------------------------------------
    def _watch(self) -> None:
        p = self.policy
        while not self._closing.is_set():
            if self.state is EngineState.READY:
                why = self.engine.alive()
                if why is None:
                    if self.tries and time.monotonic() - self._ready_since >= p.stable_s:
                        self.tries = 0
                    self._closing.wait(p.poll_s)
                    continue
                self.last_exit = why
                self.state = EngineState.RESTARTING
                log.error("%s; requests get 503 + Retry-After while it restarts. Log tail:\n%s", why,
                          self.engine.log_tail(10))
                self._stop_engine()  # what is left of its process group: in-flight requests fail now
            if not self._restart_once():
                return

    def _restart_once(self) -> bool:
        """One try after the backoff; False when the watcher should end (gave up, or closing)."""
        p = self.policy
        self.tries += 1
        if self.tries > p.max_restarts:
            self.tries = p.max_restarts
            self.state = EngineState.FAILED
            self._back_at = None
            log.error("the vLLM engine failed %d restart tries in a row (last: %s); giving up: every request gets "
                      "503 until the gateway is restarted", p.max_restarts, self.last_exit)
            return False
        delay = min(p.backoff_s * 2 ** (self.tries - 1), p.max_backoff_s)
        self._back_at = time.monotonic() + delay + self.start_s
        log.warning("restarting the vLLM engine in %.1f s (try %d of %d)", delay, self.tries, p.max_restarts)
        if self._closing.wait(delay):
            return False
        t0 = time.monotonic()
        try:
            with self._lock:
                if self._closing.is_set():
                    return False
                self.engine.start()
            self.engine.wait_ready(p.ready_timeout_s)
            if self.on_ready is not None:
                self.on_ready()
        except Exception as e:  # noqa: BLE001 - any failure to come up is one failed try
            if self._closing.is_set():
                return False
            self.last_exit = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.error("restart try %d of %d failed: %s", self.tries, p.max_restarts, self.last_exit)
            self._stop_engine()
            return True
        if self._closing.is_set():
            return False
        self.start_s = time.monotonic() - t0
        self.restarts += 1
        self._ready_since, self._back_at = time.monotonic(), None
        self.state = EngineState.READY
        log.warning("the vLLM engine is back after %.1f s (restart %d)", self.start_s, self.restarts)
        return True

    def _stop_engine(self) -> None:
        with self._lock:
            try:
                self.engine.stop(keep_workdir=True)
            except Exception:  # noqa: BLE001 - best effort; the next start gets a fresh process
                log.exception("stopping the dead engine failed")

    def close(self) -> None:
        """Stop watching and stop the engine (also one the watcher is starting right now)."""
        self._closing.set()
        with self._lock:
            self.state = EngineState.STOPPED
            self.engine.stop()
        self._thread.join(timeout=30)
