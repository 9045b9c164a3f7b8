"""From an eval item to chat messages: which modalities of a sample are sent, optional perturbations (noise, blur,
occlusion, word dropout) applied in memory, and the prompt rendered with the item's variables.

Messages have the same shape as `AffectPipeline.build_messages` (media parts video, image, audio, then one text
part with the rendered prompt), so every backend sees what `affectllm chat` would send; a test checks the two agree.
A video's own audio track carries the sound (as in training, `train/examples.py`), so a separate audio file of the
same clip is not sent next to its video.

Perturbations are seeded by (sample id, kind, level, seed), so a re-run rebuilds the identical input:
* ``snr_db``: white Gaussian noise added to the waveform at the given signal-to-noise ratio (dB);
* ``blur``: PIL Gaussian blur of the given radius (pixels);
* ``occlusion``: a black square covering the given fraction of the image area at a seeded position;
* ``word_dropout``: each word removed with the given probability (at least one word kept).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import Sample
from ..prompts import get_prompt

MEDIA_ORDER = ("video", "image", "audio")
PERTURBATIONS = ("snr_db", "blur", "occlusion", "word_dropout")


@dataclass
class Item:
    """One request of a task: a sample (or a pair), which modalities to send, the prompt, suite bookkeeping."""

    key: str                                   # unique within (task, seed)
    sample: Sample
    variant: str = "base"
    prompt: str = "emotion_ov"
    variables: dict = field(default_factory=dict)
    modalities: list[str] | None = None        # None: every modality the sample has
    perturb: dict | None = None                # {"kind": "snr_db", "level": 10}
    text: str | None = None                    # overrides sample.text (conflict probes)
    media: dict = field(default_factory=dict)  # overrides media paths, e.g. {"audio": other_sample.audio}
    gen: dict = field(default_factory=dict)
    oracle: dict = field(default_factory=dict)  # what the dummy backend may look at
    gold: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


def stable_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def _perturb_audio(src: Any, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    from ..media import load_audio

    wav = np.asarray(load_audio(src, 16000), np.float32)
    power = float(np.mean(wav ** 2)) or 1e-12
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), wav.shape)
    return (wav + noise).astype(np.float32)


def _perturb_image(src: Any, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageFilter

    from ..media import load_image

    img = load_image(src)
    if kind == "blur":
        return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius=float(level))))
    h, w = img.shape[:2]
    side_h, side_w = max(1, round(h * np.sqrt(level))), max(1, round(w * np.sqrt(level)))
    top, left = int(rng.integers(0, h - side_h + 1)), int(rng.integers(0, w - side_w + 1))
    out = img.copy()
    out[top : top + side_h, left : left + side_w] = 0
    return out


def word_dropout(text: str, p: float, rng: np.random.Generator) -> str:
    words = text.split()
    keep = [w for w in words if rng.random() >= p]
    if not keep and words:
        keep = [words[int(rng.integers(0, len(words)))]]
    return " ".join(keep)


def resolve_inputs(item: Item, seed: int, video_use_audio: bool = True) -> tuple[dict, str | None, dict]:
    """(media kind -> path or array, text or None, a JSON-ready description of what was sent)."""
    s = item.sample
    wanted = item.modalities if item.modalities is not None else s.modalities()
    media = {k: item.media.get(k, getattr(s, k)) for k in MEDIA_ORDER if k in wanted}
    media = {k: v for k, v in media.items() if v is not None}
    text = item.text if item.text is not None else s.text
    text = text if "text" in wanted else None
    if "video" in media and "audio" in media and (video_use_audio or media["audio"] == media["video"]):
        media.pop("audio")                     # the video's own soundtrack is the audio
    record = {"modalities": [k for k in MEDIA_ORDER if k in media] + (["text"] if text else []),
              "media": {k: v for k, v in media.items() if isinstance(v, str)}}
    p = item.perturb
    if p:
        rng = np.random.default_rng(stable_seed(s.id, p["kind"], p["level"], seed))
        kind, level = p["kind"], p["level"]
        if kind == "snr_db" and "audio" in media:
            media["audio"] = _perturb_audio(media["audio"], float(level), rng)
        elif kind in ("blur", "occlusion") and "image" in media:
            media["image"] = _perturb_image(media["image"], kind, float(level), rng)
        elif kind == "word_dropout" and text:
            text = word_dropout(text, float(level), rng)
            record["text"] = text
        record["perturbation"] = {"kind": kind, "level": level, "seed": seed}
    return media, text, record


def build_messages(item: Item, seed: int = 0, video_use_audio: bool = True) -> tuple[list[dict], str, dict]:
    """(messages, prompt id name@version, input record) for one item."""
    media, text, record = resolve_inputs(item, seed, video_use_audio)
    parts = [{"type": k, k: media[k]} for k in MEDIA_ORDER if k in media]
    modalities = [p["type"] for p in parts] + (["text"] if text else [])
    tmpl = get_prompt(item.prompt)
    variables = {"modalities": modalities, "text": text, "with_confidence": False, "with_dimensions": False}
    variables.update(item.variables)
    rendered = tmpl.render(**variables)
    parts.append({"type": "text", "text": rendered})
    record["prompt_sha"] = hashlib.sha256(rendered.encode()).hexdigest()[:16]
    return [{"role": "user", "content": parts}], tmpl.id, record
