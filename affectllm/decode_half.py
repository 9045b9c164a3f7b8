"""Generation with the LLM's large float32 matrices read from float16 copies where that is faster on this machine.

Why: decoding one token reads every weight once, so on a CPU a float32 LLM decodes at the speed of its memory
reads. On a 2-core AMD EPYC Zen 3 (no bf16 path, so `dtype: auto` keeps the model in float32), Gemma-3-270M reads
1.1 GB per token: the tied 262k x 640 head (0.67 GB) took ~85-100 ms per token in float32 and ~26 ms from a float16
copy; the 126 attention/MLP projections (0.4 GB) ~47 ms and ~19 ms (2026-12-01/02). Gemma ships bf16 weights, so a
float16 copy loses nothing for weights in float16's normal range; the inputs and products are rounded to float16
(relative error ~5e-4): a greedy answer can change only where two tokens' logits nearly tie
(`bench/bench_decode_half.py` measures speed and answer agreement side by side).

Two parts, chosen separately: "head" (the output embedding, >= MIN_VOCAB rows) and "body" (every other float32
`nn.Linear` of the LLM with >= MIN_BODY_WEIGHTS weights; LoRA's small A/B matrices stay float32). A product that
overflows float16 (Gemma's MLP activations can pass 65504) is recomputed in float32, so the copy never turns a
finite answer into inf/NaN. Only `generate` uses it (`decoding_in_half` around the call) and only for products of
<= HALF_ROWS rows (decoding steps, a prompt's last position); products of a few more rows (drafted tokens checked at
once, small batches) use a float32 product shape that reads each matrix once. Scoring, losses and training keep
the model's own forward. Per machine and part, a short timing of the real matrices decides (float16 only when >= MIN_SPEEDUP faster),
cached beside `dtype: auto`'s record; `AFFECTLLM_DECODE_HALF=none|head|body|all` forces the choice."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

log = logging.getLogger("affectllm")

ENV_OVERRIDE = "AFFECTLLM_DECODE_HALF"
FORCED = {"none": (), "head": ("head",), "body": ("body",), "all": ("head", "body")}
MIN_SPEEDUP = 1.3  # a copy costs memory (half its matrices again): take it only when it clearly pays
MIN_VOCAB = 32768  # smaller heads are a small share of a decoding step; not worth a copy
MIN_BODY_WEIGHTS = 65536  # LoRA's rank-r matrices and other small layers: per-call overhead, not reads, dominates
HALF_ROWS = 2  # rows (batch x new positions) up to which the float16 copies are used: measured on the Zen 3, the
# 262k head took 24 / 40 / 108 / 150 ms in float16 for 1 / 2 / 4 / 8 rows (no fast float16 matrix-matrix kernel on a
# CPU without native half-precision math) against 67 / 53 / 63 / 97 ms for the "skinny" float32 product below
MAX_ROWS = 8  # up to here (drafted tokens checked in one pass, small batches) a part whose timing says so computes
# x @ W.T as (W @ x.T).T in float32: the same numbers, but MKL reads W once, where F.linear's small-M path took
# 172 / 194 / 192 ms for the head at 2 / 4 / 8 rows; more rows (a prompt) keep the module's own forward
TIMED_ROWS = 4
_memo: dict[str, dict] = {}


def _fp32_linear(module: nn.Module) -> bool:
    w = getattr(module, "weight", None)
    return (isinstance(module, nn.Linear) and w is not None and w.dtype == torch.float32
            and w.device.type == "cpu")


def head_of(lm: nn.Module) -> nn.Linear | None:
    """The LLM's output head when it is large enough for a copy to pay, else None."""
    head = lm.get_output_embeddings()
    return head if head is not None and _fp32_linear(head) and head.weight.shape[0] >= MIN_VOCAB else None


def body_of(lm: nn.Module) -> list[nn.Linear]:
    """The LLM's large float32 projections (attention, MLP), the head excluded."""
    head = lm.get_output_embeddings()
    return [m for m in lm.modules() if m is not head and _fp32_linear(m)
            and MIN_BODY_WEIGHTS <= m.weight.numel() and m.weight.shape[0] < MIN_VOCAB]


def _half_weight(module: nn.Linear) -> torch.Tensor:
    """The float16 copy, kept on the module and rebuilt when the weight changes (in place or replaced)."""
    w = module.weight
    stamp = (w.data_ptr(), w._version, tuple(w.shape))
    cached = module.__dict__.get("_affect_fp16")
    if cached is None or cached[0] != stamp:
        cached = (stamp, w.detach().to(torch.float16))
        module.__dict__["_affect_fp16"] = cached
    return cached[1]


def _half_product(x: torch.Tensor, w16: torch.Tensor, b16: torch.Tensor | None) -> torch.Tensor | None:
    """x @ w16.T (+ b16) in float16, back in float32; None when float16 overflowed (the caller recomputes)."""
    y = F.linear(x.half(), w16, b16)
    return y.float() if torch.isfinite(y).all() else None


