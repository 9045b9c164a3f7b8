"""AffectProcessor: chat messages with media -> model inputs.

Decodes media (media.py), turns each item into tower inputs, renders the conversation with the tokenizer's chat
template and expands every media item into exactly as many placeholder tokens as its projector emits (so the
model's scatter can check counts). Placeholders are strings that are already single tokens of the LLM vocabulary:
no new embeddings, so an LLM-only LoRA adapter stays servable by vLLM.

Message format (OpenAI-like): {"role": "user", "content": [{"type": "audio", "audio": src}, {"type": "video",
"video": src}, {"type": "image", "image": src}, {"type": "text", "text": "..."}]}; src is a path, bytes, array,
or an already decoded VideoClip.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature

from . import media
from .configuration_affect import AffectConfig
from .errors import ConfigError, MediaError

PROCESSOR_FILE = "affect_processor.json"


def tower_pixels(frame: np.ndarray, size: int, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [3, S, S]: shortest side to S (bicubic), centre crop, normalise. The exact
    transform the processor applies to images and video frames (benchmarks reuse it to feed a tower directly)."""
    img = Image.fromarray(frame)
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    mean, std = (np.asarray(v, dtype=np.float32) for v in (mean, std))
    return ((arr - mean) / std).transpose(2, 0, 1)


@dataclass
class _Items:
    audio: list[np.ndarray] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    videos: list[np.ndarray] = field(default_factory=list)


def processor_limits(path: str | Path) -> media.MediaLimits:
    """The media limits saved beside a processor (affect_processor.json), else the defaults."""
    file = Path(path) / PROCESSOR_FILE
    return media.MediaLimits(**json.loads(file.read_text())["limits"]) if file.exists() else media.MediaLimits()


