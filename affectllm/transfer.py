"""Zero-shot transfer as a protocol: leave-one-corpus-out over the text corpora, with one fixed training budget per
fold, scored on every corpus' dev split, written as a matrix and a heat-map.

Why: "zero-shot" on a corpus the model trained on is not transfer, and transfer from a different *amount* of
training is not comparable. Here fold `-C` trains `recipes/transfer_fold.yaml` on every corpus but C with the same
steps and seed; each fold and the untuned base answer the same `zs_*` tasks (open-vocabulary prompt, answers mapped
into the corpus' label set). The diagonal (a corpus its fold never saw) is transfer; every other cell is in-domain.

    affectllm transfer --output runs/transfer [--steps 120] [--limit 200] [--base mini]

Resumable: a fold whose `final` artifact exists is not trained again, an eval folder resumes its finished rows."""
from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from .errors import ConfigError

FOLD_RECIPE = "transfer_fold"
# corpus -> (zero-shot task on its dev split, headline metric)
EVAL = {"goemotions": ("zs_goemotions", "closed_set_multilabel.macro_f1"),
        "meld": ("zs_meld", "closed_set.weighted_f1"),
        "semeval2018_ec": ("zs_semeval", "closed_set_multilabel.macro_f1")}


def fold_mixture(held_out: str, recipe_mixture: list[dict]) -> list[dict]:
    kept = [e for e in recipe_mixture if e["corpus"] != held_out]
    if len(kept) == len(recipe_mixture):
        raise ConfigError(f"'{held_out}' is not in the {FOLD_RECIPE} recipe's mixture "
                          f"({', '.join(e['corpus'] for e in recipe_mixture)})")
    return kept


def train_fold(held_out: str, output: Path, steps: int, base: str, data_root: str | Path | None,
               progress: bool) -> Path:
    from .train import load_recipe
    from .train.loop import train

    out = output / f"without_{held_out}"
    if (out / "final" / "config.json").is_file():
        return out / "final"
    mixture = fold_mixture(held_out, load_recipe(FOLD_RECIPE).data.mixture)
    overrides = [f"data.mixture={json.dumps(mixture)}", f"optim.max_steps={steps}", f"model.base={base}",
                 f"run.output_dir={out}"] + ([f"data.data_root={data_root}"] if data_root else [])
    return Path(train(load_recipe(FOLD_RECIPE, overrides), progress=progress))


def evaluate(model, name: str, output: Path, corpora: list[str], limit: int, data_root, progress: bool) -> dict:
    from .evaluation.runner import run_eval

    tasks = [EVAL[c][0] for c in corpora]
    summary = run_eval(model, tasks, output / "eval" / name, backend="hf", limit=limit, progress=progress,
                       data_root=data_root, replace_stale=True)
    row = {}
    for c in corpora:
        t = summary["tasks"][EVAL[c][0]]
        key = EVAL[c][1]
        m = t.get("metrics", {})
        row[c] = {"metric": key, "value": m.get(key), "ci_low": m.get(f"{key}_ci_low"),
                  "ci_high": m.get(f"{key}_ci_high"), "n": t.get("data", {}).get("n_samples"),
                  "status": t.get("status")}
    return row