def _skinny_product(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """F.linear(x, w, b) for a few rows of x, as (w @ x.T).T: a tall-skinny float32 product that reads w once."""
    flat = x.reshape(-1, x.shape[-1])
    y = torch.mm(w, flat.T).T
    if b is not None:
        y = y + b
    return y.reshape(*x.shape[:-1], w.shape[0])


def _time_pass(modules: list[nn.Linear], rounds: int = 3) -> dict[str, float]:
    """Best-of-`rounds` seconds of one pass of products over `modules`: one row in float32 and from the float16
    copies, TIMED_ROWS rows with F.linear and as the skinny product; interleaved. Every matrix is read once per
    pass, as in decoding: timing one small matrix over and over would time the cache."""
    gen = torch.Generator().manual_seed(0)
    xs = {(m.in_features, r): torch.randn(r, m.in_features, generator=gen) for m in modules for r in (1, TIMED_ROWS)}
    pairs = [(m, _half_weight(m)) for m in modules]
    runs: dict[str, Callable[[], None]] = {
        "float32": lambda: [F.linear(xs[m.in_features, 1], m.weight) for m, _ in pairs],
        "float16": lambda: [_half_product(xs[m.in_features, 1], w16, None) for m, w16 in pairs],
        "float32_rows": lambda: [F.linear(xs[m.in_features, TIMED_ROWS], m.weight) for m, _ in pairs],
        "skinny_rows": lambda: [_skinny_product(xs[m.in_features, TIMED_ROWS], m.weight, None) for m, _ in pairs]}
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


def _measured(part: str, modules: list[nn.Linear]) -> dict:
    """{"half": float16 copies pay, "skinny": the skinny product pays} for `modules` on this machine: cached per
    machine and matrix set, else timed once."""
    from .dtypes import _read_cache, _write_cache, cache_key

    shapes = sorted({tuple(m.weight.shape) for m in modules})
    key = f"decode_{part}|{len(modules)}x{shapes}|{cache_key()}"
    if key in _memo:
        return _memo[key]
    rec = _read_cache().get(key)
    if not (isinstance(rec, dict) and rec.get("choice") in ("float32", "float16") and "skinny" in rec):
        best = _time_pass(modules)
        ratio = best["float32"] / max(best["float16"], 1e-9)
        skinny = best["float32_rows"] / max(best["skinny_rows"], 1e-9)
        rec = {"choice": "float16" if ratio >= MIN_SPEEDUP else "float32", "fp16_speedup": round(ratio, 2),
               "skinny": skinny >= MIN_SPEEDUP, "skinny_speedup": round(skinny, 2), "rows": TIMED_ROWS,
               "ms": {k: round(v * 1e3, 2) for k, v in best.items()}, "min_speedup": MIN_SPEEDUP,
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_cache(key, rec)
        log.info("decode %s -> %s, skinny %s (ms: %s)", part, rec["choice"], rec["skinny"], rec["ms"])
    if rec["choice"] == "float32":
        for m in modules:
            m.__dict__.pop("_affect_fp16", None)
    _memo[key] = {"half": rec["choice"] == "float16", "skinny": bool(rec["skinny"])}
    return _memo[key]


def choose(lm: nn.Module) -> tuple[str, ...]:
    """The parts ("head", "body") that decode from float16 copies for this LLM on this machine (forced by
    $AFFECTLLM_DECODE_HALF, cached, or measured once); parts without eligible float32 matrices are never listed."""
    return tuple(part for part, (_, ways) in _plan(lm).items() if ways["half"])


def _plan(lm: nn.Module) -> dict[str, tuple[list[nn.Linear], dict]]:
    """Per part with eligible matrices: (its modules, {"half": bool, "skinny": bool}); forced: both follow the
    override."""
    forced = os.environ.get(ENV_OVERRIDE, "").strip()
    if forced and forced not in FORCED:
        raise ConfigError(f"${ENV_OVERRIDE}={forced!r}: valid values are {', '.join(FORCED)}")
    parts = {"head": [h] if (h := head_of(lm)) is not None else [], "body": body_of(lm)}
    return {part: (modules, {"half": part in FORCED[forced], "skinny": part in FORCED[forced]} if forced
                   else _measured(part, modules)) for part, modules in parts.items() if modules}


@contextlib.contextmanager
def decoding_in_half(lm: nn.Module) -> Iterator[tuple[str, ...]]:
    """Within the block, the chosen parts of `lm` compute inference-mode float32 inputs of at most HALF_ROWS rows
    from float16 copies of their weights, and up to MAX_ROWS rows as skinny float32 products where measured faster;
    yields the parts using float16. Anything that needs gradients, larger products and products that overflow
    float16 pass through the module's own float32 forward."""
    plan = _plan(lm)
    patched = []
    for modules, ways in plan.values():
        if not (ways["half"] or ways["skinny"]):
            continue
        for module in modules:
            w16 = _half_weight(module) if ways["half"] else None
            b16 = module.bias.detach().half() if w16 is not None and module.bias is not None else None
            module.forward = _decoding_forward(module, w16, b16, ways["skinny"])
            patched.append(module)
    try:
        yield tuple(part for part, (_, ways) in plan.items() if ways["half"])
    finally:
        for module in patched:
            del module.forward


def _decoding_forward(module: nn.Linear, w16: torch.Tensor | None, b16: torch.Tensor | None,
                      skinny: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    plain = module.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[:-1].numel()
        if x.dtype != torch.float32 or torch.is_grad_enabled() or rows > MAX_ROWS:
            return plain(x)
        if w16 is not None and rows <= HALF_ROWS:
            y = _half_product(x, w16, b16)
            return plain(x) if y is None else y
        if skinny and rows > 1:
            return _skinny_product(x, module.weight, module.bias)
        return plain(x)

    return forward
