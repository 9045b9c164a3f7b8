"""Drafted greedy decoding (affectllm/draft_decoding.py) against transformers' greedy `generate`, side by side in one
run on real eval inputs, the way `affectllm chat` answers (batch 1, LoRA merged, float16 decoding where measured
faster): generation seconds of each, forward passes, drafted and accepted tokens, and whether the answers agree.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_draft_decoding.py [--model mini-affect]
        [--tasks ov_meld,ov_ravdess,ov_ckplus,ov_mer2023] [--limit 12] [--output docs/results/bench_draft_decoding.json]

Both modes answer the same prompts with the same loaded model, alternating per prompt; only `draft_phrases` differs.
Run it on a quiet box."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> dict:
    import torch

    from affectllm import draft_decoding
    from affectllm.api import load
    from affectllm.evaluation.runner import RunContext, _request
    from affectllm.evaluation.suites import SUITES
    from affectllm.evaluation.tasks import resolve_tasks
    from affectllm.model_card import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini-affect")
    ap.add_argument("--tasks", default="ov_meld,ov_ravdess,ov_ckplus,ov_mer2023")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--output")
    a = ap.parse_args(argv)
    pipe = load(a.model, merge_lora=True)  # what `affectllm chat` answers with
    requests_of = SimpleNamespace(video_use_audio=pipe.model.config.video_use_audio)  # what _request asks of one
    phrases, rows, ctx = pipe.draft_phrases(), [], RunContext()
    tok = pipe.processor.tokenizer

    stats: dict = {}
    real = draft_decoding.draft_greedy  # the real generate path, with its statistics recorded
    draft_decoding.draft_greedy = lambda *args, **kw: real(*args, stats=stats, **kw)

    def answer(messages, drafts):
        batch = pipe.processor([messages])
        stats.clear()
        t0 = time.perf_counter()
        ids = pipe.model.generate(**batch, max_new_tokens=128, pad_token_id=tok.pad_token_id,
                                  draft_phrases=phrases if drafts else None)
        if drafts and not stats:
            raise RuntimeError("generate did not take the drafted path for this prompt")
        return tok.decode(ids[0], skip_special_tokens=True), time.perf_counter() - t0, dict(stats)

    for task in resolve_tasks(a.tasks, a.limit):
        suite = SUITES.get(task.suite)()
        items = suite.items(task, suite.load_samples(task, ctx), ctx)
        msgs = [_request(task, it, 0, requests_of)[0].messages for it in items]
        answer(msgs[0], True)  # warm-up (float16 copies, first-call costs), untimed
        seconds, same, passes, drafted, accepted, tokens, differing = {"plain": 0.0, "drafts": 0.0}, 0, 0, 0, 0, 0, []
        for m in msgs:
            plain, t_plain, _ = answer(m, False)
            fast, t_fast, st = answer(m, True)
            seconds["plain"] += t_plain
            seconds["drafts"] += t_fast
            same += plain == fast
            passes, drafted, accepted, tokens = (passes + st["passes"], drafted + st["drafted"],
                                                 accepted + st["accepted"], tokens + st["tokens"])
            if plain != fast and len(differing) < 3:
                differing.append({"plain": plain, "drafts": fast})
        rows.append({"task": task.name, "n": len(msgs), "generate_s": {k: round(v, 2) for k, v in seconds.items()},
                     "speedup": round(seconds["plain"] / seconds["drafts"], 3), "same_text": same,
                     "tokens": tokens, "passes": passes, "drafted": drafted, "accepted": accepted,
                     "differing": differing})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "differing"}), flush=True)
    total = {m: sum(r["generate_s"][m] for r in rows) for m in ("plain", "drafts")}
    out = {"model": a.model, "cpu": cpu_model(), "threads": torch.get_num_threads(), "tasks": rows,
           "generate_s": {k: round(v, 2) for k, v in total.items()},
           "speedup": round(total["plain"] / total["drafts"], 3),
           "same_text": f"{sum(r['same_text'] for r in rows)}/{sum(r['n'] for r in rows)}",
           "tokens_per_pass": round(sum(r["tokens"] for r in rows) / max(sum(r["passes"] for r in rows), 1), 2)}
    print(json.dumps({k: v for k, v in out.items() if k != "tasks"}))
    if a.output:
        Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
