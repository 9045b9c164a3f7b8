"""One eval across several OpenAI-compatible servers (affectllm gateways or vLLM), for N GPUs' worth of throughput.

    affectllm eval --model http://gpu1:8000/v1,http://gpu2:8000/v1 --tasks default
    affectllm eval --model @endpoints.txt --per-server-concurrency 16 --tasks default

Why a shared queue rather than a fixed split: requests are independent, so each server pulls the next one as soon
as it has a free slot (at most ``per_server`` in flight, so every server batches but none is flooded) and a fast
server is never left idle behind a slow one. A server that fails (connection refused, HTTP 5xx/429, timeout) puts
its request back at the head of the queue, where the other servers pick it up, and is retried after a back-off with
one probe at a time; ``max_strikes`` failures in a row mark it down for the rest of the run (one log line). Answers
land at their request's index, so the rows (stored in sample order by the runner) are the same, byte for byte, as a
one-server run's. When every server is down, `AllServersDown` names them; rows stored so far stay on disk and
re-running the same command resumes.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import AffectError, ConfigError
from .backends import Backend, OpenAIBackend, Request, Response, ServerUnavailable

log = logging.getLogger("affectllm.eval")


class AllServersDown(AffectError):
    """Every endpoint of a sharded eval is down; the rows already stored are kept (re-run to resume)."""


# ---- endpoint lists ------------------------------------------------------------------------------------------------
def is_endpoint_list(model: object) -> bool:
    """`--model` names several servers: ``@file`` or comma-separated http(s) URLs."""
    return isinstance(model, str) and (model.startswith("@") or (
        model.startswith(("http://", "https://")) and "," in model))


def check_endpoint(text: str, where: str = "--model") -> str:
    """One endpoint as the OpenAI client wants it (``.../v1``, no trailing slash), or a ConfigError naming it."""
    url = text.strip()
    try:
        parts = urlsplit(url)
        parts.port                                  # raises on a port that is not a number
    except ValueError as e:
        raise ConfigError(f"{where}: malformed endpoint {text!r} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment or " " in url:
        raise ConfigError(f"{where}: malformed endpoint {text!r}; expected http(s)://HOST:PORT[/v1]")
    base = url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def parse_endpoints(spec: str) -> list[str]:
    """``URL1,URL2,...`` or ``@file`` (one endpoint a line; blank lines and ``#`` comments ignored) -> URLs."""
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        if not path.is_file():
            raise ConfigError(f"--model {spec}: endpoint file {path} not found")
        entries = [(line.split("#", 1)[0].strip(), f"{path}:{n}")
                   for n, line in enumerate(path.read_text().splitlines(), 1)]
    else:
        entries = [(x.strip(), "--model") for x in spec.split(",")]
    urls = [check_endpoint(text, where) for text, where in entries if text]
    if not urls:
        raise ConfigError(f"--model {spec}: no endpoints given")
    dup = sorted({u for u in urls if urls.count(u) > 1})
    if dup:
        raise ConfigError(f"--model {spec}: endpoint listed twice: {', '.join(dup)}")
    return urls


# ---- one server's state ----------------------------------------------------------------------------------------------
@dataclass
class Server:
    backend: OpenAIBackend
    answered: int = 0          # requests this server answered in this run
    inflight: int = 0
    strikes: int = 0           # failures in a row (reset by an answer)
    fail_seq: int = 0          # counted failures so far: a failure of a request sent before the last one is not new
    retry_at: float = 0.0      # monotonic time before which this server gets no work (back-off)
    down: bool = False
    checked: bool = False      # it answered /v1/models with the run's model
    last_error: str = ""

    @property
    def url(self) -> str:
        return self.backend.url


class ShardedBackend(Backend):
    """The ``openai`` backend over several servers serving the same model (checked at start)."""

    name = "openai"

    def __init__(self, urls: list[str], model: str | None = None, api_key: str | None = None, per_server: int = 8,
                 send_paths: bool = False, timeout: float = 600.0, batch_size: int | None = None,
                 checkpoint: str | None = None, max_strikes: int = 3, backoff_s: float = 1.0):
        if not urls:
            raise ConfigError("a sharded eval needs at least one endpoint")
        if per_server < 1 or max_strikes < 1:
            raise ConfigError("--per-server-concurrency and max_strikes must be >= 1")
        self.servers = []
        for url in urls:
            b = OpenAIBackend(url, model=model, api_key=api_key, concurrency=per_server, send_paths=send_paths,
                              timeout=timeout, checkpoint=checkpoint)
            b.client = b.client.with_options(max_retries=0)    # failing over beats retrying the same server
            self.servers.append(Server(b))
        self.per_server, self.max_strikes, self.backoff_s = per_server, max_strikes, backoff_s
        # two waves of every slot per runner chunk: the chunk barrier idles few slots, a crash loses little
        self.batch_size = batch_size or max(16, 2 * per_server * len(urls))
        self._model, self._info = model, None
        self._cond = threading.Condition()

    # -- identity: the first live server's, after checking every server serves the model ---------------------------
    @property
    def model(self) -> str:
        if not any(s.checked for s in self.servers):
            for s in self.live():
                if self._model is not None:
                    s.backend._model = self._model
                try:
                    self._model = s.backend.model      # ConfigError (another model) is fatal: rows would differ
                    s.checked = True
                except ServerUnavailable as e:
                    self._mark_down(s, str(e))
            if not any(s.checked for s in self.servers):
                self._raise_down()
        return self._model

    def info(self) -> dict:
        if self._info is None:
            self.model
            first = next(s for s in self.servers if s.checked)
            self._info = {**first.backend.info(), "url": ", ".join(s.url for s in self.servers),
                          "urls": [s.url for s in self.servers], "per_server_concurrency": self.per_server}
        return self._info

    def live(self) -> list[Server]:
        return [s for s in self.servers if not s.down]

    def status(self) -> list[dict]:
        """Per server: url, answered, down, last error (for tests, logs and benchmarks)."""
        with self._cond:
            return [{"url": s.url, "answered": s.answered, "down": s.down, "last_error": s.last_error}
                    for s in self.servers]

    def generate(self, requests: list[Request]) -> list[Response]:
        return self._run(requests, "_one")

    def score(self, requests: list[Request]) -> list[Response]:
        return self._run(requests, "_score_one")

    def close(self) -> None:
        for s in self.servers:
            s.backend.client.close()

    # -- the queue ---------------------------------------------------------------------------------------------------
    def _run(self, requests: list[Request], method: str) -> list[Response]:
        model = self.model
        if not requests:
            return []
        results: list[Response | None] = [None] * len(requests)
        state = {"pending": deque(range(len(requests))), "left": len(requests), "fatal": None}
        threads = [threading.Thread(target=self._worker, args=(s, method, model, requests, results, state),
                                    daemon=True, name=f"shard-{k}-{j}")
                   for k, s in enumerate(self.live()) for j in range(self.per_server)]
        for t in threads:
            t.start()
        with self._cond:
            while not (state["left"] == 0 or state["fatal"] is not None or (
                    not self.live() and not any(s.inflight for s in self.servers))):
                self._cond.wait(1.0)
            state["stop"] = True
            self._cond.notify_all()
        for t in threads:
            t.join()
        if state["fatal"] is not None:
            raise state["fatal"]
        if state["left"]:
            self._raise_down(state["left"])
        return results  # type: ignore[return-value]

    def _worker(self, s: Server, method: str, model: str, requests, results, state) -> None:
        call = getattr(s.backend, method)
        while True:
            with self._cond:
                while True:
                    if state.get("stop") or s.down or state["fatal"] is not None or state["left"] == 0:
                        return
                    now = time.monotonic()
                    if state["pending"] and now >= s.retry_at and (s.strikes == 0 or s.inflight == 0):
                        i = state["pending"].popleft()
                        s.inflight += 1
                        seq = s.fail_seq
                        break
                    self._cond.wait(max(0.01, s.retry_at - now) if now < s.retry_at else 1.0)
            try:
                resp = call(model, requests[i])
            except ServerUnavailable as e:
                with self._cond:
                    s.inflight -= 1
                    state["pending"].appendleft(i)        # another server takes it next
                    if seq == s.fail_seq:                 # a new failure, not one more of the same outage
                        s.fail_seq += 1
                        s.strikes += 1
                        s.last_error = str(e)
                        if s.strikes >= self.max_strikes:
                            self._mark_down(s, str(e))
                        else:
                            s.retry_at = time.monotonic() + self.backoff_s * 2 ** (s.strikes - 1)
                            log.warning("eval server %s failed (%d of %d in a row), retrying in %.2f s: %.200s",
                                        s.url, s.strikes, self.max_strikes, s.retry_at - time.monotonic(), e)
                    self._cond.notify_all()
                continue
            except BaseException as e:                    # not the server's fault (bad input, no scoring): stop
                with self._cond:
                    s.inflight -= 1
                    if state["fatal"] is None:
                        state["fatal"] = e
                    self._cond.notify_all()
                return
            with self._cond:
                s.inflight -= 1
                if results[i] is None:
                    results[i] = resp
                    state["left"] -= 1
                s.answered += 1
                s.strikes = 0
                self._cond.notify_all()

    def _mark_down(self, s: Server, why: str) -> None:
        s.down, s.last_error = True, why
        left = [x.url for x in self.servers if not x.down]
        log.warning("eval server %s marked down after %d failure(s) in a row (%.200s); %s", s.url, max(1, s.strikes),
                    why, f"continuing on {', '.join(left)}" if left else "no server left")

    def _raise_down(self, left: int | None = None) -> None:
        where = "; ".join(f"{s.url} ({s.last_error[:160] or 'down'})" for s in self.servers)
        todo = f" with {left} request(s) of this batch unanswered" if left else ""
        raise AllServersDown(f"every eval server is down{todo}: {where}. Rows already written are kept; start a "
                             f"server and run the same command again to resume")
