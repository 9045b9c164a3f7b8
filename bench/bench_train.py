"""Training benchmarks, each a ratio measured side by side in one run on this machine:

1. matmul peak (bf16 and fp32) of this CPU, the yardstick for 2.;
2. LoRA SFT step time on `mini` in the dtype `auto` resolves to here (affectllm.dtypes) against float32 (when auto
   *is* float32, bf16 runs instead so the ratio stays visible), and the LLM part's MFU: FLOPs counted for a frozen
   base with LoRA, 4 x non-embedding params x tokens + 4 x the LM head on target tokens only (see `llm_flops`);
3. step time with vs without the frozen-tower feature cache (RAVDESS speech: decode + tower every step vs cached),
   on `mini` (prosody tower) and on `tiny` with a Whisper-base-shaped encoder (a pretrained-size tower);
4. QLoRA (NF4) vs LoRA memory of the language model.

    python bench/bench_train.py [--steps 3]                      # the full run, writes docs/results/bench_train.json
    python bench/bench_train.py --base tiny --steps 1 --skip cache memory   # plumbing smoke test, writes nothing
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

SLOW_RATIO = 8  # a dtype this many times slower at matmul than auto's is timed on one small step only


def matmul_peak(dtype: torch.dtype, size: int = 2048, max_call_s: float = 1.0, budget_s: float = 4.0) -> dict:
    """GFLOP/s of a size^3 matmul (best of up to 10 timed calls after a warm-up). A 512^3 probe first: on a CPU
    without native bf16 one 2048^3 bf16 call takes ~30 s (0.6 GFLOP/s measured on a Zen 3), so the size halves
    until one call is expected to take under `max_call_s`; the size used is reported."""
    gen = torch.Generator().manual_seed(0)
    n = 512
    a, b = torch.randn(n, n, generator=gen, dtype=dtype), torch.randn(n, n, generator=gen, dtype=dtype)
    a @ b
    t = time.perf_counter()
    a @ b
    probe_s = time.perf_counter() - t
    while size > n and probe_s * (size / n) ** 3 > max_call_s:
        size //= 2
    a, b = torch.randn(size, size, generator=gen, dtype=dtype), torch.randn(size, size, generator=gen, dtype=dtype)
    a @ b
    best, deadline, reps = float("inf"), time.perf_counter() + budget_s, 0
    while reps < 2 or (reps < 10 and time.perf_counter() < deadline):
        t = time.perf_counter()
        a @ b
        best, reps = min(best, time.perf_counter() - t), reps + 1
    return {"gflops": round(2 * size ** 3 / best / 1e9, 1), "size": size}


def _recipe(base: str, dtype: str, corpora: list[str], modalities: list[str], cache: bool, quant: bool = False,
            batch_size: int = 4):
    from affectllm.train import load_recipe

    return load_recipe("sft_lora", [f"model.base={base}", f"model.dtype={dtype}", f"data.corpora={corpora}",
                                    f"data.modalities={modalities}", "data.limit=64", f"optim.batch_size={batch_size}",
                                    f"run.feature_cache={str(cache).lower()}", f"lora.quantize_4bit={str(quant).lower()}",
                                    "data.split=trainval" if corpora == ["ravdess"] else "data.split=train"])


def timed_steps(recipe, steps: int, pipe=None) -> dict:
    """Mean step time of a second pass over the same batches (the cache, when on, fills in the first pass).
    A given `pipe` trains its projectors only (LLM and towers frozen, as in the align stage)."""
    from affectllm.train.encoding import ExampleEncoder
    from affectllm.train.examples import build_examples
    from affectllm.train.setup import parameter_groups, prepare_model

    if pipe is None:
        pipe, _ = prepare_model(recipe)
    else:
        pipe.model.language_model.requires_grad_(False)
        pipe.model.train()
    d = recipe.data
    exs = build_examples(pipe, d.corpora, d.split, d.prompt, d.modalities, limit=d.limit, seed=0,
                         closed_set_prompt=d.closed_set_prompt)
    enc = ExampleEncoder(pipe, None, use_cache=recipe.run.feature_cache)
    opt = torch.optim.AdamW(parameter_groups(pipe.model, recipe))
    bs = recipe.optim.batch_size
    batches = [exs[i * bs:(i + 1) * bs] for i in range(steps)]
    for b in batches:  # epoch 1: fills the cache (a no-op without it)
        for e in b:
            enc.encode(e)
    times, tokens, targets = [], 0, 0
    for b in batches:  # epoch 2: measured
        t = time.perf_counter()
        batch = enc.collate([enc.encode(e) for e in b])
        loss = pipe.model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
        tokens += int(batch["attention_mask"].sum())
        targets += int((batch["labels"] != -100).sum())
    out = {"step_s": sum(times) / len(times), "tokens_per_step": tokens / len(times),
           "targets_per_step": targets / len(times), "pipe": pipe}
    return out


def llm_flops(pipe, tokens: float, targets: float) -> float:
    """FLOPs of one LoRA step of the language model: 4N per token, not the usual 6N.

    6N (forward 2N + backward 4N) is for full training, where backward computes two matmuls per weight: the
    gradient w.r.t. the activations (2N, to pass it down) and w.r.t. the weight itself (2N). With LoRA the base
    weights are frozen: backward still has to push activation gradients down through every layer to reach the
    lowest adapter (2N), but it skips every base weight gradient, so forward 2N + backward 2N = 4N. The adapters
    add 6 x their own (tiny) parameter count. The LM head runs on target tokens only (modeling_affect's loss
    path) and is frozen too: 4 x its size per target token. Attention score FLOPs (~ seq^2) are left out, as in
    the 6N rule, which is fair at these ~150-token sequences. Counting 6N instead overstated MFU by 1.5x (a
    "fraction of peak" above 1 in an earlier run)."""
    lm = pipe.model.language_model
    emb = lm.get_input_embeddings().weight
    frozen = sum(p.numel() for n, p in lm.named_parameters() if p is not emb and "lora_" not in n)
    lora = sum(p.numel() for n, p in lm.named_parameters() if "lora_" in n)
    return 4 * frozen * tokens + 6 * lora * tokens + 4 * emb.numel() * targets


def _step_row(r: dict, peaks: dict, dtype: str) -> dict:
    gflops = llm_flops(r.pop("pipe"), r["tokens_per_step"], r["targets_per_step"]) / r["step_s"] / 1e9
    return {**{k: round(v, 3) for k, v in r.items()}, "dtype": dtype, "llm_gflops": round(gflops, 1),
            "mfu": round(gflops / peaks[dtype]["gflops"], 3)}


def lora_auto_vs_fp32(base: str, steps: int, peaks: dict) -> dict:
    """LoRA step time in the `auto` dtype and in float32, side by side (bf16 instead when auto is float32)."""
    from affectllm.dtypes import describe_choice, resolve_dtype_name

    auto = resolve_dtype_name("auto")
    out: dict = {"auto_resolves_to": auto, "auto_record": describe_choice()}
    other = "bfloat16" if auto == "float32" else "float32"
    if auto == "float32":
        out["note"] = ("auto is float32 on this machine; bfloat16 is measured too so the ratio is visible "
                       "(speedup_auto_over_other > 1 confirms the choice)")
    # A dtype whose matmul peak is far below auto's (bf16 without native support: ~1 GFLOP/s on a Zen 3, where one
    # batch-4 step would take ~5 min) is timed on one batch-1 step and compared per token, not per step.
    slow = peaks[other]["gflops"] * SLOW_RATIO < peaks[auto]["gflops"]
    for label, dtype in (("auto", "auto"), (other, other)):
        name = auto if label == "auto" else dtype
        n, bs = (1, 1) if label != "auto" and slow else (steps, 4)
        r = timed_steps(_recipe(base, dtype, ["goemotions"], ["text"], True, batch_size=bs), n)
        out[label] = {**_step_row(r, peaks, name), "batch_size": bs, "steps_timed": n}
        out[label]["tokens_per_s"] = round(out[label]["tokens_per_step"] / out[label]["step_s"], 1)
        print(f"lora step {label} ({name}):", out[label], flush=True)
        gc.collect()
    if slow:
        out["note_slow_other"] = (f"{other} matmul peak is < 1/{SLOW_RATIO} of {auto}'s here: timed on one batch-1 "
                                  f"step, compared in tokens/s")
    out["speedup_auto_over_other"] = round(out["auto"]["tokens_per_s"] / out[other]["tokens_per_s"], 3)
    out["speedup_basis"] = "tokens/s (training tokens per second of the LoRA step)"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="measured steps per setting (default 3)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "cache", "memory"])
    parser.add_argument("--base", default="mini", help="model of the LoRA step comparison (default mini; tiny for a "
                                                       "quick plumbing check)")
    parser.add_argument("--output", help="JSON report (default docs/results/bench_train.json for mini, none else)")
    args = parser.parse_args()
    report: dict = {"threads": torch.get_num_threads(), "cpu": os.popen("lscpu | grep 'Model name'").read().strip(),
                    "base": args.base}
    peaks = {"bfloat16": matmul_peak(torch.bfloat16), "float32": matmul_peak(torch.float32)}
    report["matmul_peak"] = peaks
    print("matmul peak:", peaks, flush=True)
    if "throughput" not in args.skip:
        report["lora_step"] = lora_auto_vs_fp32(args.base, args.steps, peaks)
    if "cache" not in args.skip:
        for cache in (False, True):
            r = timed_steps(_recipe("mini", "auto", ["ravdess"], ["audio"], cache), args.steps)
            r.pop("pipe")
            report[f"mini_ravdess_cache_{cache}"] = {k: round(v, 3) for k, v in r.items()}
            print("mini cache", cache, report[f"mini_ravdess_cache_{cache}"], flush=True)
        report["cache_speedup_mini"] = round(report["mini_ravdess_cache_False"]["step_s"]
                                             / report["mini_ravdess_cache_True"]["step_s"], 2)
        from affectllm.api import AffectPipeline
        from affectllm.presets import build_from_spec, preset_spec

        spec = preset_spec("tiny")
        spec["audio_config"] = {"model_type": "whisper", "d_model": 512, "encoder_layers": 6,
                                "encoder_attention_heads": 8, "encoder_ffn_dim": 2048, "num_mel_bins": 80,
                                "max_source_positions": 1500, "decoder_layers": 1, "vocab_size": 51865}

        for cache in (False, True):
            m, p = build_from_spec(spec)
            r = timed_steps(_recipe("tiny", "float32", ["ravdess"], ["audio"], cache), args.steps,
                            AffectPipeline(m, p, "tiny+whisper-base-shape"))
            r.pop("pipe")
            report[f"whisper_base_ravdess_cache_{cache}"] = {k: round(v, 3) for k, v in r.items()}
            print("whisper-base cache", cache, report[f"whisper_base_ravdess_cache_{cache}"], flush=True)
        report["cache_speedup_whisper_base"] = round(report["whisper_base_ravdess_cache_False"]["step_s"]
                                                     / report["whisper_base_ravdess_cache_True"]["step_s"], 2)
    if "memory" not in args.skip:
        from affectllm.train.setup import prepare_model

        for quant in (False, True):  # bytes, not speed: bf16 LoRA base vs NF4 base, whatever `auto` says here
            pipe, _ = prepare_model(_recipe("mini", "bfloat16", ["goemotions"], ["text"], True, quant))
            lm = pipe.model.language_model
            nbytes = sum(p.numel() * p.element_size() for p in lm.parameters())
            nbytes += sum(b.numel() * b.element_size() for b in lm.buffers())
            report[f"llm_bytes_{'qlora' if quant else 'lora'}"] = nbytes
            del pipe
            gc.collect()
        report["qlora_vs_lora_memory"] = round(report["llm_bytes_qlora"] / report["llm_bytes_lora"], 3)
    print(json.dumps(report, indent=2))
    out = args.output or (Path(__file__).resolve().parents[1] / "docs" / "results" / "bench_train.json"
                          if args.base == "mini" else None)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