class AffectProcessor:
    """Tokenizer + media featurisation for one AffectConfig (feature settings derive from the towers' configs)."""

    def __init__(self, tokenizer, config: AffectConfig, limits: media.MediaLimits | None = None):
        self.tokenizer = tokenizer
        self.config = config
        self.limits = limits or media.MediaLimits()
        if tokenizer.chat_template is None:
            raise ConfigError("the tokenizer has no chat template; give it one (tokenizer.chat_template = ...)")
        for kind in ("audio", "image", "video"):
            token = getattr(config, f"{kind}_token")
            ids = tokenizer.encode(token, add_special_tokens=False)
            if len(ids) != 1:
                raise ConfigError(f"{kind}_token {token!r} is {len(ids)} tokens in this tokenizer; placeholders must be "
                                  "existing single tokens (no new vocabulary)")
            setattr(config, f"{kind}_token_id", ids[0])
        self._whisper_fe = None
        if config.audio_config is not None and config.audio_config.model_type == "whisper":
            from transformers import WhisperFeatureExtractor

            self._whisper_fe = WhisperFeatureExtractor(feature_size=config.audio_config.num_mel_bins)

    # ---- persistence ---------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        (path / PROCESSOR_FILE).write_text(json.dumps({"limits": self.limits.__dict__}, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, config: AffectConfig | None = None) -> "AffectProcessor":
        path = Path(path)
        config = config or AffectConfig.from_pretrained(path)
        return cls(AutoTokenizer.from_pretrained(path), config, processor_limits(path))

    # ---- media items -> tower inputs -------------------------------------------------------------------------
    def _audio(self, src: Any) -> np.ndarray:
        if self.config.audio_config is None:
            raise ConfigError("audio given but this model has no audio tower")
        wav = src if isinstance(src, np.ndarray) and src.ndim == 1 else media.load_audio(
            src, sampling_rate=self.config.audio_sampling_rate(), limits=self.limits)
        seconds = len(wav) / self.config.audio_sampling_rate()
        if seconds > self.config.max_audio_seconds:
            raise MediaError(f"audio is {seconds:.1f} s, over this model's max_audio_seconds "
                             f"({self.config.max_audio_seconds:g} s)")
        if len(wav) < 400:
            raise MediaError(f"audio has {len(wav)} samples; at least 400 (25 ms) are needed")
        return wav.astype(np.float32)

    def _pixels(self, frame: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> float32 [3, S, S] for this model's vision tower (see `tower_pixels`)."""
        return tower_pixels(frame, self.config.vision_image_size(), *self.config.image_normalization())

    def _image(self, src: Any) -> np.ndarray:
        if self.config.vision_config is None:
            raise ConfigError("image given but this model has no vision tower")
        frame = src if isinstance(src, np.ndarray) and src.ndim == 3 else media.load_image(src, limits=self.limits)
        return self._pixels(frame)

    def _video(self, src: Any) -> tuple[np.ndarray, np.ndarray | None]:
        if self.config.vision_config is None:
            raise ConfigError("video given but this model has no vision tower")
        clip = src if isinstance(src, media.VideoClip) else media.load_video(
            src, num_frames=self.config.video_num_frames, limits=self.limits,
            with_audio=self.config.audio_config is not None and self.config.video_use_audio,
            sampling_rate=self.config.audio_sampling_rate() if self.config.audio_config is not None else 16000)
        frames = np.stack([self._pixels(f) for f in clip.frames])
        audio = None
        if self.config.video_use_audio and self.config.audio_config is not None and clip.audio is not None:
            audio = self._audio((clip.audio, clip.sampling_rate)) if len(clip.audio) >= 400 else None
        return frames, audio

    # ---- conversation -> text with expanded placeholders --------------------------------------------------------
    def _expand_message(self, content: Any, items: _Items) -> str:
        if isinstance(content, str):
            return self._strip_placeholders(content)
        if not isinstance(content, list):
            raise ConfigError(f"message content must be a string or a list of parts, got {type(content).__name__}")
        cfg, pieces = self.config, []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                pieces.append(self._strip_placeholders(str(part.get("text", ""))))
            elif kind == "audio":
                wav = self._audio(part.get("audio"))
                items.audio.append(wav)
                pieces.append(cfg.audio_token * cfg.audio_num_tokens(len(wav)))
            elif kind == "image":
                items.images.append(self._image(part.get("image")))
                pieces.append(cfg.image_token * cfg.image_num_tokens())
            elif kind == "video":
                frames, audio = self._video(part.get("video"))
                items.videos.append(frames)
                pieces.append(cfg.video_token * cfg.video_num_tokens(len(frames)))
                if audio is not None:
                    items.audio.append(audio)
                    pieces.append(cfg.audio_token * cfg.audio_num_tokens(len(audio)))
            else:
                raise ConfigError(f"unknown content part type {kind!r}; use text, audio, image or video")
        return "\n".join(p for p in pieces if p)

    def _strip_placeholders(self, text: str) -> str:
        for token in (self.config.audio_token, self.config.image_token, self.config.video_token):
            text = text.replace(token, "")
        return text

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> tuple[str, _Items]:
        items = _Items()
        flat = [{"role": m["role"], "content": self._expand_message(m["content"], items)} for m in messages]
        text = self.tokenizer.apply_chat_template(flat, tokenize=False, add_generation_prompt=add_generation_prompt)
        return text, items

    # ---- batch -------------------------------------------------------------------------------------------------
    def __call__(self, conversations: list[dict] | list[list[dict]], targets: list[str] | str | None = None,
                 padding_side: str | None = None, end_targets: bool = True) -> BatchFeature:
        """One conversation or a batch. With `targets` (training), the target text + EOS is appended and
        `labels` masks every prompt token with -100. Padding: left for generation, right for training.
        `end_targets=False` leaves the EOS out: a scored candidate is an answer's beginning, not a whole answer."""
        if conversations and isinstance(conversations[0], dict):
            conversations = [conversations]
        if isinstance(targets, str):
            targets = [targets]
        if targets is not None and len(targets) != len(conversations):
            raise ConfigError(f"{len(targets)} targets for {len(conversations)} conversations")
        padding_side = padding_side or ("right" if targets is not None else "left")
        all_items, rows, label_rows = _Items(), [], []
        for i, conv in enumerate(conversations):
            text, items = self.render(conv)
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            labels = [-100] * len(ids)
            if targets is not None:
                tgt = self.tokenizer(targets[i], add_special_tokens=False).input_ids
                tgt = tgt + [self.tokenizer.eos_token_id] if end_targets else tgt
                ids, labels = ids + tgt, labels + tgt
            rows.append(ids)
            label_rows.append(labels)
            all_items.audio += items.audio
            all_items.images += items.images
            all_items.videos += items.videos
        out = self._pad(rows, label_rows if targets is not None else None, padding_side)
        out.update(self._media_tensors(all_items))
        return BatchFeature(out)

    def _pad(self, rows: list[list[int]], label_rows: list[list[int]] | None, side: str) -> dict:
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        longest = max(len(r) for r in rows)
        ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(longest - len(r), longest) if side == "left" else slice(0, len(r))
            ids[i, sl] = torch.tensor(r)
            mask[i, sl] = 1
            if label_rows is not None:
                labels[i, sl] = torch.tensor(label_rows[i])
        out = {"input_ids": ids, "attention_mask": mask}
        if label_rows is not None:
            out["labels"] = labels
        return out

    def _media_tensors(self, items: _Items) -> dict:
        out: dict[str, torch.Tensor] = {}
        if items.audio:
            out["audio_lengths"] = torch.tensor([len(a) for a in items.audio])
            if self._whisper_fe is not None:
                feats = self._whisper_fe(items.audio, sampling_rate=self.config.audio_sampling_rate(),
                                         return_tensors="np").input_features
                out["audio_values"] = torch.from_numpy(np.asarray(feats, dtype=np.float32))
            else:
                longest = max(len(a) for a in items.audio)
                values = np.zeros((len(items.audio), longest), dtype=np.float32)
                for i, a in enumerate(items.audio):
                    values[i, : len(a)] = self._normalize_waveform(a)
                out["audio_values"] = torch.from_numpy(values)
        if items.images:
            out["pixel_values"] = torch.from_numpy(np.stack(items.images))
        if items.videos:
            out["video_values"] = torch.from_numpy(np.concatenate(items.videos))
            out["video_frames"] = torch.tensor([len(v) for v in items.videos])
        return out

    def _normalize_waveform(self, wav: np.ndarray) -> np.ndarray:
        """wav2vec2-family towers expect zero-mean unit-variance input (their feature extractors' do_normalize)."""
        if self.config.audio_config.model_type in ("wav2vec2", "wavlm", "hubert"):
            return (wav - wav.mean()) / np.sqrt(wav.var() + 1e-7)
        return wav

    def decode(self, token_ids: torch.Tensor | list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)
