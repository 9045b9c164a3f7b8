"""`affectllm` command line: ls | chat | train | serve | eval | score | data | predict | demo | prepare.

User errors (AffectError) print one clear line and exit 2, never a traceback from deep inside a library."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .errors import AffectError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # this tool never downloads
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _cmd_ls(args: argparse.Namespace) -> int:
    from .presets import list_presets, preset_spec
    from .prompts import get_prompt, list_prompts

    print("presets:")
    for name in list_presets():
        print(f"  {name:48s} {preset_spec(name)['description'][:100]}")
    from .shipped import list_shipped, manifest

    print("shipped models (trained artifacts in the package, sha256-checked at load):")
    for name in list_shipped() or ["(none)"]:
        print(f"  {name:48s} {'' if name == '(none)' else 'LoRA + projectors on ' + str(manifest(name)['base'])}")
    print("prompts:")
    for name in list_prompts():
        print(f"  {get_prompt(name).id}")
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from .api import load

    if (args.text is None or not args.text.strip()) and not (args.audio or args.image or args.video):
        raise AffectError("chat needs something to read: give --text, --audio, --image or --video (or several)")
    t0 = time.perf_counter()
    if args.server:  # through a running gateway (affectllm serve)
        from .serve.cli import chat_via_server

        result, load_s = chat_via_server(args), 0.0
    else:
        from .shipped import default_model

        args.model = args.model or default_model()
        pipe = load(args.model, dtype=args.dtype, merge_lora=True)  # answering only: merged LoRA, no PEFT import
        load_s = time.perf_counter() - t0
        result = pipe.chat(text=args.text, audio=args.audio, image=args.image, video=args.video, prompt=args.prompt,
                           candidates=args.candidates.split(",") if args.candidates else None,
                           with_confidence=args.confidence, with_dimensions=args.dimensions,
                           max_new_tokens=args.max_new_tokens)
    result.timings["load_s"] = round(load_s, 3)
    result.timings["total_s"] = round(time.perf_counter() - t0, 3)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return 0
    pred = result.prediction
    print(f"model:       {args.model} ({result.prompt})")
    print(f"raw output:  {result.raw.strip()}")
    print(f"labels:      {', '.join(pred.labels) if pred.labels else '(none)'}")
    print(f"explanation: {pred.explanation or '(none)'}")
    for key in ("confidence", "valence", "arousal"):
        if getattr(pred, key, None) is not None:
            print(f"{key + ':':13s}{getattr(pred, key)}")
    print(f"format ok:   {pred.format_ok}" + (f" ({pred.reason})" if getattr(pred, "reason", None) else ""))
    print(f"time:        {result.timings}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import run_recipe

    print(run_recipe(args.recipe, args.overrides))
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from .weights import prepare_mini

    print(prepare_mini(progress=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affectllm", description="LLM-based multimodal affective reasoning")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ls", help="list presets and prompts").set_defaults(func=_cmd_ls)

    chat = sub.add_parser("chat", help="ask a model about text / audio / image / video")
    chat.add_argument("--model", default=None, help="shipped model, preset or checkpoint folder (default: the trained "
                                                   "default mini-affect; the untuned mini when it is not shipped)")
    chat.add_argument("--text", help="text or transcript")
    chat.add_argument("--audio", action="append", help="audio file (repeatable)")
    chat.add_argument("--image", action="append", help="image file (repeatable)")
    chat.add_argument("--video", action="append", help="video file (repeatable; its audio track is used too)")
    chat.add_argument("--prompt", default="emotion_ov", help="prompt name from prompts/ (see `affectllm ls`)")
    chat.add_argument("--candidates", help="comma-separated labels for closed-set prompts")
    chat.add_argument("--confidence", action="store_true", help="ask for a verbalised confidence")
    chat.add_argument("--dimensions", action="store_true", help="ask for valence / arousal")
    chat.add_argument("--max-new-tokens", type=int, default=128,
                      help="answer budget (labels come first; 128 covers labels + a short explanation)")
    chat.add_argument("--dtype", choices=["auto", "float32", "bfloat16"],
                      help="override the model's dtype; auto = the faster of bf16/fp32 on this machine (default: the "
                           "preset's own, which is auto for mini and float32 for tiny)")
    chat.add_argument("--json", action="store_true", help="machine-readable output")
    chat.add_argument("--server", help="URL of an affectllm gateway (affectllm serve); the model runs there")
    chat.add_argument("--api-key", help="API key of --server (default: $AFFECTLLM_API_KEY)")
    chat.set_defaults(func=_cmd_chat)

    train = sub.add_parser("train", help="run a recipe (recipes/*.yaml) with key=value overrides")
    train.add_argument("recipe", help="recipe name (recipes/NAME.yaml) or path")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4 data.limit=200")
    train.set_defaults(func=_cmd_train)

    from .serve.cli import add_serve_parser

    add_serve_parser(sub)
    from .evaluation.cli import add_arguments as add_eval_arguments, run as run_eval_command

    add_eval_arguments(sub.add_parser("eval", help="run eval tasks and suites (evals/*.yaml) on a server, a model or "
                                      "the dummy backend"))
    sub.choices["eval"].set_defaults(func=run_eval_command)
    from .data.cli import add_parser as add_data_parser

    add_data_parser(sub)
    from .evaluation.predict import add_parser as add_predict_parser

    add_predict_parser(sub)
    score = sub.add_parser("score", help="score predictions (MER-compatible open-vocabulary and closed-set metrics)",
                           add_help=False)
    score.set_defaults(func=None)
    from .transfer import add_parser as add_transfer_parser

    add_transfer_parser(sub)
    from .demo import add_arguments as add_demo_arguments, cmd_demo

    demo = sub.add_parser("demo", help="the whole loop on mini: fine-tune on real data, serve via vLLM, eval, report")
    add_demo_arguments(demo)
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("prepare", help="convert the offline Gemma-3-270M weights for `mini` (once)").set_defaults(
        func=_cmd_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "score":
            from .scoring.cli import main as score_main

            return score_main(argv[1:])
        args = build_parser().parse_args(argv)
        if not args.func:
            return 2
        return args.func(args)
    except AffectError as e:
        print(f"affectllm: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from .diskfull import is_disk_full, reason

        if not is_disk_full(e):
            raise
        print(f"affectllm: error: {reason(e)} while writing (disk full or a file size limit): "
              f"{' '.join(str(e).split())[:300]}. Nothing half-written is kept as complete; free space and run the "
              "same command again to continue", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("affectllm: interrupted", file=sys.stderr)
        return 130


_FAST_EXIT = {"chat", "ls"}  # one-shot commands that start no server, thread pool or temp dir needing teardown


def console() -> None:
    """The `affectllm` console script. After a one-shot `chat` the interpreter's teardown (torch's modules, a GB of
    weights) takes ~1.5 s that nobody waits for on purpose; for such commands the exit skips it once the output is
    flushed. In-process callers of `main()` are unaffected."""
    code = main()
    if sys.argv[1:2] and sys.argv[1] in _FAST_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code or 0))
    sys.exit(code)


if __name__ == "__main__":
    console()
