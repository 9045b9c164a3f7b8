"""Python client for an affectllm gateway (or any OpenAI-compatible server), plain HTTP via httpx.

    client = AffectClient("http://127.0.0.1:8000")
    result = client.chat(text="I can't believe you did that", audio="clip.wav", model="mini")
    result.prediction.labels

`chat` builds the same messages as `AffectPipeline.chat` (prompt templates from prompts/, media before text) and
turns media into OpenAI content parts: base64 `input_audio`, `image_url` / `video_url` data URLs, or `file://`
URLs with `send_paths=True` (read by the server inside its --allow-dir). The official `openai` client works
against the gateway too; this one only saves writing the content parts by hand."""
from __future__ import annotations

import base64
import io
import json
import math
import mimetypes
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import AffectError

_AUDIO_FORMATS = {".wav": "wav", ".mp3": "mp3", ".flac": "flac", ".ogg": "ogg", ".m4a": "m4a", ".aac": "aac",
                  ".opus": "opus", ".webm": "webm", ".oga": "ogg"}


class GatewayError(AffectError):
    """The server answered with an OpenAI error body."""

    def __init__(self, status: int, message: str, type: str | None = None, code: str | None = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.type, self.code = status, type, code


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _array_bytes(kind: str, value: Any) -> tuple[bytes, str]:
    import numpy as np

    arr = np.asarray(value)
    buf = io.BytesIO()
    if kind == "audio":
        import soundfile as sf

        sf.write(buf, arr.astype(np.float32), 16000, format="WAV", subtype="FLOAT")
        return buf.getvalue(), "wav"
    from PIL import Image

    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue(), "png"


def media_part(kind: str, value: Any, send_paths: bool = False) -> dict:
    """One processor-style media item (path, bytes, or array at 16 kHz / uint8 HxWx3) -> an OpenAI content part."""
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if send_paths:
            return {"type": f"{kind}_url", f"{kind}_url": {"url": path.resolve().as_uri()}}
        data, ext = path.read_bytes(), path.suffix.lower()
    elif isinstance(value, (bytes, bytearray)):
        data, ext = bytes(value), ""
    elif kind in ("audio", "image"):
        data, fmt = _array_bytes(kind, value)
        ext = f".{fmt}"
    else:
        raise AffectError(f"{kind}: send a path or bytes (got {type(value).__name__})")
    if kind == "audio" and ext in _AUDIO_FORMATS:
        return {"type": "input_audio", "input_audio": {"data": _b64(data), "format": _AUDIO_FORMATS[ext]}}
    mime = mimetypes.types_map.get(ext) or {"audio": "audio/wav", "image": "image/png", "video": "video/mp4"}[kind]
    return {"type": f"{kind}_url", f"{kind}_url": {"url": f"data:{mime};base64,{_b64(data)}"}}


def to_openai_messages(messages: list[dict], send_paths: bool = False) -> list[dict]:
    """Processor-format messages ({"type": "audio", "audio": src}, ...) -> OpenAI content parts."""
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = [p if p["type"] == "text" else media_part(p["type"], p[p["type"]], send_paths) for p in content]
        out.append({"role": m["role"], "content": content})
    return out


class AffectClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 300.0, model: str | None = None):
        import httpx

        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.model = model

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "AffectClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, resp) -> Any:
        if resp.status_code >= 400:
            try:
                err = resp.json()["error"]
                raise GatewayError(resp.status_code, err.get("message", ""), err.get("type"), err.get("code"))
            except (ValueError, KeyError, TypeError):
                raise GatewayError(resp.status_code, resp.text[:300]) from None
        return resp.json()

    def health(self) -> dict:
        return self._check(self.http.get("/health"))

    def models(self) -> list[str]:
        return [m["id"] for m in self._check(self.http.get("/v1/models"))["data"]]

    def _model(self, model: str | None) -> str:
        model = model or self.model
        if model is None:
            self.model = model = self.models()[0]
        return model

    def completion(self, messages: list[dict], model: str | None = None, **params) -> dict:
        """POST /v1/chat/completions with OpenAI messages; returns the response JSON."""
        body = {"model": self._model(model), "messages": messages, **params}
        return self._check(self.http.post("/v1/chat/completions", json=body))

    def stream(self, messages: list[dict], model: str | None = None, **params) -> Iterator[dict]:
        """Yields each chat.completion.chunk; raises GatewayError on an error status or an in-band error."""
        body = {"model": self._model(model), "messages": messages, "stream": True, **params}
        with self.http.stream("POST", "/v1/chat/completions", json=body) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:
                    raise GatewayError(500, data["error"].get("message", ""), data["error"].get("type"))
                yield data

    def load_lora(self, name: str, artifact: str) -> dict:
        return self._check(self.http.post("/v1/load_lora_adapter", json={"lora_name": name, "lora_path": artifact}))

    def chat(self, text: str | None = None, audio: Any = None, image: Any = None, video: Any = None,
             prompt: str = "emotion_ov", candidates: list[str] | None = None, with_confidence: bool = False,
             with_dimensions: bool = False, system: str | None = None, max_new_tokens: int = 200,
             model: str | None = None, temperature: float = 0.0, send_paths: bool = False,
             label_probability: bool = False, **params):
        """Like `AffectPipeline.chat` (greedy by default), through the server. Returns an affectllm.api.ChatResult;
        `label_probability`: also the model's probability of the first label it wrote (from token logprobs)."""
        from ..api import AffectPipeline, ChatResult, require_input
        from ..scoring import parse

        require_input(text, audio, image, video)
        t0 = time.perf_counter()
        messages, prompt_id = AffectPipeline.build_messages(text, audio, image, video, prompt, candidates,
                                                            with_confidence, with_dimensions, system)
        wire = to_openai_messages(messages, send_paths)
        t1 = time.perf_counter()
        if label_probability:
            params["logprobs"] = True
        out = self.completion(wire, model=model, max_tokens=max_new_tokens, temperature=temperature, **params)
        raw = out["choices"][0]["message"]["content"] or ""
        t2 = time.perf_counter()
        content = ((out["choices"][0].get("logprobs") or {}).get("content") or []) if label_probability else []
        return ChatResult(raw=raw, prediction=parse(raw), prompt=prompt_id,
                          timings={"preprocess_s": round(t1 - t0, 3), "server_s": round(t2 - t1, 3),
                                   "usage": out.get("usage")},
                          label_probability=first_label_probability([(c["token"], c["logprob"]) for c in content]))


def first_label_probability(tokens: list[tuple[str, float]]) -> float | None:
    """exp(sum of the logprobs of the tokens that spell the first label) of a `{"labels": ["..."` answer: the
    probability the model gave the label it wrote, given what came before. None when there is no such label."""
    text = "".join(t for t, _ in tokens)
    start = text.find('["')
    end = text.find('"', start + 2) if start >= 0 else -1
    if start < 0 or end <= start + 2:
        return None
    lo, hi, pos, total = start + 2, end, 0, 0.0
    for tok, lp in tokens:
        if pos < hi and pos + len(tok) > lo:  # the token overlaps the label's characters
            total += lp
        pos += len(tok)
    return float(math.exp(total))
