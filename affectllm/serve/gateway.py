"""The affectllm gateway: an OpenAI-compatible HTTP API (FastAPI) in front of a generation backend.

    POST /v1/chat/completions   text / image_url / input_audio / audio_url / video_url parts; stream or not
    GET  /v1/models             the base model and every LoRA artifact served
    GET  /health                200 while the backend can generate, else 503 (+ Retry-After while vLLM restarts)
    POST /v1/load_lora_adapter  {"lora_name", "lora_path": artifact folder} (only under --runtime-lora-dir)
    POST /v1/unload_lora_adapter {"lora_name"}

Per request: auth -> bounded body -> strict parse (protocol.py) -> content parts to bytes with the allow-list
(content.py) -> processor + towers + projectors, batched across requests (prepare.py) -> backend (backends.py).
Every failure is an OpenAI error body with a 4xx/5xx status; nothing a client sends can stop the server."""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import Request  # at module level: FastAPI resolves the string annotations of the handlers here

from .backends import GenParams
from .config import ServeConfig
from .content import ContentConverter, is_inside
from .models import ModelRegistry, ServedModel
from .prepare import Preparer
from .protocol import (APIError, ChatRequest, chat_response, chunk, error_body, logprobs_content, new_id,
                       parse_chat_request, sse, usage)

log = logging.getLogger("affectllm.serve")


