"""What a one-shot `affectllm chat` costs on this machine, with the shipped LoRA kept as a PEFT adapter against
merged into the weights without PEFT (what `chat` does), each in fresh processes (imports, load, one answer),
alternating, side by side in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_chat.py [--model mini-affect] [--repeats 2]

Why: the chat bar is 20 s per answer (text, a wav, an mp4) in a fresh process on a 2-core CPU; such a process pays
imports and weight loading once per answer, so those phases matter as much as decoding. Writes
docs/results/bench_chat.json; run it on a quiet box (another job on the cores doubles every number)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from affectllm.model_card import cpu_model  # noqa: E402  (one reader of the CPU model for reports)
TEXT = "I waited two hours and nobody even called to say they were late."


def child(model: str, merged: bool) -> None:
    """One fresh process, as `affectllm chat` runs: imports, load, one answer; prints its timings as JSON."""
    t0 = time.perf_counter()
    import torch  # noqa: F401  (timed with the rest of the imports)

    from affectllm.api import load

    t1 = time.perf_counter()
    pipe = load(model, merge_lora=merged)
    t2 = time.perf_counter()
    r = pipe.chat(text=TEXT)
    n = len(pipe.processor.tokenizer(r.raw, add_special_tokens=False)["input_ids"])
    print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "generate_s": r.timings["generate_s"], "tokens": n,
                      "labels": r.prediction.labels, "peft_imported": "peft" in sys.modules,
                      "dtype": str(pipe.model.dtype)}))


def main(argv=None) -> dict:
    import subprocess

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini-affect")
    ap.add_argument("--repeats", type=int, default=2, help="fresh processes per variant, alternating")
    ap.add_argument("--output", default=str(REPO / "docs" / "results" / "bench_chat.json"))
    ap.add_argument("--child", choices=("merged", "adapter"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.model, a.child == "merged")
    res = {"model": a.model, "cpu": cpu_model(), "threads": os.cpu_count(), "text": TEXT, "runs": {"merged": [],
                                                                                                 "adapter": []}}
    for _ in range(a.repeats):
        for variant in ("adapter", "merged"):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--model", a.model, "--child", variant],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["process_wall_s"] = time.perf_counter() - t0
            res["runs"][variant].append(row)
    res["median"] = {v: {k: round(statistics.median(r[k] for r in rows), 2)
                         for k in ("process_wall_s", "import_s", "load_s", "generate_s")}
                     for v, rows in res["runs"].items()}
    res["adapter_over_merged_wall"] = round(res["median"]["adapter"]["process_wall_s"]
                                            / res["median"]["merged"]["process_wall_s"], 2)
    Path(a.output).write_text(json.dumps(res, indent=2) + "\n")
    print(f"{a.model} on {res['cpu']}, {a.repeats} fresh processes per variant (median seconds)")
    print("| variant | process wall | imports | load | generate | labels | PEFT imported |")
    print("|---|---|---|---|---|---|---|")
    for v, m in res["median"].items():
        last = res["runs"][v][-1]
        print(f"| LoRA {v} | {m['process_wall_s']} | {m['import_s']} | {m['load_s']} | {m['generate_s']} | "
              f"{last['labels']} | {last['peft_imported']} |")
    print(f"adapter / merged process wall: {res['adapter_over_merged_wall']}x")
    return res


if __name__ == "__main__":
    main()
