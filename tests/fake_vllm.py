"""A stand-in for the vLLM OpenAI server (stdlib only, starts in a blink), so the supervisor and the gateway's
failure paths run against a real child process that can be killed -9 in the default suite. It speaks the part
of the protocol the gateway uses: /health, /v1/models, /v1/completions (plain and streamed), LoRA loading.

    python fake_vllm.py --port N --api-key KEY
Environment: FAKE_VLLM_EVENTS (folder: `start-<pid>` on start, `aborted-<pid>-<n>` when a client drops a stream;
a file `stream_delay` there holds seconds per streamed token), FAKE_VLLM_FAIL (a path: when it exists, the
server exits with code 1 at start, as a vLLM that cannot load would)."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

EVENTS = Path(os.environ.get("FAKE_VLLM_EVENTS", "."))
_aborts = itertools.count()


class Handler(BaseHTTPRequestHandler):
    key = ""

    def log_message(self, *args) -> None:  # quiet
        pass

    def _json(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {})
        elif self.path == "/v1/models":
            self._json(200, {"data": [{"id": "fake", "max_model_len": 4096}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.headers.get("Authorization") != f"Bearer {self.key}":
            return self._json(401, {"error": {"message": "bad key"}})
        if self.path == "/v1/load_lora_adapter":
            return self._json(200, {})
        if self.path != "/v1/completions":
            return self._json(404, {"error": {"message": "not found"}})
        n_prompt = len(body.get("prompt") or []) or 7
        n = int(body.get("max_tokens") or 4)
        if not body.get("stream"):
            return self._json(200, {"choices": [{"text": "ok " * n, "token_ids": [5] * n, "finish_reason": "length"}],
                                    "usage": {"prompt_tokens": n_prompt}})
        delay_file = EVENTS / "stream_delay"
        delay = float(delay_file.read_text()) if delay_file.exists() else 0.0
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for i in range(n):
                chunk = {"choices": [{"text": "ok ", "token_ids": [5], "finish_reason": "length" if i == n - 1 else None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': {'prompt_tokens': n_prompt}})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            (EVENTS / f"aborted-{os.getpid()}-{next(_aborts)}").write_text(str(i))
        self.close_connection = True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--api-key", default="")
    args, _ = ap.parse_known_args()
    (EVENTS / f"start-{os.getpid()}").write_text("")
    fail = os.environ.get("FAKE_VLLM_FAIL")
    if fail and os.path.exists(fail):
        print("fake vLLM: cannot start (FAKE_VLLM_FAIL exists)", file=sys.stderr)
        return 1
    Handler.key = args.api_key
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
