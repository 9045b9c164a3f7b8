"""Training benchmarks, each a ratio measured side by side in one run on this machine:

1. matmul peak (bf16 and fp32) of this CPU, the yardstick for 2.;
2. LLM-part throughput of a LoRA SFT step on `mini` as a fraction of that peak (FLOPs counted as
   6 x non-embedding params x tokens + the LM head on target tokens only);
3. step time with vs without the frozen-tower feature cache (RAVDESS speech: decode + tower every step vs cached),
   on `mini` (prosody tower) and on `tiny` with a Whisper-base-shaped encoder (a pretrained-size tower);
4. QLoRA (NF4) vs LoRA memory of the language model.

    python bench/bench_train.py [--steps 3]
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


def matmul_peak(dtype: torch.dtype, m: int = 2048, n: int = 2048, k: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * n * k * reps / (time.perf_counter() - t) / 1e9


def _recipe(base: str, dtype: str, corpora: list[str], modalities: list[str], cache: bool, quant: bool = False):
    from affectllm.train import load_recipe

    return load_recipe("sft_lora", [f"model.base={base}", f"model.dtype={dtype}", f"data.corpora={corpora}",
                                    f"data.modalities={modalities}", "data.limit=64", "optim.batch_size=4",
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
    lm = pipe.model.language_model
    emb = lm.get_input_embeddings().weight
    non_emb = sum(p.numel() for n, p in lm.named_parameters() if p is not emb and "lora_" not in n)
    return 6 * non_emb * tokens + 6 * emb.numel() * targets


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "cache", "memory"])
    args = parser.parse_args()
    report: dict = {"threads": torch.get_num_threads(), "cpu": os.popen("lscpu | grep 'Model name'").read().strip()}
    report["matmul_gflops"] = {"bfloat16": round(matmul_peak(torch.bfloat16)), "float32": round(matmul_peak(torch.float32))}
    print("matmul peak GFLOP/s:", report["matmul_gflops"], flush=True)
    if "throughput" not in args.skip:
        for dtype in ("bfloat16", "float32"):
            r = timed_steps(_recipe("mini", dtype, ["goemotions"], ["text"], True), args.steps)
            gflops = llm_flops(r.pop("pipe"), r["tokens_per_step"], r["targets_per_step"]) / r["step_s"] / 1e9
            report[f"mini_sft_{dtype}"] = {**{k: round(v, 3) for k, v in r.items()}, "llm_gflops": round(gflops, 1),
                                           "fraction_of_bf16_peak": round(gflops / report["matmul_gflops"]["bfloat16"], 3),
                                           "fraction_of_own_dtype_peak": round(gflops / report["matmul_gflops"][dtype], 3)}
            print(dtype, report[f"mini_sft_{dtype}"], flush=True)
            gc.collect()
    if "cache" not in args.skip:
        for cache in (False, True):
            r = timed_steps(_recipe("mini", "float32", ["ravdess"], ["audio"], cache), args.steps)
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

        for quant in (False, True):
            pipe, _ = prepare_model(_recipe("mini", "bfloat16", ["goemotions"], ["text"], True, quant))
            lm = pipe.model.language_model
            nbytes = sum(p.numel() * p.element_size() for p in lm.parameters())
            nbytes += sum(b.numel() * b.element_size() for b in lm.buffers())
            report[f"llm_bytes_{'qlora' if quant else 'lora'}"] = nbytes
            del pipe
            gc.collect()
        report["qlora_vs_lora_memory"] = round(report["llm_bytes_qlora"] / report["llm_bytes_lora"], 3)
    print(json.dumps(report, indent=2))
    out = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench_train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
