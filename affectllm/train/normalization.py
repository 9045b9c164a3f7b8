"""Fit the feature towers' normalisation statistics on the training split, before any step.

Why: the hand-crafted towers of `mini` emit raw features on wildly different scales (prosody states of a RAVDESS clip:
mean -9.3, std 15.3, range -116..+26; HOG states 0..0.4). Fed raw, the projector first has to learn the scale, and
speech collapsed onto one class. The statistics are fitted once on the recipe's own training examples (never dev or
test), stored in the tower's config and parameters, so they travel with the artifact (`artifact.trained_state`) and
change the feature-cache fingerprint (`encoding.tower_fingerprint` hashes the tower weights)."""
from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError

log = logging.getLogger("affectllm")
FITTABLE = ("affect_prosody", "affect_hog", "affect_fer_xception")  # towers with a fit_normalization(...) of their own


def needs_fit(tower) -> bool:
    """A feature tower that still carries identity statistics."""
    cfg = getattr(tower, "config", None)
    return cfg is not None and cfg.model_type in FITTABLE and cfg.norm_mean is None


def _media_of(pipe, examples, max_items: int, progress: bool) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """Decoded waveforms (at the tower's rate) and image/frame tensors of up to `max_items` examples."""
    waves, images = [], []
    rng = np.random.default_rng(0)
    order = rng.permutation(len(examples))[:max_items] if len(examples) > max_items else range(len(examples))
    for i in tqdm(order, desc="fit tower normalisation", disable=not progress, leave=False):
        ex = examples[int(i)]
        if not any(isinstance(p, dict) and p.get("type") in ("audio", "image", "video")
                   for m in ex.messages for p in (m["content"] if isinstance(m["content"], list) else [])):
            continue
        batch = pipe.processor([ex.messages])
        if "audio_values" in batch:
            for row, n in zip(batch["audio_values"], batch["audio_lengths"].tolist()):
                waves.append(row[: int(n)].numpy())
        for key in ("pixel_values", "video_values"):
            if key in batch:
                images.append(batch[key])
    return waves, images


@torch.no_grad()
def fit_tower_normalization(pipe, examples, max_items: int = 2000, progress: bool = True) -> dict:
    """Fit every feature tower that has no statistics yet on `examples` (the training split). Returns what was
    fitted: {"audio_tower": n_clips, "vision_tower": n_images}. A tower whose modality the examples lack (a
    text-only recipe) is left as it is."""
    model = pipe.model
    todo = {name: getattr(model, name) for name in ("audio_tower", "vision_tower")
            if getattr(model, name, None) is not None and needs_fit(getattr(model, name))}
    if not todo:
        return {}
    waves, images = _media_of(pipe, examples, max_items, progress)
    fitted = {}
    if "audio_tower" in todo and waves:
        todo["audio_tower"].fit_normalization([torch.from_numpy(w) for w in waves])
        fitted["audio_tower"] = len(waves)
    if "vision_tower" in todo and images:
        todo["vision_tower"].fit_normalization(torch.cat(images, 0))
        fitted["vision_tower"] = sum(int(x.shape[0]) for x in images)
    for name, n in fitted.items():
        tower = getattr(model, name)
        tower.requires_grad_(False)
        log.info("fitted %s normalisation on %d training items", name, n)
        setattr(model.config, name.replace("tower", "config"), tower.config)
    return fitted


def check_normalization(tower, mean, std, where: str) -> None:
    """Statistics that do not fit the tower are refused, never silently ignored."""
    d = int(tower.feature_shift.numel())
    for name, value in (("norm_mean", mean), ("norm_std", std)):
        if value is not None and len(value) != d:
            raise ConfigError(f"{where}: {name} has {len(value)} values but the {tower.config.model_type} tower has "
                              f"{d} feature dims (statistics fitted for another tower configuration)")
    if std is not None and min(std) <= 0:
        raise ConfigError(f"{where}: norm_std must be positive")
