"""The README table of issue "recipes that learn": per modality, the untuned model, the previous 40-step run, this
recipe's model (through the eval suite: `affectllm eval` tasks of the `recognition` group, hf backend, with n and
95% bootstrap CIs) and the classical baseline on the same split (bench/baselines.py).

    python bench/recipe_table.py --model runs/speech_ravdess/best --tasks rec_ravdess_dev,rec_ravdess \
        --output runs/eval/speech            # evaluates (resumable) and prints the table
    python bench/recipe_table.py --summaries runs/eval/speech runs/eval/faces    # table from finished evals

Writes docs/results/recipe_table.json and prints a markdown table. Nothing is chosen here: the model folder is the
run's dev-selected `best` (or `final`), fixed before the test tasks run."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"

# task -> (modality row, metric, baseline lookup in baselines.json, previous-run file + key)
ROWS = {
    "rec_ravdess": ("speech, RAVDESS test actors 13-16 (8 cl.)", "closed_set.uar", ("ravdess", "test"), "speech.json"),
    "rec_ravdess_dev": ("speech, RAVDESS dev actors 11-12", "closed_set.uar", ("ravdess", "dev"), None),
    "rec_ckplus": ("faces, CK+ test subjects (7 cl.)", "closed_set.uar", ("ckplus", "test"), "faces.json"),
    "rec_ckplus_dev": ("faces, CK+ dev subjects", "closed_set.uar", ("ckplus", "dev"), None),
    "rec_goemotions_dev": ("text, GoEmotions dev (28 labels)", "closed_set_multilabel.macro_f1", ("goemotions", "dev"),
                           "text.json"),
    "rec_meld_dev": ("text, MELD dev (7 cl.)", "closed_set.weighted_f1", ("meld", "dev"), None),
    "rec_goemotions_dev_random": ("text, GoEmotions dev, seeded random 1000 (28 labels)",
                                  "closed_set_multilabel.macro_f1", ("goemotions", "dev"), "text.json"),
    "rec_meld_dev_all": ("text, MELD dev, all utterances (7 cl.)", "closed_set.weighted_f1", ("meld", "dev"), None),
}


from affectllm.evaluation.backends import portable_text  # noqa: E402  (no machine paths in reports)
from affectllm.model_card import cpu_model  # noqa: E402  (one reader of the CPU model for reports)


def fmt(value, lo=None, hi=None, n=None) -> str:
    if value is None:
        return "–"
    out = f"{value:.3f}"
    if lo is not None and hi is not None:
        out += f" [{lo:.3f}, {hi:.3f}]"
    if n is not None:
        out += f" (n={int(n)})"
    return out


def baseline(corpus: str, split: str, metric: str) -> str:
    """The classical baseline's number for the same split (bench/baselines.py): TF-IDF + LR for text, the prosody
    linear probe for speech (trained on train), the linear SVM on mini's own face tower (C by grouped CV on train)."""
    path = RESULTS / "baselines.json"
    if not path.is_file():
        return "–"
    data = json.loads(path.read_text()).get(corpus, {})
    block = (data.get("mini_preset") or {}).get(split) if corpus == "ckplus" else data.get(split)
    short = metric.split(".")[-1]
    if not block or short not in block:
        return "–"
    lo, hi = block.get(f"{short}_ci95", (None, None))
    return fmt(block[short], lo, hi, block.get("n"))


def previous(file: str | None, metric: str) -> tuple[str, str]:
    if not file or not (RESULTS / file).is_file():
        return "–", "–"
    d = json.loads((RESULTS / file).read_text())
    keys = (("closed_set",) if "closed_set." in metric and "multilabel" not in metric
            else ("closed_set_multilabel", "multilabel"))  # text.json (older runs) calls the block "multilabel"
    short = metric.split(".")[-1]

    def get(block: dict | None) -> str:
        block = block or {}
        for key in keys:
            if short in block.get(key, {}):
                return fmt(block[key][short], n=block.get("n"))
        return "–"
    return get(d.get("untuned")), get(d.get("tuned"))


def rows_from(summary_dirs: list[Path]) -> list[dict]:
    out = []
    for folder in summary_dirs:
        s = json.loads((folder / "summary.json").read_text())
        for task, res in s.get("tasks", {}).items():
            if task not in ROWS:
                continue
            name, metric, (corpus, split), prev = ROWS[task]
            m = res.get("metrics", {})
            untuned, prev40 = previous(prev, metric)
            out.append({"task": task, "row": name, "metric": metric,
                        "model": portable_text(s.get("model", {}).get("model_id")),
                        "value": m.get(metric), "ci_low": m.get(f"{metric}_ci_low"),
                        "ci_high": m.get(f"{metric}_ci_high"), "n": res.get("n_records"),
                        "untuned": untuned, "previous_40_steps": prev40,
                        "baseline": baseline(corpus, split, metric)})
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| modality / split | metric | untuned | previous 40-step run | this recipe | classical baseline |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['metric'].split('.')[-1]} | {r['untuned']} | {r['previous_40_steps']} | "
                     f"**{fmt(r['value'], r['ci_low'], r['ci_high'], r['n'])}** | {r['baseline']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="artifact folder to evaluate (its dev-selected best)")
    ap.add_argument("--tasks", default="", help="comma-separated recognition tasks")
    ap.add_argument("--output", help="eval output folder (resumable)")
    ap.add_argument("--summaries", nargs="*", default=[], help="finished eval folders to tabulate")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    folders = [Path(p) for p in args.summaries]
    if args.model:
        from affectllm.evaluation import run_eval

        out = Path(args.output or f"runs/eval/{Path(args.model).parent.name}")
        run_eval(args.model, [t for t in args.tasks.split(",") if t], output=out, backend="hf",
                 batch_size=args.batch_size)
        folders.append(out)
    rows = rows_from(folders)
    table = markdown(rows)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "recipe_table.json"
    old = json.loads(store.read_text()) if store.is_file() else {"rows": []}
    keep = {r["task"]: r for r in old.get("rows", [])}
    keep.update({r["task"]: r for r in rows})
    store.write_text(json.dumps({"machine": f"{cpu_model()}, {os.cpu_count()} cores", "rows": list(keep.values()),
                                 "markdown": markdown(list(keep.values()))}, indent=2))
    print(f"wrote {store}")


if __name__ == "__main__":
    main()