def heatmap(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folds, corpora = list(result["matrix"]), result["corpora"]
    vals = np.array([[result["matrix"][f][c]["value"] if result["matrix"][f][c]["value"] is not None else np.nan
                      for c in corpora] for f in folds], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 * len(corpora) + 3.2, 0.8 * len(folds) + 1.6))
    vmax = max(0.05, float(np.nanmax(vals)) if np.isfinite(vals).any() else 1.0)
    im = ax.imshow(vals, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    for i, f in enumerate(folds):
        for j, c in enumerate(corpora):
            cell = result["matrix"][f][c]
            text = "n/a" if cell["value"] is None else f"{cell['value']:.3f}"
            if cell.get("ci_low") is not None and cell.get("ci_high") is not None:
                text += f"\n[{cell['ci_low']:.2f}, {cell['ci_high']:.2f}]"
            held = f == f"without {c}"
            ax.text(j, i, text + ("\ntransfer" if held else ""), ha="center", va="center", fontsize=8,
                    color="white" if not np.isfinite(vals[i, j]) or vals[i, j] < 0.6 * vmax else "black",
                    fontweight="bold" if held else "normal")
    ax.set_xticks(range(len(corpora)), [f"{c}\n{EVAL[c][1].split('.')[-1]}" for c in corpora], fontsize=8)
    ax.set_yticks(range(len(folds)), folds, fontsize=8)
    ax.set_xlabel("evaluated on (dev split, zero-shot prompt)")
    ax.set_ylabel("trained on")
    ax.set_title(f"Leave-one-corpus-out transfer ({result['steps']} steps x {result['batch_size']} per fold)",
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_transfer(output: str | Path = "runs/transfer", corpora: list[str] | None = None, steps: int = 120,
                 limit: int = 200, base: str = "mini", data_root: str | Path | None = None,
                 progress: bool = True) -> dict:
    from .api import load
    from .train import load_recipe

    corpora = list(corpora or EVAL)
    unknown = [c for c in corpora if c not in EVAL]
    if unknown:
        raise ConfigError(f"no transfer task for {unknown[0]}; known: {', '.join(EVAL)}")
    if len(corpora) < 2:
        raise ConfigError("leave-one-corpus-out needs at least two corpora")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    matrix = {"untuned": evaluate(load(base), "untuned", output, corpora, limit, data_root, progress)}
    for held in corpora:
        artifact = train_fold(held, output, steps, base, data_root, progress)
        from .artifact import load_artifact

        matrix[f"without {held}"] = evaluate(load_artifact(artifact), f"without_{held}", output, corpora, limit,
                                             data_root, progress)
    recipe = load_recipe(FOLD_RECIPE)
    result = {"protocol": "leave-one-corpus-out", "recipe": f"recipes/{FOLD_RECIPE}.yaml", "base": base,
              "steps": steps, "batch_size": recipe.optim.batch_size, "limit_per_task": limit, "corpora": corpora,
              "eval_tasks": {c: EVAL[c][0] for c in corpora}, "matrix": matrix,
              "transfer_cells": {c: matrix[f"without {c}"][c]["value"] for c in corpora},
              "seconds": round(time.perf_counter() - t0, 1)}
    (output / "transfer.json").write_text(json.dumps(result, indent=2))
    heatmap(result, output / "transfer.png")
    return result


def add_parser(sub) -> None:
    p = sub.add_parser("transfer", help="leave-one-corpus-out zero-shot transfer over the text corpora (heat-map)")
    p.add_argument("--output", default="runs/transfer")
    p.add_argument("--corpora", help=f"comma-separated (default: {','.join(EVAL)})")
    p.add_argument("--steps", type=int, default=120, help="training steps per fold, the same for every fold")
    p.add_argument("--limit", type=int, default=200, help="dev samples per corpus and fold")
    p.add_argument("--base", default="mini")
    p.add_argument("--data", help="data root (default $AFFECTLLM_DATA or ../shared/data)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    res = run_transfer(args.output, args.corpora.split(",") if args.corpora else None, args.steps, args.limit,
                       args.base, args.data)
    corpora = res["corpora"]
    print(f"{'trained on':28s} " + " ".join(f"{c:>18s}" for c in corpora))
    for fold, row in res["matrix"].items():
        print(f"{fold:28s} " + " ".join(f"{row[c]['value']:18.3f}" if row[c]["value"] is not None else f"{'n/a':>18s}"
                                        for c in corpora))
    print(f"wrote {Path(args.output) / 'transfer.json'} and transfer.png ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    a = ap.parse_args(["transfer", *__import__("sys").argv[1:]])
    raise SystemExit(a.func(a))
