"""`affectllm score`: score a prediction file against a gold file and print a table (rich) or JSON.

    affectllm score --gold G.csv --pred P.csv --metric mer_wheel --lexicon DIR [--json] [--bootstrap N]
    affectllm score --gold G.csv --pred P.csv --metric mer2024_ov --synonyms openset-synonym.zip
    affectllm score --gold G.jsonl --pred P.jsonl --metric closed_set --label-set meld
    affectllm score --gold clips.jsonl --pred preds.jsonl --metric closed_set --label-set labels.yaml   # your corpus

Files: official csv (``name,openset`` with Python-list strings) or JSONL (``name``/``id`` plus ``labels``/
``openset``, or raw model text in ``output``); a manifest (`affectllm data`) is a gold file and the output of
`affectllm predict` a prediction file as they are. Bad input exits with status 2 and a message naming file, row
and column; the dispatcher in `affectllm/cli.py` calls `main(argv)`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from ..errors import AffectError

HEADLINE = {
    "mer_wheel": ["level1_f", "level2_f", "mer2025", "m1_f", "m2_f", "level1_f_lc", "level2_f_lc", "mer2025_lc",
                  "level1_f_sample", "level2_f_sample", "mer2025_sample", "oov_rate_pred", "oov_rate_gold",
                  "mean_pred_labels", "n_samples", "skipped_empty_gold", "empty_pred", "oov_dropped_pred",
                  "oov_dropped_gold"],
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affectllm score", description="Score emotion predictions against gold labels.")
    p.add_argument("--gold", required=True, help="gold file (.csv name,openset or .jsonl)")
    p.add_argument("--pred", required=True, help="prediction file (.csv or .jsonl)")
    p.add_argument("--metric", default="mer_wheel", help="registered metric (default: mer_wheel)")
    p.add_argument("--lexicon", help="MER emotion-wheel folder (format.csv, synonym.xlsx, wheel1..5.xlsx)")
    p.add_argument("--synonyms", help="MER2024 openset-synonym.zip (for mer2024_ov)")
    p.add_argument("--label-set", help="closed label set: a name (meld, ravdess, goemotions, ...), a label-set YAML "
                                       "(affectllm data; names, synonyms, lexicon mapping) or a comma list")
    p.add_argument("--embeddings", action="store_true", help="closed sets: MiniLM similarity fallback")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="add N-resample bootstrap 95%% CIs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--all", action="store_true", help="table: show every key (default: headline keys)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _opts(args) -> dict:
    from ..errors import ScoringInputError

    opts: dict = {}
    if args.metric == "mer_wheel":
        if not args.lexicon:
            raise ScoringInputError("--metric mer_wheel needs --lexicon DIR (the MER emotion_wheel folder)")
        opts["lexicon"] = args.lexicon
    elif args.metric == "mer2024_ov":
        if args.synonyms:
            opts["synonyms"] = args.synonyms
    elif args.metric in ("closed_set", "closed_set_multilabel"):
        if not args.label_set:
            raise ScoringInputError(f"--metric {args.metric} needs --label-set")
        ls = args.label_set
        opts["label_set"] = [s.strip() for s in ls.split(",")] if "," in ls else ls
        if args.lexicon:
            from .wheel import MerWheel

            opts["wheel"] = MerWheel.load(args.lexicon)
        opts["embeddings"] = args.embeddings
    return opts


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["score"]:
        argv = argv[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return int(exc.code or 0)
    try:
        from .api import score
        from .inputs import read_labels

        gold = read_labels(args.gold)
        pred = read_labels(args.pred)
        result = score(args.metric, gold, pred, bootstrap=args.bootstrap, seed=args.seed, **_opts(args))
    except AffectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()},
                         indent=2))
    else:
        _print_table(args, result)
    return 0


def _print_table(args, result: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = [k for k in result if not k.endswith(("_ci_low", "_ci_high"))]
    if not args.all and args.metric in HEADLINE:
        keys = [k for k in HEADLINE[args.metric] if k in result]
    table = Table(title=f"{args.metric}: {args.pred} vs {args.gold}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if args.bootstrap:
        table.add_column(f"95% CI ({args.bootstrap} resamples)", justify="right")
    for k in keys:
        v = result[k]
        cells = [k, f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4f}"]
        if args.bootstrap:
            lo, hi = result.get(f"{k}_ci_low"), result.get(f"{k}_ci_high")
            cells.append("" if lo is None else f"[{lo:.4f}, {hi:.4f}]")
        table.add_row(*cells)
    Console().print(table)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
