"""Prompt preparation with batched tower work: processor messages -> token ids (+ input embeddings with the
media features scattered in, when the prompt has media).

Requests queue up while the model thread is busy; each turn takes every queued request of one served model (up
to `max_batch`), runs the processor and `model.build_inputs_embeds` once for all of them, and splits the rows
back by attention mask. The same two calls build the prompt in `AffectPipeline.generate`, so the gateway has no
second implementation of media handling. A batch that fails is retried one request at a time, so one bad request
never fails its neighbours."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass

import torch

from ..errors import AffectError
from .models import ServedModel
from .protocol import APIError

log = logging.getLogger("affectllm.serve")
_MEDIA_KEYS = ("audio_values", "audio_lengths", "pixel_values", "video_values", "video_frames")


@dataclass
class Prepared:
    token_ids: list[int]
    embeds: torch.Tensor | None  # [seq, hidden] in the model's dtype; None for text-only prompts


def _has_media(messages: list[dict]) -> bool:
    return any(isinstance(m["content"], list) and any(p.get("type") != "text" for p in m["content"])
               for m in messages)


@torch.inference_mode()
def prepare_batch(served: ServedModel, conversations: list[list[dict]], need_embeds: bool = False) -> list[Prepared]:
    """Run the processor and (for prompts with media, or when `need_embeds`) build_inputs_embeds once."""
    pipe = served.pipe
    batch = pipe.processor(conversations)
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    media_rows = [_has_media(c) for c in conversations]
    embeds = None
    if need_embeds or any(media_rows):
        media = {k: batch[k] for k in _MEDIA_KEYS if k in batch}
        embeds = pipe.model.build_inputs_embeds(ids, **media)
    out = []
    for i in range(len(conversations)):
        row = embeds[i][mask[i]].contiguous() if embeds is not None and (need_embeds or media_rows[i]) else None
        out.append(Prepared(ids[i][mask[i]].tolist(), row))
    return out


def _as_api_error(e: BaseException) -> APIError:
    if isinstance(e, APIError):
        return e
    if isinstance(e, AffectError):
        return APIError(400, str(e), param="messages", code=type(e).__name__)
    log.exception("prompt preparation failed", exc_info=e)
    return APIError(500, f"internal error while preparing the prompt ({type(e).__name__})", type="server_error")


class Preparer:
    def __init__(self, executor: Executor, max_batch: int = 16, need_embeds: bool = False):
        self.executor, self.max_batch, self.need_embeds = executor, max_batch, need_embeds
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of recent tower batches (for tests and the benchmark)

    async def prepare(self, served: ServedModel, messages: list[dict]) -> Prepared:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((served, messages, fut))
        return await fut

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _run(self, served: ServedModel, convs: list[list[dict]]) -> list[Prepared | APIError]:
        try:
            return prepare_batch(served, convs, self.need_embeds)
        except Exception as e:
            if len(convs) == 1:
                return [_as_api_error(e)]
        results: list[Prepared | APIError] = []
        for conv in convs:
            try:
                results.append(prepare_batch(served, [conv], self.need_embeds)[0])
            except Exception as e:
                results.append(_as_api_error(e))
        return results

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            await asyncio.sleep(0)  # let requests that arrived together join this turn
            while not self._queue.empty() and len(items) < self.max_batch * 4:
                items.append(self._queue.get_nowait())
            items = [it for it in items if not it[2].done()]  # the client went away
            groups: dict[int, list] = {}
            for it in items:
                groups.setdefault(id(it[0]), []).append(it)
            for group in groups.values():
                for start in range(0, len(group), self.max_batch):
                    part = group[start : start + self.max_batch]
                    self.batches = (self.batches + [len(part)])[-1000:]
                    try:
                        results = await loop.run_in_executor(self.executor, self._run, part[0][0],
                                                             [it[1] for it in part])
                    except Exception as e:  # the executor itself failed
                        results = [_as_api_error(e)] * len(part)
                    for (_, _, fut), res in zip(part, results):
                        if fut.done():
                            continue
                        if isinstance(res, BaseException):
                            fut.set_exception(res)
                        else:
                            fut.set_result(res)
