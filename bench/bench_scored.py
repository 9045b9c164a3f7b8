"""Scored candidates vs generation on one closed-set task, side by side in one run (issue 12).

    python bench/bench_scored.py --model tiny --task rec_meld_dev --limit 8            # in process (hf)
    python bench/bench_scored.py --model http://127.0.0.1:8000/v1 --task rec_meld_dev  # a vLLM OpenAI server

Times (a) greedy generation of up to --max-new-tokens tokens and (b) one scored-candidate pass (full-sequence
log-likelihood of every candidate answer) over the same requests, and reports the speed-up and the agreement of
the scored argmax with the generated label where the generation parses into a candidate. JSON to stdout.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> dict:
    from affectllm.evaluation.backends import make_backend
    from affectllm.evaluation.runner import RunContext, _request
    from affectllm.evaluation.scored import score_requests
    from affectllm.evaluation.suites import SUITES
    from affectllm.evaluation.suites.base import parse_answer
    from affectllm.evaluation.tasks import resolve_tasks

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--task", default="rec_meld_dev")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--mode", default=None, help="dummy backend mode")
    ap.add_argument("--output", help="also write the JSON here (e.g. docs/results/bench_scored.json)")
    a = ap.parse_args(argv)
    task = resolve_tasks(a.task, a.limit)[0]
    backend = make_backend(a.model, a.backend, batch_size=a.batch_size, mode=a.mode)
    suite, ctx = SUITES.get(task.suite)(), RunContext()
    items = suite.items(task, suite.load_samples(task, ctx), ctx)
    built = [(it, *_request(task, it, 0, backend)) for it in items]
    for _, req, _, _ in built:
        req.max_new_tokens, req.top_logprobs = a.max_new_tokens, 0
    backend.generate([built[0][1]])  # warm-up of both paths, untimed
    backend.score(score_requests(task, suite, built[:1]))
    t0 = time.perf_counter()
    gen = backend.generate([b[1] for b in built])
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    scored = backend.score(score_requests(task, suite, built))
    t_score = time.perf_counter() - t0
    agree, parsed = [], 0
    for (it, req, _, _), g, s in zip(built, gen, scored):
        cands = [c.lower() for c in req.oracle.get("candidates") or []]
        labels = [str(x).lower() for x in parse_answer(task.parser, g.text, it).get("labels") or []]
        if labels and labels[0] in cands and s.logliks:
            parsed += 1
            agree.append(cands[int(np.argmax(s.logliks))] == labels[0])
    out = {"task": task.name, "model": a.model, "n": len(built), "max_new_tokens": a.max_new_tokens,
           "generate_s": round(t_gen, 3), "score_s": round(t_score, 3),
           "speedup": round(t_gen / t_score, 2) if t_score else None, "n_generation_parsed": parsed,
           "argmax_agreement": round(float(np.mean(agree)), 4) if agree else None}
    out["machine"] = machine()
    print(json.dumps(out))
    if a.output:
        with open(a.output, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
    return out


def machine() -> dict:
    import os
    import platform

    import torch

    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


if __name__ == "__main__":
    main()
