"""Encode examples into model inputs, with the frozen-tower feature cache.

With frozen towers, an example's tower outputs never change across epochs: the first time it is seen, the media
are decoded and run through the towers once; the token ids and tower states are kept (in memory and as one
safetensors file per example under the cache dir), so later epochs and later runs skip decoding and towers.
The cache folder is keyed by a hash of the tower configs and weights plus the processing settings, so a
different tower, layer or frame count can never read stale features."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..devices import to_device  # noqa: F401  (re-exported: callers import it from here)
from .examples import Example

MEDIA_KEYS = ("audio", "image", "video")


def label_span_text(target: str) -> str:
    """The part of a target answer that carries the label: up to the closing bracket of `"labels": [...]` in the
    structured answer, or the whole (short) answer of other formats (a letter, yes/no)."""
    head = target.lstrip()
    if head.startswith('{"labels"') and "]" in head:
        return head[: head.index("]") + 1]
    return target


def label_token_count(tokenizer, target: str) -> int:
    return len(tokenizer(label_span_text(target), add_special_tokens=False)["input_ids"]) if target else 0


def tower_fingerprint(model) -> str:
    """Hash of everything that determines what is cached: tower configs + weights, layer/frames/select settings,
    and the token budget per item (projector kind, queries, downsampling, video aggregation), since the cached
    input ids hold one placeholder per media token (a stale budget crashed a run after a projector change)."""
    cfg = model.config
    h = hashlib.sha256()
    settings = {k: getattr(cfg, k) for k in ("audio_layer", "vision_layer", "vision_feature_select",
                                             "video_num_frames", "video_use_audio", "max_audio_seconds",
                                             "audio_projector", "vision_projector", "audio_num_queries",
                                             "vision_num_queries", "audio_downsample", "vision_downsample",
                                             "video_aggregation")}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for name in ("audio_tower", "vision_tower"):
        tower = getattr(model, name)
        if tower is None:
            continue
        h.update(tower.config.to_json_string(use_diff=False).encode())
        for key, tensor in sorted(tower.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class ExampleEncoder:
    """Example -> dict(input_ids, labels, audio_states, image_states, video_states) (cached), or raw media."""

    def __init__(self, pipe, cache_dir: str | Path | None = None, use_cache: bool = True):
        self.pipe = pipe
        model = pipe.model
        frozen = all(not p.requires_grad for t in (model.audio_tower, model.vision_tower) if t is not None
                     for p in t.parameters())
        self.use_cache = use_cache and frozen
        self.memory: dict[str, dict] = {}
        self.label_counts: dict[str, int] = {}
        self.hits = self.misses = 0
        self.folder = None
        if self.use_cache and cache_dir is not None:
            self.folder = Path(cache_dir) / "features" / tower_fingerprint(model)
            self.folder.mkdir(parents=True, exist_ok=True)

    def _key(self, ex: Example, with_target: bool) -> str:
        tok = self.pipe.processor.tokenizer
        raw = ex.cache_key() + f"|{with_target}|{tok.name_or_path}|{len(tok)}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    @torch.no_grad()
    def _compute(self, ex: Example, with_target: bool) -> dict:
        batch = self.pipe.processor([ex.messages], targets=[ex.target] if with_target else None)
        model = self.pipe.model
        batch = to_device(dict(batch), model.device)
        out = {"input_ids": batch["input_ids"][0].cpu(), "labels": batch["labels"][0].cpu() if with_target else None}
        if "audio_values" in batch:
            out["audio_states"] = model.audio_tower_states(batch["audio_values"], batch["audio_lengths"])
        if "pixel_values" in batch:
            out["image_states"] = list(model.vision_tower_states(batch["pixel_values"]))
        if "video_values" in batch:
            out["video_states"] = model.video_tower_states(batch["video_values"], batch["video_frames"])
        for kind in MEDIA_KEYS:  # the cache lives in host memory / on disk
            if f"{kind}_states" in out:
                out[f"{kind}_states"] = [t.cpu() for t in out[f"{kind}_states"]]
        return out

    def _save(self, key: str, enc: dict) -> None:
        tensors = {"input_ids": enc["input_ids"]}
        if enc["labels"] is not None:
            tensors["labels"] = enc["labels"]
        for kind in MEDIA_KEYS:
            for i, t in enumerate(enc.get(f"{kind}_states", [])):
                tensors[f"{kind}_states.{i}"] = t.contiguous()
        tmp = self.folder / f".{key}.{os.getpid()}.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, self.folder / f"{key}.safetensors")

    def _load(self, path: Path) -> dict:
        tensors = load_file(str(path))
        enc = {"input_ids": tensors.pop("input_ids"), "labels": tensors.pop("labels", None)}
        for kind in MEDIA_KEYS:
            items = sorted((int(k.split(".")[1]), v) for k, v in tensors.items() if k.startswith(f"{kind}_states."))
            if items:
                enc[f"{kind}_states"] = [v for _, v in items]
        return enc

    def encode(self, ex: Example, with_target: bool = True) -> dict:
        n_label = 0
        if with_target:  # tokenised once per target, not every epoch
            if ex.target not in self.label_counts:
                self.label_counts[ex.target] = label_token_count(self.pipe.processor.tokenizer, ex.target)
            n_label = self.label_counts[ex.target]
        if not self.use_cache:
            return {"example": ex, "with_target": with_target, "n_label": n_label}
        return {**self._encode_cached(ex, with_target), "n_label": n_label}

    def _encode_cached(self, ex: Example, with_target: bool) -> dict:
        key = self._key(ex, with_target)
        if key in self.memory:
            self.hits += 1
            return self.memory[key]
        path = self.folder / f"{key}.safetensors" if self.folder else None
        if path is not None and path.exists():
            enc = self._load(path)
            self.hits += 1
        else:
            enc = self._compute(ex, with_target)
            self.misses += 1
            if path is not None:
                self._save(key, enc)
        self.memory[key] = enc
        return enc

    def collate(self, encoded: list[dict], padding_side: str = "right", label_counts: bool = False) -> dict:
        """Pad a list of encodings into one batch on the model's device (raw-media encodings go through the
        processor as a batch)."""
        batch = self._collate(encoded, padding_side)
        if label_counts:
            batch["label_token_counts"] = torch.tensor([e.get("n_label", 0) for e in encoded], dtype=torch.long)
        return to_device(batch, self.pipe.model.device)

    def _collate(self, encoded: list[dict], padding_side: str) -> dict:
        if "example" in encoded[0]:
            exs = [e["example"] for e in encoded]
            with_target = encoded[0]["with_target"]
            return dict(self.pipe.processor([ex.messages for ex in exs],
                                            targets=[ex.target for ex in exs] if with_target else None,
                                            padding_side=padding_side))
        tok = self.pipe.processor.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        longest = max(len(e["input_ids"]) for e in encoded)
        n = len(encoded)
        ids = torch.full((n, longest), pad_id, dtype=torch.long)
        mask = torch.zeros((n, longest), dtype=torch.long)
        labels = torch.full((n, longest), -100, dtype=torch.long)
        for i, e in enumerate(encoded):
            length = len(e["input_ids"])
            sl = slice(0, length) if padding_side == "right" else slice(longest - length, longest)
            ids[i, sl] = e["input_ids"]
            mask[i, sl] = 1
            if e["labels"] is not None:
                labels[i, sl] = e["labels"]
        batch = {"input_ids": ids, "attention_mask": mask}
        if encoded[0]["labels"] is not None:
            batch["labels"] = labels
        for kind in MEDIA_KEYS:
            states = [s for e in encoded for s in e.get(f"{kind}_states", [])]
            if states:
                batch[f"{kind}_states"] = states
        return batch
