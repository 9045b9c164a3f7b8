"""Generation with the LM head read in float16 where that is faster on this machine (float32 models only).

Why: decoding one token reads every weight once, and in a small LLM with a large vocabulary the head dominates:
Gemma-3-270M's tied 262k x 640 head is 0.67 GB of the 1.1 GB it reads per token in float32. On a 2-core AMD EPYC
Zen 3 (no bf16 path, so `dtype: auto` keeps the model in float32) that head's matrix-vector product alone took
~100 ms of a ~150 ms step, and ~29 ms from a float16 copy (half the bytes; 2026-12-01). Gemma ships bf16 weights, so
the float16 copy loses nothing for weights in float16's normal range; the hidden state and the logits are rounded
to float16 (relative error ~5e-4): a greedy answer can change only where two tokens' logits nearly tie
(`bench/bench_decode_head.py` measures speed and answer agreement side by side).

Only `generate` uses it (`decoding_head` around the call): scoring candidates, losses and training keep the
model's own dtype. Per machine, a short timing of the real head in both dtypes decides (float16 only when >= 1.3x
faster), cached beside `dtype: auto`'s record; `AFFECTLLM_DECODE_HEAD=float32|float16` forces the choice."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

log = logging.getLogger("affectllm")

ENV_OVERRIDE = "AFFECTLLM_DECODE_HEAD"
MIN_SPEEDUP = 1.3  # the copy costs memory (half the head again): take it only when it clearly pays
MIN_VOCAB = 32768  # smaller heads are a small share of a decoding step; not worth a copy
MAX_ROWS = 8  # rows (batch x new positions) up to which the copy is used: measured on the Zen 3, the 262k head took
# 28 / 149 / 298 ms in float16 against 97 / 226 / 258 ms in float32 for 1 / 8 / 16 rows (a matrix product, no longer
# a bandwidth-bound vector product, has no fast float16 kernel on a CPU without native half-precision math)
_memo: dict[str, str] = {}


def _eligible(head: nn.Module) -> bool:
    w = getattr(head, "weight", None)
    return (isinstance(head, nn.Linear) and w is not None and w.dtype == torch.float32 and w.device.type == "cpu"
            and w.shape[0] >= MIN_VOCAB)


def _half_weight(head: nn.Linear) -> torch.Tensor:
    """The float16 copy, kept on the module and rebuilt when the weight changes (in place or replaced)."""
    w = head.weight
    stamp = (w.data_ptr(), w._version, tuple(w.shape))
    cached = head.__dict__.get("_affect_fp16")
    if cached is None or cached[0] != stamp:
        cached = (stamp, w.detach().to(torch.float16))
        head.__dict__["_affect_fp16"] = cached
    return cached[1]


def _time_head(head: nn.Linear, w16: torch.Tensor, rounds: int = 3) -> dict[str, float]:
    """Best-of-`rounds` seconds of one decoding step's head product in each dtype, interleaved."""
    x = torch.randn(1, head.in_features, generator=torch.Generator().manual_seed(0))
    runs = {"float32": lambda: F.linear(x, head.weight), "float16": lambda: F.linear(x.half(), w16)}
    best = {k: float("inf") for k in runs}
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(rounds):
            for k, fn in runs.items():
                t = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t)
    return best


def choose(head: nn.Module) -> str:
    """"float16" or "float32" for this head on this machine (forced, cached, or measured once)."""
    forced = os.environ.get(ENV_OVERRIDE, "").strip()
    if forced:
        if forced not in ("float32", "float16"):
            raise ConfigError(f"${ENV_OVERRIDE}={forced!r}: valid values are float32, float16")
        return forced
    if not _eligible(head):
        return "float32"
    from .dtypes import _read_cache, _write_cache, cache_key

    key = f"decode_head|{tuple(head.weight.shape)}|{cache_key()}"
    if key in _memo:
        return _memo[key]
    rec = _read_cache().get(key)
    if not (isinstance(rec, dict) and rec.get("choice") in ("float32", "float16")):
        best = _time_head(head, _half_weight(head))
        ratio = best["float32"] / max(best["float16"], 1e-9)
        rec = {"choice": "float16" if ratio >= MIN_SPEEDUP else "float32", "fp16_speedup": round(ratio, 2),
               "ms": {k: round(v * 1e3, 2) for k, v in best.items()}, "min_speedup": MIN_SPEEDUP,
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_cache(key, rec)
        log.info("decode head -> %s (fp32 %.1f ms, fp16 %.1f ms per token)", rec["choice"], *rec["ms"].values())
    if rec["choice"] == "float32":
        head.__dict__.pop("_affect_fp16", None)
    _memo[key] = rec["choice"]
    return rec["choice"]


@contextlib.contextmanager
def decoding_head(lm: nn.Module) -> Iterator[str]:
    """Within the block, `lm`'s output head computes inference-mode float32 inputs of at most MAX_ROWS rows (decoding
    steps; a prompt's last position) from a float16 copy of its weight when `choose` says so; yields the dtype in
    use. Anything that needs gradients, and larger products, pass through unchanged."""
    head = lm.get_output_embeddings()
    if head is None or not _eligible(head) or choose(head) != "float16":
        yield "float32"
        return
    w16 = _half_weight(head)
    b16 = head.bias.detach().half() if head.bias is not None else None
    plain = head.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or torch.is_grad_enabled() or x.shape[:-1].numel() > MAX_ROWS:
            return plain(x)
        return F.linear(x.half(), w16, b16).float()

    head.forward = forward
    try:
        yield "float16"
    finally:
        del head.forward
