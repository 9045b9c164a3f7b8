"""Real-data runs of the recipes on `mini` (issue: recipes), each evaluated on held-aside dev/test splits of
../shared/data next to the untuned model and a classical baseline. One experiment per call; results are written
to docs/results/<experiment>.json (with per-sample JSONL next to the run) and printed as a table.

    python bench/real_runs.py text    # GoEmotions SFT (LoRA) -> dev macro-F1 vs untuned and TF-IDF+LR
    python bench/real_runs.py speech  # RAVDESS actors 1-12 -> 13-16, accuracy/UAR vs chance and untuned
    python bench/real_runs.py faces   # CK+ subject-disjoint split, accuracy vs chance
    python bench/real_runs.py grpo    # GRPO after the text SFT: reward and dev metric before vs after

Choices (steps, subset sizes) are fixed here in advance from the time budget, never from test numbers."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"

# Sized for the 2-core box while it is shared (measured ~40 s per batch-8 mini SFT step): small but complete runs.
# fp32 because bf16 matmul measured slower than fp32 on this machine's CPU (bench/bench_train.py).
COMMON = ["model.dtype=float32", "optim.batch_size=4", "run.save_every=10", "run.tensorboard=false"]
EXPERIMENTS = {
    "text": {"recipe": "sft_lora", "corpus": "goemotions", "eval_split": "dev", "eval_limit": 100, "max_new_tokens": 24,
             "overrides": COMMON + ["data.limit=160", "optim.max_steps=40", "run.output_dir=runs/real/text"]},
    "speech": {"recipe": "sft_lora", "corpus": "ravdess", "eval_split": "test", "eval_limit": 96, "max_new_tokens": 16,
               "overrides": COMMON + ["data.corpora=[ravdess]", "data.split=trainval", "data.modalities=[audio,text]",
                                      "data.closed_set_prompt=true", "data.limit=160", "optim.max_steps=40",
                                      "optim.projector_lr=2.0e-3", "run.output_dir=runs/real/speech"]},
    "faces": {"recipe": "sft_lora", "corpus": "ckplus", "eval_split": "test", "eval_limit": None, "max_new_tokens": 16,
              "overrides": COMMON + ["data.corpora=[ckplus]", "data.split=train", "data.modalities=[image]",
                                     "data.closed_set_prompt=true", "data.limit=160", "optim.max_steps=40",
                                     "optim.projector_lr=2.0e-3", "run.output_dir=runs/real/faces"]},
    "grpo": {"recipe": "grpo", "corpus": "goemotions", "eval_split": "dev", "eval_limit": 48, "max_new_tokens": 24,
             "base": "runs/real/text/final",
             "overrides": ["model.dtype=float32", "model.base=runs/real/text/final", "data.limit=64",
                           "optim.max_steps=6", "optim.batch_size=2", "grpo.num_generations=4",
                           "grpo.max_new_tokens=32", "run.output_dir=runs/real/grpo", "run.tensorboard=false"]},
}


def dev_examples(pipe, name: str, cfg: dict, recipe):
    from affectllm.train.examples import build_examples

    d = recipe.data
    return build_examples(pipe, [cfg["corpus"]], cfg["eval_split"], d.prompt, d.modalities, limit=cfg["eval_limit"],
                          seed=123, closed_set_prompt=d.closed_set_prompt, with_target=False)


def tfidf_baseline(limit_eval: int) -> dict:
    """TF-IDF + one-vs-rest logistic regression on all of GoEmotions train, scored like the model on dev (a
    random sample of it; bench/baselines.py scores the full dev split with a CV-chosen threshold)."""
    import random

    from sklearn.preprocessing import MultiLabelBinarizer

    from affectllm.data import LABEL_SETS, load_corpus
    from affectllm.scoring import score
    from classical import fit_tfidf_ovr, threshold_labels

    train = load_corpus("goemotions", "train")
    dev = random.Random(123).sample(load_corpus("goemotions", "dev"), limit_eval)
    space = LABEL_SETS["goemotions"]
    Y = MultiLabelBinarizer(classes=space).fit_transform([s.multi_labels for s in train])
    predict_proba = fit_tfidf_ovr([s.text for s in train], Y, C=4.0)
    preds = threshold_labels(predict_proba([s.text for s in dev]), space, 0.3)
    return score("closed_set_multilabel", [s.multi_labels for s in dev], preds, label_set=space)


def run(name: str) -> dict:
    import torch

    from affectllm.api import load
    from affectllm.train import load_recipe
    from affectllm.train.evaluate import evaluate
    from affectllm.train.loop import train

    torch.manual_seed(0)
    cfg = EXPERIMENTS[name]
    recipe = load_recipe(cfg["recipe"], cfg["overrides"])
    out = Path(recipe.run.output_dir)
    result: dict = {"experiment": name, "recipe": cfg["recipe"], "overrides": cfg["overrides"],
                    "eval_split": cfg["eval_split"], "machine": os.popen("lscpu | grep 'Model name'").read().split(":")[-1].strip() + ", 2 cores, no GPU",
                    "note": f"answers cut at {cfg['max_new_tokens']} new tokens (labels come first), so format_ok_rate "
                            "is not meaningful here"}
    gen = {"max_new_tokens": cfg["max_new_tokens"], "batch_size": 8}
    before_name = cfg.get("base", "mini")
    untuned = load(before_name, dtype="float32")
    examples = dev_examples(untuned, name, cfg, recipe)
    t0 = time.time()
    done = out / "eval_before.json"  # an interrupted run reuses its finished "before" evaluation
    key = "untuned" if before_name == "mini" else "before"
    result[key] = (json.loads(done.read_text()) if done.exists() and json.loads(done.read_text())["n"] == len(examples)
                   else evaluate(untuned, examples, done, desc="before", **gen))
    result["untuned_eval_s"] = round(time.time() - t0, 1)
    del untuned
    t0 = time.time()
    final = train(recipe)
    result["train_s"] = round(time.time() - t0, 1)
    metrics = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    result["train_steps"] = len(metrics)
    result["train_loss_first_last"] = [metrics[0]["loss"], metrics[-1]["loss"]]
    tuned = load(final, dtype="float32")
    t0 = time.time()
    result["tuned"] = evaluate(tuned, examples, out / "eval_tuned.json", desc="tuned", **gen)
    result["tuned_eval_s"] = round(time.time() - t0, 1)
    example = tuned.generate([examples[0].messages], max_new_tokens=160)[0]
    result["example_answer"] = {"id": examples[0].id, "answer": example}
    if name == "grpo":
        result["reward_first_last"] = [metrics[0].get("reward"), metrics[-1].get("reward")]
    elif name == "text":
        result["tfidf_lr"] = tfidf_baseline(cfg["eval_limit"])
    else:
        from affectllm.data import LABEL_SETS

        result["chance_accuracy"] = 1 / len(LABEL_SETS[examples[0].columns["label_set"]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    args = parser.parse_args()
    res = run(args.experiment)
    print(json.dumps({k: v for k, v in res.items() if k != "example_answer"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
