"""Data layer: one JSONL sample schema, corpus adapters registered by name, grounded training targets.

    from affectllm.data import CORPORA, load_corpus, read_manifest, target_answer
    samples = load_corpus("ravdess", "test")            # reads ../shared/data (or $AFFECTLLM_DATA) in place
    target_answer(samples[0], ["audio"])                 # {"labels": [...], "explanation": "Evidence: audio ..."}

Heavy imports (librosa) happen only when cues are computed."""
from __future__ import annotations

from .build import build_manifests
from .corpora import CORPORA, CorpusSpec, load_corpus
from .labels import LABEL_SETS
from .manifest import MODALITIES, Sample, SampleList, normalise, read_manifest, write_manifest
from .paths import cache_dir, default_data_root
from .targets import target_answer, target_json

__all__ = ["CORPORA", "CorpusSpec", "LABEL_SETS", "MODALITIES", "Sample", "SampleList", "build_manifests",
           "cache_dir", "default_data_root", "load_corpus", "normalise", "read_manifest", "target_answer",
           "target_json", "write_manifest"]
