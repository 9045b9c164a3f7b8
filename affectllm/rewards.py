"""RL rewards with the TRL signature `f(prompts, completions, **columns) -> list[float]`, registered by name.

Every reward reads completions through `scoring.parse` and scores them with the scoring module's own per-sample
functions (wheel F, label mapping), so rewards and eval metrics cannot drift (nanochat's reward() == evaluate()).
Columns come from the training examples: gold_labels, label, label_set."""
from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .registry import Registry
from .scoring import LabelMapper, Lexicon, parse, sample_wheel_f

REWARDS = Registry("reward")


def _text(completion: Any) -> str:
    """TRL passes plain strings, or chat-format lists of messages for conversational datasets."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


@lru_cache(maxsize=4)
def _wheel(path: str | None):
    from .scoring import MerWheel

    return MerWheel.load(path) if path else None


def wheel_dir() -> str | None:
    """The official MER emotion-wheel lexicon (never bundled): $AFFECTLLM_WHEEL or the shared data kit."""
    from .data import default_data_root

    env = os.environ.get("AFFECTLLM_WHEEL")
    path = Path(env) if env else default_data_root() / "ovmer" / "emotion_wheel"
    return str(path) if (path / "format.csv").is_file() else None


@REWARDS.register("format")
def format_reward(prompts, completions, **columns) -> list[float]:
    """1 when the answer follows the requested structured format (JSON or <answer> JSON), else 0."""
    return [1.0 if parse(_text(c)).format_ok else 0.0 for c in completions]


@REWARDS.register("ov_wheel")
def ov_wheel_reward(prompts, completions, gold_labels, **columns) -> list[float]:
    """The MER2025 wheel F of the predicted labels against the gold open-vocabulary labels (0 when the gold maps
    to nothing). Falls back to the project lexicon's group-level F when the MER wheel files are absent."""
    wheel = _wheel(wheel_dir())
    out = []
    for c, gold in zip(completions, gold_labels):
        labels = parse(_text(c)).labels
        if wheel is not None:
            f = sample_wheel_f(list(gold), labels, wheel)
        else:
            f = lexicon_f(list(gold), labels)
        out.append(0.0 if math.isnan(f) else float(f))
    return out


def lexicon_f(gold: list[str], pred: list[str]) -> float:
    """F1 between the emotion groups (synonym heads) of gold and prediction under the default lexicon."""
    lx = Lexicon.default()
    g = {lx.group(w) or w for w in gold}
    p = {lx.group(w) or w for w in pred}
    if not g:
        return float("nan")
    if not p:
        return 0.0
    hit = len(g & p)
    return 0.0 if hit == 0 else 2 * hit / (len(g) + len(p))


@REWARDS.register("closed_acc")
def closed_accuracy_reward(prompts, completions, label, label_set, **columns) -> list[float]:
    """1 when the first predicted label, mapped into the sample's closed label set, equals the gold label."""
    out = []
    for c, gold, space in zip(completions, label, label_set):
        if not gold or not space:
            out.append(0.0)
            continue
        mapped = LabelMapper(space).map_labels(parse(_text(c)).labels)
        out.append(1.0 if mapped and mapped[0] == gold else 0.0)
    return out


@REWARDS.register("label_count")
def label_count_penalty(prompts, completions, max_labels: int = 3, **columns) -> list[float]:
    """0 up to `max_labels` labels, then -0.25 per extra label (floor -1): stops label spamming, which the wheel
    metric's precision does not punish when the extra labels are synonyms."""
    out = []
    for c in completions:
        n = len(parse(_text(c)).labels)
        out.append(max(-1.0, -0.25 * max(0, n - max_labels)))
    return out


def combined_rewards(weights: dict[str, float], prompts, completions, **columns) -> tuple[list[float], dict]:
    """Weighted sum of registered rewards, plus each reward's mean (for logging)."""
    total = [0.0] * len(completions)
    parts = {}
    for name, weight in weights.items():
        values = REWARDS.get(name)(prompts, completions, **columns)
        parts[name] = sum(values) / max(1, len(values))
        total = [t + weight * v for t, v in zip(total, values)]
    return total, parts
