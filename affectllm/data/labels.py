"""Closed label spaces of the corpora, kept as data so prompts, scoring and evals share one spelling.
Adapters check the names they read from each corpus' own files (labels.txt, csv headers) against these,
so a changed corpus fails loudly instead of silently shifting class ids."""
from __future__ import annotations

from ..errors import AffectError

LABEL_SETS: dict[str, list[str]] = {
    # GoEmotions labels.txt order (label ids index this list): 27 emotions + neutral
    "goemotions": ["admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
                   "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
                   "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization",
                   "relief", "remorse", "sadness", "surprise", "neutral"],
    "meld": ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"],
    "meld_sentiment": ["neutral", "positive", "negative"],
    # SemEval-2018 Task 1 E-c column order; a tweet with none of them means "neutral or no emotion"
    "semeval2018_ec": ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism", "pessimism",
                       "sadness", "surprise", "trust"],
    # RAVDESS emotion codes 01..08
    "ravdess": ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"],
    "ckplus": ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"],
}


def check_label_names(name: str, found: list[str], source: str, ordered: bool = True) -> None:
    """Raise AffectError when a corpus file's label names differ from LABEL_SETS[name]."""
    expected = LABEL_SETS[name]
    ok = list(found) == expected if ordered else set(found) == set(expected)
    if not ok:
        raise AffectError(f"{source}: label names {list(found)} differ from LABEL_SETS['{name}'] {expected}")