@dataclass
class Gateway:
    registry: ModelRegistry
    backend: object  # VLLMBackend | HFBackend
    cfg: ServeConfig = field(default_factory=ServeConfig)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "affectllm-model"))
    max_model_len: int | None = None
    in_flight: int = 0
    preparer: Preparer | None = None

    def __post_init__(self) -> None:
        from .backends import HFBackend

        self.content = ContentConverter(self.cfg)
        self.registry.set_limits(self.cfg.media_limits())  # one source of truth for the decoders' limits
        if self.preparer is None:
            self.preparer = Preparer(self.executor, self.cfg.embed_batch, need_embeds=isinstance(self.backend, HFBackend))
        if self.max_model_len is None:
            self.max_model_len = getattr(self.backend, "max_model_len", None) or int(
                getattr(self.registry.base.pipe.model.config.text_config, "max_position_embeddings", 4096))

    # ---- helpers ------------------------------------------------------------------------------------------
    def check_auth(self, authorization: str | None) -> None:
        if not self.cfg.api_key:
            return
        if not authorization:
            raise APIError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.cfg.api_key.encode()):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key")

    def model(self, name: str) -> ServedModel:
        entry = self.registry.get(name)
        if entry is None:
            raise APIError(404, f"the model '{name}' does not exist; served models: {', '.join(self.registry.names())}",
                           param="model", code="model_not_found")
        return entry

    def params(self, req: ChatRequest, n_prompt: int) -> GenParams:
        asked = req.max_completion_tokens or req.max_tokens
        room = self.max_model_len - n_prompt
        if room < 1:
            raise APIError(400, f"the prompt is {n_prompt} tokens, which leaves no room in this model's context "
                                f"({self.max_model_len} tokens)", param="messages", code="context_length_exceeded")
        if asked is not None and asked > room:
            raise APIError(400, f"max_tokens={asked} plus the prompt ({n_prompt} tokens) exceeds this model's context "
                                f"({self.max_model_len} tokens)", param="max_tokens", code="context_length_exceeded")
        rf = req.response_format
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        return GenParams(max_tokens=asked or min(self.cfg.max_tokens, room),
                         temperature=1.0 if req.temperature is None else req.temperature, top_p=req.top_p,
                         seed=req.seed, stop=stops, logprobs=(req.top_logprobs or 0) if req.logprobs else None,
                         response_format=rf.model_dump(by_alias=True, exclude_none=True) if rf and rf.type != "text"
                         else None, presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty)

    # ---- chat ---------------------------------------------------------------------------------------------
    async def chat(self, raw: bytes):
        """-> a response dict, or an async iterator of SSE bytes (stream=true)."""
        req = parse_chat_request(raw, self.cfg)
        served = self.model(req.model)
        check = getattr(self.backend, "check_available", None)
        if check is not None:  # a dead or restarting engine: 503 now, not after the tower work
            check()
        messages, _ = await self.content.convert(req.messages)
        prep = await self.preparer.prepare(served, messages)
        params = self.params(req, len(prep.token_ids))
        tok = served.pipe.processor.tokenizer
        if not req.stream:
            result = await self.backend.complete(served, prep, params)
            lps = logprobs_content(tok, result.logprobs, req.top_logprobs or 0) if req.logprobs else None
            if req.logprobs and lps is None:
                lps = []
            return chat_response(new_id(), req.model, result, lps, token_ids=req.return_token_ids)
        deltas = await self.backend.stream(served, prep, params)
        return self._sse(req, deltas, len(prep.token_ids), tok)

    async def score(self, body: dict) -> dict:
        """affectllm extension `POST /v1/affect/score` {model, messages, candidates: [answer text, ...], end?} ->
        {logliks: [...]}: the teacher-forced log-likelihood of each candidate answer (the eval suite's scored
        candidates). The transformers engine scores in-process. Under vLLM the engine scores text prompts of a
        model served without LoRA support (token ids + `prompt_logprobs`), and the gateway scores prompts with media
        on its own copy of that model (media reach vLLM as embeddings, which have no prompt logprobs); with LoRA in
        the engine, a 501 with the reason (LoRA + prompt logprobs crash vLLM 0.32)."""
        from .backends import HFBackend, VLLMBackend

        cands = body.pop("candidates", None)
        if not isinstance(cands, list) or not cands or not all(isinstance(c, str) and c for c in cands):
            raise APIError(400, "candidates must be a non-empty list of non-empty strings", param="candidates")
        if len(cands) > 64:
            raise APIError(400, f"{len(cands)} candidates; at most 64", param="candidates")
        end = body.pop("end", None)
        if end is not None and not (isinstance(end, str) and 0 < len(end) <= 8):
            raise APIError(400, "end must be a string of 1-8 characters", param="end")
        if not isinstance(self.backend, (HFBackend, VLLMBackend)):
            raise APIError(501, "candidate scoring needs the transformers or the vLLM engine",
                           code="scoring_unsupported")
        import json as _json

        req = parse_chat_request(_json.dumps({"model": body.get("model"), "messages": body.get("messages")}).encode(),
                                 self.cfg)
        served = self.model(req.model)
        messages, _ = await self.content.convert(req.messages)
        vllm = isinstance(self.backend, VLLMBackend)
        if vllm and self.backend.lora_enabled:
            raise APIError(501, "this vLLM engine runs with LoRA support, and vLLM 0.32 crashes computing prompt "
                                "logprobs with LoRA on (vllm-project/vllm#16668), so candidates are not scored "
                                "here: serve a LoRA artifact with --merge-lora (no LoRA in the engine) or "
                                "--backend hf; a base model served without --runtime-lora-dir is scored by vLLM", code="scoring_unsupported")
        if vllm and not _has_media(messages):
            rows = await asyncio.to_thread(_answer_rows, served, messages, cands)
            lls = await self.backend.score(served, rows, end)
        else:
            # In process. Under vLLM this is for media, which reach the engine as prompt embeddings (no prompt
            # logprobs): without LoRA in the engine, the gateway's own copy (which computes those embeddings) has
            # the engine's weights and dtype, the base or the artifact merged.
            executor = self.executor if vllm else self.backend.executor
            lls = await asyncio.get_running_loop().run_in_executor(executor, _score_candidates, served, messages,
                                                                   cands, end)
        return {"object": "affect.score", "model": req.model, "logliks": lls}

    async def _sse(self, req: ChatRequest, deltas, n_prompt: int, tok):
        rid, created = new_id(), int(time.time())
        yield sse(chunk(rid, req.model, created, {"role": "assistant", "content": ""}))
        n_out, prompt_tokens = 0, n_prompt
        try:
            async for d in deltas:
                prompt_tokens = d.prompt_tokens or prompt_tokens
                n_out += len(d.token_ids)
                if not (d.text or d.finish_reason or d.token_ids):
                    continue
                lps = logprobs_content(tok, d.logprobs or [], req.top_logprobs or 0) if req.logprobs else None
                yield sse(chunk(rid, req.model, created, {"content": d.text} if d.text else {}, d.finish_reason, lps))
        except APIError as e:
            yield sse(e.body())
        except Exception as e:  # noqa: BLE001 - report in-band, the HTTP status is already sent
            log.exception("stream failed")
            yield sse(error_body(f"stream failed: {type(e).__name__}", "server_error"))
        if req.stream_options is not None and req.stream_options.include_usage:
            yield sse(chunk(rid, req.model, created, {}, usage_=usage(prompt_tokens, n_out)))
        yield sse("[DONE]")

    # ---- runtime LoRA ---------------------------------------------------------------------------------------
    async def load_lora(self, body: dict) -> dict:
        root = self.cfg.runtime_lora_dir
        if root is None:
            raise APIError(403, "runtime LoRA loading is disabled (start the server with --runtime-lora-dir DIR)",
                           code="runtime_lora_disabled")
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not isinstance(path, str) or not name or not path:
            raise APIError(400, "body must be {\"lora_name\": str, \"lora_path\": str}", param="lora_name")
        full = path if os.path.isabs(path) else os.path.join(root, path)
        if ".." in path.split("/") or not is_inside(full, root):
            raise APIError(403, f"'{path}' is outside the runtime LoRA directory", param="lora_path",
                           code="path_not_allowed")
        from ..errors import AffectError

        loop = asyncio.get_running_loop()
        try:
            entry = await loop.run_in_executor(self.executor, self.registry.add_lora, name, os.path.realpath(full))
        except AffectError as e:
            raise APIError(400, str(e), param="lora_path") from None
        if entry.adapter_dir is not None:
            try:
                await self.backend.load_lora(entry)
            except BaseException:
                self.registry.remove(name)
                raise
        return {"status": "ok", "model": name}

    async def unload_lora(self, body: dict) -> dict:
        if self.cfg.runtime_lora_dir is None:
            raise APIError(403, "runtime LoRA loading is disabled (start the server with --runtime-lora-dir DIR)",
                           code="runtime_lora_disabled")
        name = body.get("lora_name")
        from ..errors import AffectError

        try:
            entry = self.registry.remove(str(name))
        except AffectError as e:
            raise APIError(404, str(e), param="lora_name", code="model_not_found") from None
        if entry.adapter_dir is not None:
            await self.backend.unload_lora(entry)
        return {"status": "ok", "model": name}


