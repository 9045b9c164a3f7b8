"""Decoding from float16 copies (affectllm/decode_half.py) against float32, side by side in one run, on real eval
requests: generation seconds of float32, float16 head only, and float16 head + body, and how often each answer
agrees with float32's (same text; same parsed labels).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_decode_half.py [--model mini-affect] [--tasks ov_meld,ov_ravdess,ov_ckplus]
        [--limit 12] [--batch-size 1] [--output docs/results/bench_decode_half.json]

Batch 1 is what `affectllm chat` does. All passes answer the same requests with the same loaded model (in process,
transformers backend), alternating per task; only AFFECTLLM_DECODE_HALF differs. Run it on a quiet box."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
MODES = ("none", "head", "all")  # float32 throughout; float16 head; float16 head and body


def main(argv=None) -> dict:
    from affectllm.decode_half import ENV_OVERRIDE
    from affectllm.evaluation.backends import make_backend
    from affectllm.evaluation.runner import RunContext, _request
    from affectllm.evaluation.suites import SUITES
    from affectllm.evaluation.suites.base import parse_answer
    from affectllm.evaluation.tasks import resolve_tasks
    from affectllm.model_card import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini-affect")
    ap.add_argument("--tasks", default="ov_meld,ov_ravdess,ov_ckplus")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--output")
    a = ap.parse_args(argv)
    backend = make_backend(a.model, "hf", batch_size=a.batch_size)
    rows, ctx = [], RunContext()
    for task in resolve_tasks(a.tasks, a.limit):
        suite = SUITES.get(task.suite)()
        items = suite.items(task, suite.load_samples(task, ctx), ctx)
        built = [(it, _request(task, it, 0, backend)[0]) for it in items]
        answers, seconds = {}, {}
        for mode in MODES:
            os.environ[ENV_OVERRIDE] = mode
            backend.generate([built[0][1]])  # warm-up (and the float16 copy), untimed
            t0 = time.perf_counter()
            answers[mode] = [r.text for r in backend.generate([b[1] for b in built])]
            seconds[mode] = time.perf_counter() - t0
        row = {"task": task.name, "n": len(built), "generate_s": {k: round(v, 2) for k, v in seconds.items()},
               "speedup": {}, "same_text": {}, "same_labels": {}, "differing": {}}
        for mode in MODES[1:]:
            same_text = [x == y for x, y in zip(answers["none"], answers[mode])]
            row["speedup"][mode] = round(seconds["none"] / seconds[mode], 3)
            row["same_text"][mode] = sum(same_text)
            row["same_labels"][mode] = sum(parse_answer(task.parser, x, it).get("labels") ==
                                           parse_answer(task.parser, y, it).get("labels")
                                           for (it, _), x, y in zip(built, answers["none"], answers[mode]))
            row["differing"][mode] = [{"none": x, mode: y} for x, y, same in
                                      zip(answers["none"], answers[mode], same_text) if not same][:3]
        rows.append(row)
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "differing"}), flush=True)
    os.environ.pop(ENV_OVERRIDE, None)
    total, n = {m: sum(r["generate_s"][m] for r in rows) for m in MODES}, sum(r["n"] for r in rows)
    out = {"model": a.model, "cpu": cpu_model(), "threads": os.cpu_count(), "batch_size": a.batch_size,
           "modes": {"none": "float32", "head": "float16 head", "all": "float16 head and body"},
           "tasks": rows, "generate_s": {k: round(v, 2) for k, v in total.items()},
           "speedup": {m: round(total["none"] / total[m], 3) for m in MODES[1:]},
           "same_text": {m: f"{sum(r['same_text'][m] for r in rows)}/{n}" for m in MODES[1:]},
           "same_labels": {m: f"{sum(r['same_labels'][m] for r in rows)}/{n}" for m in MODES[1:]}}
    print(json.dumps({k: v for k, v in out.items() if k != "tasks"}))
    if a.output:
        Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
