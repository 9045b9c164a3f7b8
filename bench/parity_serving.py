"""Parity of gateway + vLLM with the transformers path (AffectPipeline's processor + model.generate), greedy.

    .venv/bin/python bench/parity_serving.py --model mini --dtype float32      # must be identical tokens
    .venv/bin/python bench/parity_serving.py --model mini --dtype bfloat16     # report agreement and logprob drift

For each request (text-only, audio, image, video with the emotion_ov prompt) it compares the generated token ids,
the first token, and the logprob of each generated token up to the first divergence. Prints a table and, with
--json, writes the numbers."""
from __future__ import annotations

import argparse
import json
import time

import torch

from serving_common import cases, to_openai


def reference(pipe, messages, max_new_tokens):
    batch = pipe.processor([messages])
    with torch.no_grad():
        out = pipe.model.generate(**batch, max_new_tokens=max_new_tokens, return_dict_in_generate=True,
                                  output_logits=True, pad_token_id=pipe.processor.tokenizer.pad_token_id)
    ids = out.sequences[0].tolist()
    lps = [float(torch.log_softmax(s[0].float(), -1)[t]) for s, t in zip(out.logits, ids)]
    return ids, lps, int(batch["input_ids"].shape[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mini")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--n-text", type=int, default=3)
    ap.add_argument("--n-media", type=int, default=2)
    ap.add_argument("--enforce-eager", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()

    import httpx

    from affectllm.api import load
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.server import VLLMOptions, start

    todo = cases(args.n_text, args.n_media)
    pipe = load(args.model, dtype=args.dtype)
    t0 = time.perf_counter()
    refs = {name: reference(pipe, msgs, args.max_new_tokens) for name, msgs in todo}
    hf_s = time.perf_counter() - t0
    del pipe
    running = start(args.model, backend="vllm", dtype=args.dtype, cfg=ServeConfig(port=0),
                    vllm=VLLMOptions(gpu_memory_utilization=0.15, enforce_eager=args.enforce_eager))
    rows = []
    try:
        with httpx.Client(base_url=running.url, timeout=600) as http:
            for name, msgs in todo:
                body = {"model": args.model, "messages": to_openai(msgs), "max_tokens": args.max_new_tokens,
                        "temperature": 0, "logprobs": True, "return_token_ids": True}
                resp = http.post("/v1/chat/completions", json=body)
                resp.raise_for_status()
                choice = resp.json()["choices"][0]
                got = choice["token_ids"]
                got_lps = [e["logprob"] for e in choice["logprobs"]["content"]]
                ref, ref_lps, n_prompt = refs[name]
                agree = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
                diffs = [abs(a - b) for a, b in zip(got_lps[:agree], ref_lps[:agree])]
                rows.append({"case": name, "prompt_tokens": n_prompt, "new_tokens": len(ref),
                             "identical": got == ref, "first_token_same": bool(got and ref and got[0] == ref[0]),
                             "agree_prefix": agree, "max_logprob_diff": max(diffs) if diffs else None,
                             "mean_logprob_diff": sum(diffs) / len(diffs) if diffs else None})
    finally:
        running.stop()
    print(f"\nparity: {args.model} {args.dtype}, greedy, {args.max_new_tokens} new tokens "
          f"(transformers reference took {hf_s:.0f} s)")
    print(f"{'case':8s} {'prompt':>6s} {'new':>4s} {'identical':>9s} {'first':>5s} {'agree':>5s} {'max|dlp|':>10s}")
    for r in rows:
        d = f"{r['max_logprob_diff']:.2e}" if r["max_logprob_diff"] is not None else "-"
        print(f"{r['case']:8s} {r['prompt_tokens']:6d} {r['new_tokens']:4d} {str(r['identical']):>9s} "
              f"{str(r['first_token_same']):>5s} {r['agree_prefix']:5d} {d:>10s}")
    n_same = sum(r["identical"] for r in rows)
    print(f"identical: {n_same}/{len(rows)}; first token same: {sum(r['first_token_same'] for r in rows)}/{len(rows)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "dtype": args.dtype, "rows": rows}, f, indent=2)
    return 0 if n_same == len(rows) or args.dtype != "float32" else 1


if __name__ == "__main__":
    raise SystemExit(main())
