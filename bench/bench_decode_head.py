"""The float16 decoding head (affectllm/decode_head.py) against float32, side by side in one run, on real eval
requests: generation seconds of each, and how often the answers agree (same text; same parsed labels).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_decode_head.py [--model mini-affect] [--tasks ov_meld,ov_ravdess,ov_ckplus]
        [--limit 12] [--batch-size 1] [--output docs/results/bench_decode_head.json]

Batch 1 is what `affectllm chat` does. Both passes answer the same requests with the same loaded model (in process,
transformers backend), alternating per task; only AFFECTLLM_DECODE_HEAD differs. Run it on a quiet box."""
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


def main(argv=None) -> dict:
    from affectllm.decode_head import ENV_OVERRIDE
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
        for mode in ("float32", "float16"):
            os.environ[ENV_OVERRIDE] = mode
            backend.generate([built[0][1]])  # warm-up (and the float16 copy), untimed
            t0 = time.perf_counter()
            answers[mode] = [r.text for r in backend.generate([b[1] for b in built])]
            seconds[mode] = time.perf_counter() - t0
        same_text = [x == y for x, y in zip(answers["float32"], answers["float16"])]
        same_labels = [parse_answer(task.parser, x, it).get("labels") == parse_answer(task.parser, y, it).get("labels")
                       for (it, _), x, y in zip(built, answers["float32"], answers["float16"])]
        rows.append({"task": task.name, "n": len(built), "generate_s": {k: round(v, 2) for k, v in seconds.items()},
                     "speedup": round(seconds["float32"] / seconds["float16"], 3),
                     "same_text": sum(same_text), "same_labels": sum(same_labels),
                     "differing": [{"float32": x, "float16": y} for x, y, s in
                                   zip(answers["float32"], answers["float16"], same_text) if not s][:3]})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "differing"}), flush=True)
    os.environ.pop(ENV_OVERRIDE, None)
    total = {m: sum(r["generate_s"][m] for r in rows) for m in ("float32", "float16")}
    out = {"model": a.model, "cpu": cpu_model(), "threads": os.cpu_count(), "batch_size": a.batch_size,
           "tasks": rows, "generate_s": {k: round(v, 2) for k, v in total.items()},
           "speedup": round(total["float32"] / total["float16"], 3),
           "same_text": f"{sum(r['same_text'] for r in rows)}/{sum(r['n'] for r in rows)}",
           "same_labels": f"{sum(r['same_labels'] for r in rows)}/{sum(r['n'] for r in rows)}"}
    print(json.dumps({k: v for k, v in out.items() if k != "tasks"}))
    if a.output:
        Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
