"""The text rows of "recipes that learn", side by side on the very same samples: the LLM's answers (an
`affectllm eval` output folder) against TF-IDF + logistic regression trained on the same train split, with a paired
bootstrap CI of the difference.

    python bench/text_side_by_side.py runs/eval/text      # reads <dir>/summary.json and the tasks' samples.jsonl

Why: the eval tasks run on a seeded subset of dev (generation costs ~1 s per answer on this CPU), while
bench/baselines.py scores the baseline on all of dev; a gap between the two could be the subset, not the model.
Here both are scored by the project's scorer on the same sample ids, resampled together (paired bootstrap).
The baseline's hyper-parameters are the ones bench/baselines.py chose by cross-validation on train
(docs/results/baselines.json); nothing is chosen on the evaluated samples. Writes
docs/results/text_side_by_side.json and prints a markdown table."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from classical import REPO, fit_tfidf_ovr, threshold_labels, tfidf_vectorizer  # noqa: E402

RESULTS = REPO / "docs" / "results"
N_BOOT, SEED = 1000, 0
# corpus -> (metric, gold field of a stored row, headline keys)
TEXT = {"goemotions": ("closed_set_multilabel", "multi_labels", ("macro_f1", "micro_f1")),
        "meld": ("closed_set", "label", ("weighted_f1", "accuracy", "uar"))}


def baseline_predictions(corpus: str, ids: list[str], chosen: dict) -> list[list[str]]:
    """TF-IDF + LR fitted on the corpus' train split with the CV-chosen settings, predicting the given dev ids."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MultiLabelBinarizer

    from affectllm.data import LABEL_SETS, load_corpus

    train = load_corpus(corpus, "train")
    by_id = {s.id: s for s in load_corpus(corpus, "dev")}
    texts = [by_id[i].text for i in ids]
    if corpus == "goemotions":
        space = LABEL_SETS["goemotions"]
        Y = MultiLabelBinarizer(classes=space).fit_transform([s.multi_labels for s in train])
        prob = fit_tfidf_ovr([s.text for s in train], Y, C=chosen["C"])(texts)
        return threshold_labels(prob, space, chosen["threshold"])
    clf = make_pipeline(tfidf_vectorizer(), LogisticRegression(C=chosen["C"], class_weight=chosen["class_weight"],
                                                               max_iter=2000))
    clf.fit([s.text for s in train], [s.label for s in train])
    return [[str(p)] for p in clf.predict(texts)]


def paired(metric: str, gold, llm, base, mapper, keys) -> dict:
    """Point values of both and a paired percentile bootstrap of (llm - baseline), same resamples for both."""
    from affectllm.scoring import score_table

    tl, tb = (score_table(metric, gold, p, mapper=mapper) for p in (llm, base))
    out = {"n": tl.n, "llm": {k: tl.result()[k] for k in keys}, "baseline": {k: tb.result()[k] for k in keys}}
    rng = np.random.default_rng(SEED)
    draws = {k: [] for k in keys}
    for _ in range(N_BOOT):
        w = np.bincount(rng.integers(0, tl.n, tl.n), minlength=tl.n).astype(float)
        a, b = tl.result(w), tb.result(w)
        for k in keys:
            draws[k].append((a[k], b[k]))
    for k in keys:
        arr = np.asarray(draws[k])
        out["llm"][f"{k}_ci95"] = np.percentile(arr[:, 0], [2.5, 97.5]).tolist()
        out["baseline"][f"{k}_ci95"] = np.percentile(arr[:, 1], [2.5, 97.5]).tolist()
        d = arr[:, 0] - arr[:, 1]
        out[f"diff_{k}"] = float(out["llm"][k] - out["baseline"][k])
        out[f"diff_{k}_ci95"] = np.percentile(d, [2.5, 97.5]).tolist()
    return out


def main(argv=None) -> dict:
    from affectllm.evaluation.backends import portable_text
    from affectllm.evaluation.runner import RunContext

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("eval_dir", help="an `affectllm eval` output folder holding GoEmotions and/or MELD dev tasks")
    ap.add_argument("--output", default=str(RESULTS / "text_side_by_side.json"))
    a = ap.parse_args(argv)
    root = Path(a.eval_dir)
    summary = json.loads((root / "summary.json").read_text())
    baselines = json.loads((RESULTS / "baselines.json").read_text())
    ctx, res = RunContext(), {"eval_dir": portable_text(root),
                              "model": portable_text(summary["model"].get("model_id")),
                              "weights_hash": summary["model"].get("hash"), "tasks": {}}
    for name, t in summary["tasks"].items():
        corpus = t.get("data", {}).get("corpus")
        if t.get("status") != "ok" or corpus not in TEXT:
            continue
        metric, field, keys = TEXT[corpus]
        if f"{metric}.{keys[0]}" not in t.get("metrics", {}):
            continue  # a probe on this corpus (hallucination, order), not a recognition row
        rows = [json.loads(line) for line in (root / t["samples_file"]).read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r.get("variant", "base") == "base" and r.get("seed", 0) == 0 and r["gold"].get(field)]
        ids = [r["sample_id"] for r in rows]
        gold = [r["gold"][field] for r in rows]
        llm = [r["parsed"].get("labels", []) for r in rows]
        base = baseline_predictions(corpus, ids, baselines[corpus]["chosen"])
        out = paired(metric, gold, llm, base, ctx.mapper(corpus), keys)
        reported = t["metrics"].get(f"{metric}.{keys[0]}")
        out.update(task=name, split=t["data"]["split"], subset=f"limit {t['data'].get('limit')}, stratify "
                   f"{t['data'].get('stratify')}, sample-id hash {t['data'].get('sample_ids_sha')}",
                   eval_reported=reported, baseline_setting=baselines[corpus]["chosen"])
        if reported is not None and abs(reported - out["llm"][keys[0]]) > 1e-9:
            raise SystemExit(f"{name}: rescored {out['llm'][keys[0]]} != the eval's {reported} (scorer mismatch)")
        res["tasks"][name] = out
    Path(a.output).write_text(json.dumps(res, indent=2) + "\n")
    print("| task | n | metric | LLM [95% CI] | TF-IDF + LR [95% CI] | LLM - baseline [paired 95% CI] |")
    print("|---|---|---|---|---|---|")
    for name, o in res["tasks"].items():
        for k in (x for x in o["llm"] if not x.endswith("_ci95")):
            lo, hi = o["llm"][f"{k}_ci95"]
            blo, bhi = o["baseline"][f"{k}_ci95"]
            dlo, dhi = o[f"diff_{k}_ci95"]
            print(f"| {name} | {o['n']} | {k} | {o['llm'][k]:.3f} [{lo:.3f}, {hi:.3f}] | {o['baseline'][k]:.3f} "
                  f"[{blo:.3f}, {bhi:.3f}] | {o[f'diff_{k}']:+.3f} [{dlo:+.3f}, {dhi:+.3f}] |")
    return res


if __name__ == "__main__":
    main()
