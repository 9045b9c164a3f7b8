"""The two embedded LLMs side by side: `mini` (Gemma-3-270M base) vs `mini-smol` (SmolLM2-135M-Instruct).

Measured in one process, the two models interleaved rep by rep (so load from other jobs on a shared box hits both
alike), in the dtype `auto` resolves to on this machine (affectllm.dtypes; float32 on CPUs without fast bf16):

1. parameters: transformer body vs token embedding / LM head (both models tie the head to the embedding);
2. LoRA SFT step (the `sft_lora` recipe's adapter: r 16 on every linear layer of the LLM, AdamW), batch 8 of one
   realistic GoEmotions-like text prompt (emotion_ov) + a ~20-token JSON answer as the target;
3. generation speed: batch 1, 32 new tokens (min_new_tokens=32, so neither stops early), greedy, prefill included.

    nice -n 10 python bench/bench_llms.py [--reps 3] [--threads 2] [--dtype auto]
writes docs/results/bench_llms.json and prints a table. On a box shared with other jobs, run it with
OMP_WAIT_POLICY=PASSIVE: with libgomp's default, idle OpenMP threads spin on cores they do not get (measured here,
2 cores at load ~5-7: mini LoRA step 38 s and 1.2 tok/s with the default vs 18.9 s and 3.9 tok/s with PASSIVE).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

PRESETS = ("mini", "mini-smol")
TEXT = ("Honestly I did not expect much from the meetup, but someone had saved me a seat and we talked about old "
        "games until midnight. Is it weird to feel this grateful for a random Tuesday?")
TARGET = '{"labels": ["joy", "gratitude"], "explanation": "text: feels grateful"}'


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}
    flags = info.get("Flags", "").split()
    return (f"{info.get('Model name', platform.processor())} (family {info.get('CPU family')}, model "
            f"{info.get('Model')}, stepping {info.get('Stepping')}; avx512f={'avx512f' in flags}, "
            f"avx512_bf16={'avx512_bf16' in flags}, amx_bf16={'amx_bf16' in flags}; {info.get('CPU(s)')} CPUs)")


def param_counts(lm) -> dict:
    emb = lm.get_input_embeddings().weight
    head = lm.get_output_embeddings().weight
    tied = head.data_ptr() == emb.data_ptr()
    base = {n: p for n, p in lm.named_parameters() if "lora_" not in n}
    total = sum(p.numel() for p in base.values())  # named_parameters lists a tied weight once
    embedding = emb.numel() + (0 if tied else head.numel())
    return {"total": total, "body": total - embedding, "embedding_and_lm_head": embedding, "tied_lm_head": tied,
            "embedding_share": round(embedding / total, 3), "vocab": emb.shape[0], "hidden": emb.shape[1],
            "layers": lm.config.num_hidden_layers,
            "lora_trainable": sum(p.numel() for n, p in lm.named_parameters() if "lora_" in n)}


def setup(preset: str, dtype: str) -> dict:
    from affectllm.train import load_recipe
    from affectllm.train.setup import parameter_groups, prepare_model

    t = time.perf_counter()
    recipe = load_recipe("sft_lora", [f"model.base={preset}", f"model.dtype={dtype}"])
    pipe, _ = prepare_model(recipe)
    load_s = time.perf_counter() - t
    messages, _ = pipe.build_messages(text=TEXT)
    batch = pipe.processor([messages] * 8, targets=[TARGET] * 8)
    prompt = pipe.processor([messages])
    return {"preset": preset, "pipe": pipe, "batch": dict(batch), "prompt": dict(prompt), "load_s": load_s,
            "opt": torch.optim.AdamW(parameter_groups(pipe.model, recipe)), "step_s": [], "gen_s": [],
            "step_cpu_s": [], "gen_cpu_s": [],
            "params": param_counts(pipe.model.language_model),
            "tokens_per_sample": int(batch["attention_mask"][0].sum()),
            "target_tokens_per_sample": int((batch["labels"][0] != -100).sum()),
            "prompt_tokens": int(prompt["input_ids"].shape[1])}


def train_step(r: dict) -> float:
    model = r["pipe"].model
    model.train()
    t, c = time.perf_counter(), time.process_time()
    loss = model(**r["batch"]).loss
    loss.backward()
    r["opt"].step()
    r["opt"].zero_grad(set_to_none=True)
    r["step_cpu_s"].append(time.process_time() - c)
    r["last_loss"] = float(loss.detach())
    return time.perf_counter() - t


@torch.no_grad()
def generate(r: dict, new: int = 32) -> float:
    pipe = r["pipe"]
    pipe.model.eval()
    tok = pipe.processor.tokenizer
    t, c = time.perf_counter(), time.process_time()
    out = pipe.model.generate(**r["prompt"], max_new_tokens=new, min_new_tokens=new, pad_token_id=tok.pad_token_id)
    dt = time.perf_counter() - t
    r["gen_cpu_s"].append(time.process_time() - c)
    assert out.shape[1] == new, out.shape
    r["sample_text"] = tok.decode(out[0], skip_special_tokens=True)
    return dt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="timed reps per model and measurement (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="auto", help="auto (default), float32 or bfloat16")
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "docs/results/bench_llms.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from affectllm.dtypes import describe_choice, resolve_dtype_name

    dtype = resolve_dtype_name(args.dtype)
    import peft  # noqa: F401  (imports outside the timed model loads)
    from affectllm.train.setup import prepare_model  # noqa: F401

    runs = [setup(p, dtype) for p in PRESETS]
    for r in runs:  # warm-up (first-call allocations, oneDNN primitive creation), not counted
        train_step(r)
        generate(r, 4)
        r["step_cpu_s"].clear()
        r["gen_cpu_s"].clear()
    load_before = os.getloadavg()
    for _ in range(args.reps):  # interleaved
        for r in runs:
            r["step_s"].append(train_step(r))
        for r in runs:
            r["gen_s"].append(generate(r))
    report = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "dtype": dtype,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp default, spins then sleeps)"),
              "dtype_auto_record": describe_choice() if args.dtype == "auto" else None,
              "torch": torch.__version__, "reps": args.reps, "batch_size": 8, "new_tokens": 32,
              "loadavg_1_5_15_before_after": [list(load_before), list(os.getloadavg())],
              "note": ("box shared with other jobs: medians of interleaved reps, min = the least disturbed one; "
                       "cpu_s = process CPU seconds (all threads), which depends less on the CPU share we got"),
              "models": {}}
    for r in runs:
        pc, toks, tgts = r["params"], r["tokens_per_sample"] * 8, r["target_tokens_per_sample"] * 8
        # frozen base + LoRA: 4 x body params per token (fwd 2 + bwd activation grads 2), the LM head on target
        # tokens only (modeling_affect's loss path), adapters 6 x their size (bench_train.llm_flops, same rule)
        step_gflop = (4 * pc["body"] * toks + 6 * pc["lora_trainable"] * toks
                      + 4 * pc["embedding_and_lm_head"] * tgts) / 1e9
        report["models"][r["preset"]] = {
            "params": r["params"], "load_s": round(r["load_s"], 1),
            "tokens_per_sample": r["tokens_per_sample"], "target_tokens_per_sample": r["target_tokens_per_sample"],
            "lora_step_s_median": round(statistics.median(r["step_s"]), 3),
            "lora_step_s_min": round(min(r["step_s"]), 3),
            "lora_step_s_all": [round(x, 3) for x in r["step_s"]],
            "lora_step_cpu_s_median": round(statistics.median(r["step_cpu_s"]), 3),
            "loss_last": round(r["last_loss"], 3),
            "lora_step_gflop": round(step_gflop, 1),
            "lora_step_gflops_at_min": round(step_gflop / min(r["step_s"]), 1),
            "gen_gflop_per_token": round(2 * (pc["body"] + pc["embedding_and_lm_head"]) / 1e9, 3),
            "prompt_tokens": r["prompt_tokens"],
            "gen_tok_per_s_median": round(32 / statistics.median(r["gen_s"]), 2),
            "gen_tok_per_s_best": round(32 / min(r["gen_s"]), 2), "gen_s_all": [round(x, 3) for x in r["gen_s"]],
            "gen_cpu_s_median": round(statistics.median(r["gen_cpu_s"]), 3),
            "sample_text": r["sample_text"]}
    a, b = (report["models"][p] for p in PRESETS)
    report["smol_over_mini"] = {
        "lora_step_speedup": round(a["lora_step_s_median"] / b["lora_step_s_median"], 2),
        "lora_step_speedup_cpu_s": round(a["lora_step_cpu_s_median"] / b["lora_step_cpu_s_median"], 2),
        "gen_speedup": round(b["gen_tok_per_s_median"] / a["gen_tok_per_s_median"], 2),
        "gen_speedup_cpu_s": round(a["gen_cpu_s_median"] / b["gen_cpu_s_median"], 2)}
    rows = [("params total (M)", lambda m: f"{m['params']['total'] / 1e6:.1f}"),
            ("  body (M)", lambda m: f"{m['params']['body'] / 1e6:.1f}"),
            ("  embedding = tied LM head (M)", lambda m: f"{m['params']['embedding_and_lm_head'] / 1e6:.1f}"),
            ("layers / hidden / vocab", lambda m: f"{m['params']['layers']} / {m['params']['hidden']} / "
                                                  f"{m['params']['vocab']}"),
            ("LoRA trainable (M)", lambda m: f"{m['params']['lora_trainable'] / 1e6:.2f}"),
            ("tokens/sample (targets)", lambda m: f"{m['tokens_per_sample']} ({m['target_tokens_per_sample']})"),
            ("LoRA step GFLOP (4N rule) / GFLOP/s at min",
             lambda m: f"{m['lora_step_gflop']:.0f} / {m['lora_step_gflops_at_min']:.0f}"),
            ("generation GFLOP per token (2N incl. head)", lambda m: f"{m['gen_gflop_per_token']:.2f}"),
            ("LoRA step, batch 8 (s, median/min)",
             lambda m: f"{m['lora_step_s_median']:.2f} / {m['lora_step_s_min']:.2f}"),
            ("  CPU seconds per step (median)", lambda m: f"{m['lora_step_cpu_s_median']:.2f}"),
            ("generate 32 tok, batch 1 (tok/s, median/best)",
             lambda m: f"{m['gen_tok_per_s_median']:.1f} / {m['gen_tok_per_s_best']:.1f}"),
            ("  CPU seconds per 32-token generation (median)", lambda m: f"{m['gen_cpu_s_median']:.2f}"),
            ("load (s)", lambda m: f"{m['load_s']:.1f}")]
    print(f"\n{report['cpu']}, {report['threads']} threads, dtype {dtype}, "
          f"OMP_WAIT_POLICY {report['omp_wait_policy']}")
    print(f"{'':48s}{'mini (Gemma-3-270M)':>22s}{'mini-smol (SmolLM2-135M)':>26s}")
    for label, fmt in rows:
        print(f"{label:48s}{fmt(a):>22s}{fmt(b):>26s}")
    sp = report["smol_over_mini"]
    print(f"mini-smol over mini: LoRA step {sp['lora_step_speedup']}x (CPU s {sp['lora_step_speedup_cpu_s']}x), "
          f"generation {sp['gen_speedup']}x (CPU s {sp['gen_speedup_cpu_s']}x); "
          f"load avg {report['loadavg_1_5_15_before_after']}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    for r in runs:
        del r["pipe"], r["opt"]
    gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
