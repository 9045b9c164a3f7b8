"""EmoBench EU with the untuned offline LLMs, each choice scored by its log-likelihood after the scenario and
EmoBench's question (the usual zero-shot multiple-choice method for base LLMs): what the LLMs bring before any
affect training. Chance is 1/6; always-first is the subset's position prior.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_emobench_base_llms.py [--output docs/results/bench_emobench_base_llms.json]

Evidence for the model card, measured once: nothing here is chosen on EmoBench. Each choice's log-likelihood is
reported summed over its tokens and as the mean per token (both usual; neither is picked)."""
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


def choice_scores(lm, tok, context: str, choices: list[str]) -> list[tuple[float, float]]:
    """(summed, mean per token) log-likelihood of each choice after `context`."""
    import torch

    ctx = tok(context, add_special_tokens=True).input_ids
    out = []
    for choice in choices:
        ans = tok(" " + choice, add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = lm(torch.tensor([ctx + ans])).logits[0, len(ctx) - 1:-1].float().log_softmax(-1)
        token_lp = logp[torch.arange(len(ans)), torch.tensor(ans)]
        out.append((float(token_lp.sum()), float(token_lp.mean())))
    return out


def main(argv=None) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from affectllm.evaluation.degenerate import wilson
    from affectllm.evaluation.suites.emobench import question
    from affectllm.model_card import cpu_model
    from affectllm.train.examples import load_split
    from affectllm.weights import gemma3_270m_dir
    from affectllm.weights_smollm2 import smollm2_135m_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output")
    a = ap.parse_args(argv)
    items = [s for s in load_split("emobench", "test", None, "error") if s.meta.get("task") == "EU"]
    if not items:
        raise SystemExit("no EmoBench EU items: is ../shared/data (or AFFECTLLM_DATA) there?")
    golds = [s.meta["choices"].index(s.meta["answer"]) for s in items]
    n = len(items)
    out = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "n": n,
           "chance": round(sum(1 / len(s.meta["choices"]) for s in items) / n, 3),
           "always_first": round(sum(g == 0 for g in golds) / n, 3), "llms": {}}
    for name, folder in (("gemma-3-270m (base)", gemma3_270m_dir()), ("smollm2-135m-instruct", smollm2_135m_dir())):
        t0 = time.time()
        tok = AutoTokenizer.from_pretrained(folder)
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        hits = {"sum": 0, "mean": 0}
        for s, gold in zip(items, golds):
            context = f"{s.text}\nQuestion: {question(s)}\nAnswer:"
            scores = choice_scores(lm, tok, context, list(s.meta["choices"]))
            for k, idx in (("sum", 0), ("mean", 1)):
                hits[k] += max(range(len(scores)), key=lambda i: scores[i][idx]) == gold
        out["llms"][name] = {k: {"accuracy": round(v / n, 3), "ci95": [round(x, 3) for x in wilson(v, n)]}
                             for k, v in hits.items()}
        out["llms"][name]["seconds"] = round(time.time() - t0, 1)
        print(name, json.dumps(out["llms"][name]), flush=True)
    print(json.dumps({k: v for k, v in out.items() if k != "llms"}))
    if a.output:
        Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
