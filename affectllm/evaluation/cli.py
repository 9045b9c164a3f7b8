"""`affectllm eval`: run eval tasks or groups against a served model, a local preset/checkpoint, or the dummy.

    affectllm eval --model http://127.0.0.1:8000/v1 --tasks default --output runs/eval/mini
    affectllm eval --model runs/sft_lora/final --tasks zero_shot,emobench --limit 20
    affectllm eval --model dummy --tasks ov --limit 2          # no model: checks the plumbing
    affectllm eval --model http://gpu1:8000/v1,http://gpu2:8000/v1 --tasks default    # several servers (or @file)
    affectllm eval --list                                      # tasks and groups
    affectllm eval --compare runs/eval/a runs/eval/b --output runs/eval/a_vs_b   # side by side, same task versions
    affectllm eval --model tiny --manifest clips.jsonl --label-set labels.yaml    # your own corpus (no YAML)
"""
from __future__ import annotations

import argparse
import re
import sys

from ..errors import AffectError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="http(s)://HOST:PORT/v1 of an OpenAI-compatible server, a preset name, a "
                                   "checkpoint folder, or 'dummy'; several servers of the same model: URL1,URL2,... "
                                   "or @FILE (one URL a line, # comments): requests are shared, with fail-over")
    p.add_argument("--tasks", help="comma-separated task and group names (or YAML paths), e.g. default or ov,zs_meld")
    p.add_argument("--limit", type=int, help="samples per task (overrides the task and group limits)")
    p.add_argument("--seeds", type=int, default=3, help="seeds for tasks whose answers depend on one (sampling); "
                   "greedy tasks run once (default 3)")
    p.add_argument("--output", help="output folder (default runs/eval/<model>); re-running resumes it")
    p.add_argument("--backend", choices=["openai", "hf", "dummy"],
                   help="default: openai for a URL, dummy for --model dummy, else hf")
    p.add_argument("--served-model", help="model name on the server (default: the first it lists)")
    p.add_argument("--api-key", help="server API key (default: $AFFECTLLM_API_KEY)")
    p.add_argument("--checkpoint", help="openai backend: the local preset or checkpoint folder the server runs, to record "
                                        "its weights hash and training recipe (trained_on)")
    p.add_argument("--concurrency", type=int, default=8, help="parallel requests to the server (default 8)")
    p.add_argument("--per-server-concurrency", type=int,
                   help="with several servers: requests in flight per server (default: --concurrency)")
    p.add_argument("--request-timeout", type=float, help="openai backend: seconds before a request counts as a "
                                                         "server failure (default 600)")
    p.add_argument("--send-paths", action="store_true",
                   help="send media as file:// URLs (the server must allow their folder) instead of base64")
    p.add_argument("--batch-size", type=int, default=8, help="requests per generate() call (hf batch)")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"],
                   help="hf backend: override the model dtype; auto = the faster of bf16/fp32 on this machine "
                        "(default: the model's own, auto for mini)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs (default 1000)")
    p.add_argument("--dummy-p", type=float, default=0.7, help="dummy backend: probability of a right answer")
    p.add_argument("--data", help="data root (default $AFFECTLLM_DATA or ../shared/data)")
    p.add_argument("--manifest", help="a JSONL manifest of your own corpus (affectllm data ...): runs the zero-shot, "
                                      "calibration, prompt-sensitivity, hallucination and fairness suites on it")
    p.add_argument("--label-set", help="with --manifest: its label-set YAML (default: the labels found in it)")
    p.add_argument("--split", help="with --manifest: the split to report (default: test, or its only split)")
    p.add_argument("--suites", help="with --manifest: comma-separated subset of zero_shot, calibration, "
                                    "prompt_sensitivity, hallucination, fairness (default: all)")
    p.add_argument("--list", action="store_true", help="list tasks and groups, then exit")
    p.add_argument("--plan", action="store_true", help="with --tasks (and --limit): print each task's n, its split's size, "
                   "requests and the worst-case 95%% CI half-width, then exit (no model)")
    p.add_argument("--compare", nargs="+", metavar="RUN",
                   help="finished eval folders to compare side by side (with --output): headline metrics with n and "
                        "CIs; refused when a shared task's version differs")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def default_output(model: str) -> str:
    return "runs/eval/" + (re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_")[:80] or "model")


def list_tasks() -> int:
    from .tasks import load_catalog

    cat = load_catalog()
    print("groups:")
    for name, g in sorted(cat.groups.items()):
        print(f"  {name:24s} {', '.join(n + (f'[{lim}]' if lim else '') for n, lim in g.entries)}")
    print("tasks:")
    for name, t in sorted(cat.tasks.items()):
        d = t.dataset
        print(f"  {name:24s} {t.suite:18s} {d['corpus']}/{d['split']:6s} {t.prompt['name']}  v{t.version}")
    return 0


def run(args: argparse.Namespace) -> int:
    import os

    if args.list:
        return list_tasks()
    if args.plan:
        from .sizing import format_plan, plan_tasks
        from .tasks import resolve_tasks

        if not args.tasks:
            raise AffectError("--plan needs --tasks")
        print(format_plan(plan_tasks(resolve_tasks(args.tasks, args.limit), args.data)))
        return 0
    if args.compare:
        from .compare import compare_runs

        if not args.output:
            raise AffectError("--compare needs --output (the folder for compare.md and compare.png)")
        print(f"wrote {compare_runs(args.compare, args.output)}")
        return 0
    if not args.model or not (args.tasks or args.manifest):
        raise AffectError("affectllm eval needs --model and --tasks or --manifest (or --list)")
    if (args.label_set or args.split or args.suites) and not args.manifest:
        raise AffectError("--label-set, --split and --suites go with --manifest")
    from .runner import run_eval

    opts = {"batch_size": args.batch_size, "p": args.dummy_p, "dtype": args.dtype, "served_model": args.served_model,
            "api_key": args.api_key or os.environ.get("AFFECTLLM_API_KEY"), "concurrency": args.concurrency,
            "send_paths": args.send_paths, "checkpoint": args.checkpoint,
            "per_server_concurrency": args.per_server_concurrency, "timeout": args.request_timeout}
    from pathlib import Path

    out = args.output or default_output(args.model) + (f"_{Path(args.manifest).stem}" if args.manifest else "")
    tasks, skipped = args.tasks, None
    if args.manifest:
        from .manifest_tasks import SUITES, manifest_tasks
        from .tasks import resolve_tasks

        suites = tuple(x.strip() for x in args.suites.split(",")) if args.suites else SUITES
        tasks, skipped = manifest_tasks(args.manifest, args.label_set, out, suites, args.split)
        if args.limit is not None:
            for t in tasks:
                t.limit = args.limit
        tasks = (resolve_tasks(args.tasks, args.limit) if args.tasks else []) + tasks
    summary = run_eval(args.model, tasks, out, backend=args.backend, limit=args.limit, seeds=args.seeds,
                       bootstrap=args.bootstrap, progress=not args.no_progress, data_root=args.data,
                       command="affectllm eval " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["eval"] else sys.argv[1:]),
                       skipped=skipped, **opts)
    ok = [n for n, t in summary["tasks"].items() if t.get("status") == "ok"]
    skipped = {n: t["status"] for n, t in summary["tasks"].items() if t.get("status") != "ok"}
    print(f"{len(ok)} task(s) done -> {out}/report.md, {out}/summary.json")
    for n, why in skipped.items():
        print(f"  {n}: {why}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="affectllm eval", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except AffectError as e:
        print(f"affectllm: error: {e}", file=sys.stderr)
        return 2
