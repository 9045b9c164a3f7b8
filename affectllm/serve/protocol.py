"""OpenAI chat-completions wire format: the request model (strict: wrong types and unknown fields are 400s
with a message naming the field), the error body `{"error": {"message", "type", "param", "code"}}`, and
builders for responses and stream chunks. Content parts are checked in content.py."""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import ServeConfig


class APIError(Exception):
    """An error answered in the OpenAI format; `status` is the HTTP status."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers  # e.g. Retry-After on a 503

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class JSONSchemaFormat(_Strict):
    name: str = Field(default="response", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Any] | None = None  # parts are checked one by one in content.py
    name: str | None = None


class ChatRequest(_Strict):
    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    n: int = Field(default=1, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = Field(default=None, max_length=256)
    return_token_ids: bool = False  # vLLM extension: the choice carries `token_ids` (the generated token ids)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _validation_message(err: ValidationError) -> tuple[str, str | None]:
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(x) for x in first["loc"] if str(x) not in _TYPE_TAGS and "[" not in str(x))
    if first["type"] == "extra_forbidden":
        return f"unrecognized request argument supplied: {loc}", loc
    if first["type"] == "missing":
        return f"missing required parameter: {loc}", loc
    given = first.get("input")
    shown = json.dumps(given)[:80] if isinstance(given, (str, int, float, bool, type(None))) else type(given).__name__
    return f"invalid value for '{loc}': {first['msg']} (got {shown})", loc


def parse_chat_request(raw: bytes, cfg: ServeConfig) -> ChatRequest:
    """Bytes of the HTTP body -> a checked ChatRequest, or APIError(400) with a clear message."""
    from .jsonbody import loads

    obj = loads(raw, cfg.max_json_depth)
    if not isinstance(obj, dict):
        raise APIError(400, f"the request body must be a JSON object, got {type(obj).__name__}", code="invalid_json")
    try:
        req = ChatRequest.model_validate(obj)
    except ValidationError as e:
        message, param = _validation_message(e)
        raise APIError(400, message, param=param, code="invalid_value") from None
    check_limits(req, cfg)
    return req


def check_limits(req: ChatRequest, cfg: ServeConfig) -> None:
    def bad(message: str, param: str, code: str = "invalid_value") -> APIError:
        return APIError(400, message, param=param, code=code)

    want = req.max_completion_tokens or req.max_tokens
    if want is not None and want > cfg.max_tokens:
        raise bad(f"max_tokens={want} is over this server's limit ({cfg.max_tokens})", "max_tokens")
    stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    if len(stops) > cfg.max_stop:
        raise bad(f"{len(stops)} stop strings given; at most {cfg.max_stop}", "stop")
    if any(not s for s in stops) or any(len(s) > 256 for s in stops):
        raise bad("stop strings must be 1-256 characters", "stop")
    if req.n > cfg.max_n:
        raise bad(f"n={req.n} is not supported; this server returns at most {cfg.max_n} choice(s)", "n")
    if req.top_logprobs is not None and not req.logprobs:
        raise bad("top_logprobs needs logprobs=true", "top_logprobs")
    if req.stream_options is not None and not req.stream:
        raise bad("stream_options is only allowed with stream=true", "stream_options")
    rf = req.response_format
    if rf is not None and rf.type == "json_schema" and rf.json_schema is None:
        raise bad("response_format type 'json_schema' needs a 'json_schema' object with a 'schema'",
                  "response_format.json_schema")
    if len(req.messages) > cfg.max_messages:
        raise bad(f"{len(req.messages)} messages; at most {cfg.max_messages}", "messages")
    if not any(m.role == "user" for m in req.messages):
        raise bad("messages must contain at least one 'user' message", "messages")


# ---- results and responses -----------------------------------------------------------------------------------
@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass
class Completion:
    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    logprobs: list[TokenLogprob] | None = None


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _token_entry(tokenizer, token_id: int, logprob: float) -> dict:
    text = tokenizer.decode([token_id], skip_special_tokens=False)
    return {"token": text, "logprob": max(float(logprob), -9999.0), "bytes": list(text.encode("utf-8"))}


def logprobs_content(tokenizer, items: list[TokenLogprob], top_n: int) -> list[dict]:
    out = []
    for item in items:
        entry = _token_entry(tokenizer, item.token_id, item.logprob)
        entry["top_logprobs"] = [_token_entry(tokenizer, t, lp) for t, lp in item.top[:top_n]]
        out.append(entry)
    return out


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_response(rid: str, model: str, result: Completion, logprobs: list[dict] | None,
                  token_ids: bool = False) -> dict:
    out = {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                     "logprobs": {"content": logprobs} if logprobs is not None else None,
                     "finish_reason": result.finish_reason}],
        "usage": usage(result.prompt_tokens, len(result.token_ids)),
    }
    if token_ids:
        out["choices"][0]["token_ids"] = list(result.token_ids)
    return out


def chunk(rid: str, model: str, created: int, delta: dict, finish_reason: str | None = None,
          logprobs: list[dict] | None = None, usage_: dict | None = None) -> dict:
    out = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": delta, "logprobs": {"content": logprobs} if logprobs is not None else None,
                        "finish_reason": finish_reason}]}
    if usage_ is not None:
        out["choices"], out["usage"] = [], usage_
    return out


def sse(obj: dict | str) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def end_mass(alternatives: list[tuple[str, float]], end: str) -> float:
    """log of the probability mass of the listed next tokens whose text starts with `end` (scored candidates
    that must stop there); a floor of -50 when none of the listed alternatives does."""
    import math

    hits = [lp for tok, lp in alternatives if str(tok).startswith(end)]
    if not hits:
        return -50.0
    top = max(hits)
    return top + math.log(sum(math.exp(h - top) for h in hits))