def _score_candidates(served: ServedModel, messages: list[dict], cands: list[str], end: str | None = None
                      ) -> list[float]:
    from ..errors import AffectError

    try:
        return served.pipe.score_candidates(messages, cands, end=end)
    except AffectError as e:
        raise APIError(400, str(e), param="messages") from None


def _has_media(messages: list[dict]) -> bool:
    return any(isinstance(m.get("content"), list) and any(part.get("type") != "text" for part in m["content"])
               for m in messages)


def _answer_rows(served: ServedModel, messages: list[dict], cands: list[str]) -> list[tuple[list[int], list[int]]]:
    """(token ids of prompt + candidate, positions of the candidate's tokens) as the processor builds them for
    training and for the transformers engine's scoring, so both engines score the same tokens."""
    from ..errors import AffectError

    try:
        batch = served.pipe.processor([messages] * len(cands), targets=cands, end_targets=False)
    except AffectError as e:
        raise APIError(400, str(e), param="messages") from None
    rows = []
    for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
        keep = [i for i, m in enumerate(mask.tolist()) if m]
        ids, labels = [int(ids[i]) for i in keep], [int(labels[i]) for i in keep]
        rows.append((ids, [i for i, lab in enumerate(labels) if lab != -100]))
    return rows


async def _read_body(request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise APIError(413, f"request body is over this server's limit ({limit} bytes)", code="request_too_large")
    data, size = bytearray(), 0
    async for block in request.stream():
        size += len(block)
        if size > limit:
            raise APIError(413, f"request body is over this server's limit ({limit} bytes)", code="request_too_large")
        data += block
    return bytes(data)


def create_app(gw: Gateway):
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    @asynccontextmanager
    async def lifespan(app):
        yield
        await gw.preparer.close()
        await gw.backend.close()

    app = FastAPI(title="affectllm gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw

    def err(e: APIError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return err(e)

    @app.exception_handler(HTTPException)
    async def _http_error(request, e: HTTPException):
        kind = "not_found" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {e.detail}", kind), status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e: RequestValidationError):
        return JSONResponse(error_body(f"invalid request: {e.errors()[0].get('msg')}"), status_code=400)

    @app.exception_handler(Exception)
    async def _crash(request, e: Exception):
        log.exception("unhandled error")
        return JSONResponse(error_body(f"internal server error ({type(e).__name__})", "server_error"), status_code=500)

    @app.get("/health")
    async def health():
        ok, detail = await gw.backend.health()
        status = getattr(gw.backend, "engine_status", None)
        engine = {"engine": status()} if status else {}
        if ok:
            return {"status": "ok", "detail": detail, **engine} if gw.cfg.api_key else \
                {"status": "ok", "detail": detail, **engine, "models": gw.registry.names()}
        retry = getattr(gw.backend, "retry_after", lambda: None)()
        return JSONResponse({**error_body(f"backend unhealthy: {detail}", "server_error", code="backend_unavailable"),
                             "status": engine["engine"]["state"] if engine else "unavailable", **engine},
                            status_code=503, headers={"Retry-After": str(retry)} if retry is not None else None)

    @app.get("/v1/models")
    async def models(request: Request):
        gw.check_auth(request.headers.get("authorization"))
        now, base = int(time.time()), gw.registry.base.name
        data = [{"id": m.name, "object": "model", "created": now, "owned_by": "affectllm", "root": base,
                 "parent": None if m is gw.registry.base else base} for m in gw.registry.models.values()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        gw.check_auth(request.headers.get("authorization"))
        if gw.in_flight >= gw.cfg.max_pending:
            raise APIError(429, f"server busy ({gw.in_flight} requests in flight); retry later",
                           type="rate_limit_error", code="server_busy")
        gw.in_flight += 1
        streaming = False
        try:
            raw = await _read_body(request, gw.cfg.max_request_bytes)
            try:
                async with asyncio.timeout(gw.cfg.request_timeout_s):
                    out = await gw.chat(raw)
            except TimeoutError:
                raise APIError(504, f"the request took longer than {gw.cfg.request_timeout_s:g} s", "timeout_error",
                               code="timeout") from None
            if isinstance(out, dict):
                return JSONResponse(out)
            streaming = True

            async def body():
                try:
                    async with asyncio.timeout(gw.cfg.request_timeout_s):
                        async for piece in out:
                            yield piece
                except TimeoutError:
                    yield sse(error_body("the stream took longer than the request timeout", "timeout_error"))
                    yield sse("[DONE]")
                finally:
                    gw.in_flight -= 1

            return StreamingResponse(body(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        finally:
            if not streaming:
                gw.in_flight -= 1

    async def _json_body(request: Request) -> dict:
        from .jsonbody import loads

        body = loads(await _read_body(request, 1 << 16), gw.cfg.max_json_depth)
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        return body

    @app.post("/v1/affect/score")
    async def affect_score(request: Request):
        gw.check_auth(request.headers.get("authorization"))
        from .jsonbody import loads

        body = loads(await _read_body(request, gw.cfg.max_request_bytes), gw.cfg.max_json_depth)
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        return await gw.score(body)

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request):
        gw.check_auth(request.headers.get("authorization"))
        return await gw.load_lora(await _json_body(request))

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request):
        gw.check_auth(request.headers.get("authorization"))
        return await gw.unload_lora(await _json_body(request))

    return app
