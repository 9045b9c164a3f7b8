"""Evals across servers (issue 13.4): `--model URL1,URL2` / `@file` shares requests across servers; a server that
dies mid-run is marked down and its requests finish on the others, with rows identical to a one-server run; when
every server is down the error names them and the rows already stored stay on disk (a re-run resumes); endpoint
lists are checked. Fake OpenAI servers (stdlib, instant) for the failure paths; two real `tiny` gateways for the
kill-one-mid-run case."""
from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from affectllm.errors import ConfigError
from affectllm.evaluation.backends import make_backend
from affectllm.evaluation.manifest_tasks import manifest_tasks
from affectllm.evaluation.runner import run_eval
from affectllm.evaluation.sharding import AllServersDown, ShardedBackend, parse_endpoints

pytest.importorskip("openai")
LABELS = ["joy", "anger", "sadness", "neutral"]
TEXTS = ["I won the lottery today", "You broke my phone again", "My dog died last night", "The bus comes at nine",
         "What a lovely surprise party", "Stop lying to me", "I miss her so much", "The report is on the desk"]


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A text-only manifest of 16 labelled rows (no data kit needed)."""
    path = tmp_path / "texts.jsonl"
    rows = [{"id": f"t{i:02d}", "corpus": "texts", "split": "test", "text": f"{TEXTS[i % 8]} ({i})",
             "label": LABELS[i % 4], "labels": [LABELS[i % 4]]} for i in range(16)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def zs_task(corpus: Path, out: Path):
    tasks, _ = manifest_tasks(corpus, None, out, ("zero_shot",))
    return tasks


class Fake:
    """An OpenAI chat server answering a label chosen from the request's text (same answer on every server).
    `fail_after`: answers that many, then HTTP 500 for good; `delay`: seconds per answer; `kill()`: closes the port
    (connection refused)."""

    def __init__(self, fail_after: int | None = None, delay: float = 0.0):
        self.answered, self.fail_after, self.delay = 0, fail_after, delay
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model", "created": 0,
                                                             "owned_by": "test"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.fail_after is not None and fake.answered >= fake.fail_after:
                    return self._json(500, {"error": {"message": "engine died"}})
                fake.answered += 1
                time.sleep(fake.delay)
                text = json.dumps(body["messages"], sort_keys=True)
                label = LABELS[zlib.crc32(text.encode()) % len(LABELS)]
                self._json(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                                 "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                     "role": "assistant", "content": json.dumps({"labels": [label]})}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def kill(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def refused_url() -> str:
    """A port nothing listens on."""
    f = Fake()
    f.kill()
    return f.url


def samples(out: Path, task) -> str:
    return (out / task.name / "samples.jsonl").read_text()


# ---- endpoint lists ------------------------------------------------------------------------------------------------
def test_endpoint_lists_parse_and_bad_ones_are_clear_errors(tmp_path):
    assert parse_endpoints("http://a:8000, https://b:9000/v1/ ,") == ["http://a:8000/v1", "https://b:9000/v1"]
    f = tmp_path / "endpoints.txt"
    f.write_text("# gpu servers\nhttp://gpu1:8000/v1   # first\n\n  http://gpu2:8000\n")
    assert parse_endpoints(f"@{f}") == ["http://gpu1:8000/v1", "http://gpu2:8000/v1"]
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    bad = {f"@{tmp_path / 'empty.txt'}": "no endpoints", ",": "no endpoints", "@nope.txt": "not found",
           "http://a:1,ftp://b:2": "malformed endpoint 'ftp://b:2'", "http://a:1,http://b:port": "malformed",
           "http://a:1,http://": "malformed", "http://a:1,http://a:1/v1": "listed twice",
           "http://a:1,localhost:8000": "malformed endpoint 'localhost:8000'"}
    for spec, needle in bad.items():
        with pytest.raises(ConfigError, match=needle):
            parse_endpoints(spec)
    (tmp_path / "bad.txt").write_text("http://ok:1\nhttp://x y:2\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: malformed"):
        parse_endpoints(f"@{tmp_path / 'bad.txt'}")
    with pytest.raises(ConfigError, match="openai backend"):
        make_backend("http://a:1,http://b:2", "hf")


def test_cli_bad_list_and_all_refused_give_one_clear_line(corpus, tmp_path, capsys):
    from affectllm.cli import main

    base = ["eval", "--manifest", str(corpus), "--suites", "zero_shot", "--no-progress", "--output", str(tmp_path)]
    assert main(base + ["--model", "http://127.0.0.1:1,notaurl"]) == 2
    assert "malformed endpoint" in capsys.readouterr().err
    a, b = refused_url(), refused_url()
    assert main(base + ["--model", f"{a},{b}", "--per-server-concurrency", "2"]) == 2
    err = capsys.readouterr().err
    assert "every eval server is down" in err and a in err and b in err and "Traceback" not in err


# ---- fail-over and all-down on fake servers -------------------------------------------------------------------------
def test_a_failing_server_is_marked_down_and_rows_equal_a_one_server_run(corpus, tmp_path, caplog):
    tasks = zs_task(corpus, tmp_path / "tasks")
    good, flaky = Fake(delay=0.05), Fake(fail_after=3)                 # a slow good server: the flaky one is retried
    run_eval(good.url, tasks, tmp_path / "one", progress=False, bootstrap=20)
    be = ShardedBackend([good.url, flaky.url], per_server=2, backoff_s=0.01, batch_size=16)
    with caplog.at_level(logging.WARNING, logger="affectllm.eval"):
        s = run_eval(None, tasks, tmp_path / "two", backend=be, progress=False, bootstrap=20)
    st = {x["url"]: x for x in be.status()}
    assert st[flaky.url]["down"] and st[flaky.url]["answered"] == 3 and "HTTP 500" in st[flaky.url]["last_error"]
    assert not st[good.url]["down"] and st[good.url]["answered"] == 16 - 3
    assert any("marked down" in r.message and flaky.url in r.message for r in caplog.records)
    assert samples(tmp_path / "two", tasks[0]) == samples(tmp_path / "one", tasks[0])        # same rows, same order
    assert s["model"]["model_id"] == "fake" and s["model"]["urls"] == [good.url, flaky.url]
    good.kill()
    flaky.kill()


def test_all_servers_down_keeps_the_stored_rows_and_a_rerun_resumes(corpus, tmp_path):
    tasks = zs_task(corpus, tmp_path / "tasks")
    ref = Fake()
    run_eval(ref.url, tasks, tmp_path / "ref", progress=False, bootstrap=20)
    a, b = Fake(fail_after=5), Fake(fail_after=2)                     # 7 answers in all, then 500s everywhere
    be = ShardedBackend([a.url, b.url], per_server=1, backoff_s=0.02, max_strikes=2, batch_size=4)
    with pytest.raises(AllServersDown, match="every eval server is down") as e:
        run_eval(None, tasks, tmp_path / "out", backend=be, progress=False, bootstrap=20)
    assert a.url in str(e.value) and b.url in str(e.value) and "HTTP 500" in str(e.value)
    kept = samples(tmp_path / "out", tasks[0]).splitlines()
    assert len(kept) == 4                                             # the one whole batch of 4 (7 answers < 8)
    assert kept == samples(tmp_path / "ref", tasks[0]).splitlines()[:4]
    a.fail_after = b.fail_after = None                                # servers back: the same run resumes
    be = ShardedBackend([a.url, b.url], per_server=2, backoff_s=0.02, batch_size=4)
    run_eval(None, tasks, tmp_path / "out", backend=be, progress=False, bootstrap=20)
    assert samples(tmp_path / "out", tasks[0]) == samples(tmp_path / "ref", tasks[0])
    assert sum(x["answered"] for x in be.status()) == 12
    for f in (ref, a, b):
        f.kill()


# ---- two real tiny gateways, one killed mid-run --------------------------------------------------------------------
def test_two_tiny_gateways_one_killed_mid_run_same_rows_as_one(corpus, tmp_path, caplog):
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.server import start

    tasks = zs_task(corpus, tmp_path / "tasks")
    a = start("tiny", backend="hf", cfg=ServeConfig(port=0))
    b = start("tiny", backend="hf", cfg=ServeConfig(port=0))
    try:
        run_eval(a.url + "/v1", tasks, tmp_path / "one", progress=False, bootstrap=20)
        be = make_backend(f"{a.url},{b.url}", per_server_concurrency=2)
        be.backoff_s = 0.1
        killed = threading.Event()

        def kill_b_after_two():
            while not killed.is_set():
                if be.status()[1]["answered"] >= 2:
                    b.stop()
                    killed.set()
                time.sleep(0.01)

        watcher = threading.Thread(target=kill_b_after_two, daemon=True)
        watcher.start()
        with caplog.at_level(logging.WARNING, logger="affectllm.eval"):
            run_eval(None, tasks, tmp_path / "two", backend=be, progress=False, bootstrap=20)
        killed.set()
        watcher.join(5)
    finally:
        a.stop()
        b.stop()
    st = be.status()
    assert st[1]["down"] and 2 <= st[1]["answered"] < 16 and not st[0]["down"]
    assert st[0]["answered"] + st[1]["answered"] == 16
    assert any("marked down" in r.message for r in caplog.records)
    assert samples(tmp_path / "two", tasks[0]) == samples(tmp_path / "one", tasks[0])
