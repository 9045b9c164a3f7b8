"""Requests shared by bench/parity_serving.py and bench/bench_serving.py: real utterances, voices, faces and
clips from ../shared/data (synthetic stand-ins when the kit is absent), rendered with the `emotion_ov` prompt by
AffectPipeline.build_messages, as processor messages (for the transformers path) and as OpenAI messages (for the
gateway)."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AFFECTLLM_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO))


def utterances(n: int) -> list[str]:
    path = DATA / "text" / "meld" / "dev_sent_emo.csv"
    if not path.exists():
        base = ["I can't believe you did that!", "Oh, that's wonderful news.", "Leave me alone.", "Is this a joke?"]
        return [f"{base[i % len(base)]} ({i})" for i in range(n)]
    with open(path, encoding="utf-8") as f:
        rows = [r["Utterance"].replace("\u2019", "'") for r in csv.DictReader(f)]
    return [rows[i % len(rows)] for i in range(n)]


def media_files(kind: str, n: int) -> list[str]:
    pattern = {"audio": ("speech/ravdess", "*.flac"), "image": ("face/ckplus48/CK+48", "*.png"),
               "video": ("av/mer2023/examples", "*.mp4")}[kind]
    files = sorted((DATA / pattern[0]).rglob(pattern[1]))
    if not files:
        return []
    step = max(1, len(files) // n)
    return [str(f) for f in files[::step][:n]]


def cases(n_text: int = 3, n_media: int = 2) -> list[tuple[str, list[dict]]]:
    """[(name, processor messages)]: text-only, audio, image and video requests with the emotion_ov prompt."""
    from affectllm.api import AffectPipeline

    out = []
    for i, text in enumerate(utterances(n_text)):
        out.append((f"text{i}", AffectPipeline.build_messages(text=text)[0]))
    for kind in ("audio", "image", "video"):
        for i, path in enumerate(media_files(kind, n_media)):
            out.append((f"{kind}{i}", AffectPipeline.build_messages(**{kind: path})[0]))
    return out


def text_requests(n: int) -> list[list[dict]]:
    from affectllm.api import AffectPipeline

    return [AffectPipeline.build_messages(text=t)[0] for t in utterances(n)]


def to_openai(messages: list[dict]) -> list[dict]:
    from affectllm.serve.client import to_openai_messages

    return to_openai_messages(messages)
