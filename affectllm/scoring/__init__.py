"""Emotion-answer scoring, shared by evals and RL rewards so the two cannot drift.

    parse(text) -> Prediction                          read any model output (JSON / tagged / free text)
    score(metric, gold, pred, **opts) -> dict          one entry point; metrics: list_metrics()
    bootstrap_ci(metric, gold, pred, n=1000, seed=0)   percentile intervals
    sample_wheel_f / sample_ov_score                   per-sample scores for rewards
    Lexicon.default(), MerWheel.load(dir)              emotion lexicons
    LabelMapper(label_set)                             open vocabulary -> closed label set
    load_label_set("labels.yaml")                      a user's label set (names, synonyms, lexicon mapping)

Metrics (registry "metric"): mer2024_ov, mer_wheel, closed_set, closed_set_multilabel, dimensional.
Module map: labels (official label splitting), inputs (files), parser, lexicon, wheel (MER lexicon),
ov_metric, wheel_metric, closed (+ embed, label_set), dimensional, bootstrap, api, cli.
"""
from __future__ import annotations

from .api import list_metrics, prepare, score, score_samples, score_table
from .base import METRICS, SampleTable
from .bootstrap import bootstrap_ci
from .closed import LabelMapper, closed_set, closed_set_multilabel
from .dimensional import ccc, dimensional, pearson
from .inputs import align, read_labels, read_synonym_zip
from .label_set import LabelSet, load_label_set, norm_label
from .labels import split_mer2024, split_mer2025
from .lexicon import Lexicon
from .ov_metric import mer2024_ov, sample_ov_score, sample_ov_scores
from .parser import Prediction, parse
from .wheel import MerWheel
from .wheel_metric import mer_wheel, sample_wheel_f, sample_wheel_scores

__all__ = [
    "METRICS", "LabelMapper", "LabelSet", "Lexicon", "MerWheel", "Prediction", "SampleTable", "align", "bootstrap_ci",
    "ccc", "closed_set", "closed_set_multilabel", "dimensional", "list_metrics", "load_label_set", "mer2024_ov",
    "mer_wheel", "norm_label", "parse", "pearson", "prepare", "read_labels", "read_synonym_zip", "sample_ov_score",
    "sample_ov_scores", "sample_wheel_f", "sample_wheel_scores", "score", "score_samples", "score_table",
    "split_mer2024", "split_mer2025",
]
