"""AffectConfig: one config fully determines the composed model (LLM + optional audio/vision towers + projectors).

Sub-configs are ordinary transformers configs (any causal LM for `text_config`; Whisper / WavLM / HuBERT /
wav2vec2 / our prosody tower for `audio_config`; CLIP / SigLIP / open_clip / our HOG tower for `vision_config`),
so `save_pretrained` / `from_pretrained` round-trip through config.json like any transformers model.
"""
from __future__ import annotations

import importlib
import math
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from .errors import ConfigError
from .registry import unknown_name_message

PROJECTOR_TYPES = ("linear", "mlp2x_gelu", "resampler", "global_mlp")
FIXED_BUDGET_PROJECTORS = ("resampler", "global_mlp")  # num_queries tokens per item, whatever the item's length
VIDEO_AGGREGATIONS = ("frames", "mean", "resampler")
VISION_FEATURE_SELECTS = ("patch", "cls", "all")

# Per-tower image normalisation, keyed by the tower config's model_type (an explicit table, not name matching).
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGE_NORMALIZATION = {
    "clip_vision_model": (_CLIP_MEAN, _CLIP_STD),
    "open_clip_vision": (_CLIP_MEAN, _CLIP_STD),
    "siglip_vision_model": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "affect_hog": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "affect_fer_xception": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
# Our vision towers that emit a fixed grid of tokens with no CLS (counted by their config's num_output_tokens).
GRID_VISION_TOWERS = ("affect_hog", "affect_fer_xception")
# Full multi-tower configs are reduced to their vision part.
_VISION_PART = {"clip": "vision_config", "siglip": "vision_config"}
# Audio configs whose full model is encoder-decoder: we keep only the encoder.
AUDIO_TOWER_TYPES = ("whisper", "wav2vec2", "wavlm", "hubert", "affect_prosody")
VISION_TOWER_TYPES = tuple(IMAGE_NORMALIZATION)
_PROJECT_TOWERS = {"affect_prosody": "affectllm.towers", "affect_hog": "affectllm.towers",
                   "affect_fer_xception": "affectllm.towers",
                   "open_clip_vision": "affectllm.open_clip_tower"}


def _as_config(value: Any, field: str) -> PretrainedConfig | None:
    if value is None or isinstance(value, PretrainedConfig):
        return value
    if not isinstance(value, dict) or "model_type" not in value:
        raise ConfigError(f"{field} must be a transformers config or a dict with 'model_type', got {value!r:.80}")
    value = dict(value)
    model_type = value.pop("model_type")
    if model_type in _PROJECT_TOWERS:  # our own towers register with the Auto classes on import (lazily: open_clip is heavy)
        importlib.import_module(_PROJECT_TOWERS[model_type])
    try:
        return AutoConfig.for_model(model_type, **value)
    except ValueError as e:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        raise ConfigError(f"{field}: " + unknown_name_message("model_type", model_type, CONFIG_MAPPING.keys())) from e


class AffectConfig(PretrainedConfig):
    r"""Composed model configuration.

    Args:
        text_config: config of any transformers causal LM.
        audio_config / vision_config: tower configs, or None for a model without that modality.
        audio_token / image_token / video_token: strings that are ALREADY single tokens of the LLM's vocabulary
            (no new embeddings needed, so a LoRA adapter served by vLLM stays valid); ids are resolved by the
            processor and stored in `*_token_id`.
        audio_layer / vision_layer: which hidden state of the tower to use (-1 = last).
        audio_downsample / vision_downsample: average-pool k consecutive tower tokens into one.
        *_projector: "linear", "mlp2x_gelu", "resampler" or "global_mlp" (one probe-style descriptor per item: the
            flattened tokens of a fixed-grid vision tower, else mean+std over tokens); *_num_queries: the token
            budget of "resampler" and "global_mlp".
        video_num_frames: frames sampled uniformly per video; video_aggregation: "frames" (tokens of every
            frame), "mean" (average over frames) or "resampler" (fixed budget, needs vision_projector="resampler").
        freeze_audio_tower / freeze_vision_tower / freeze_language_model: the freeze policy.
        projector_output_norm: rescale every projected media token to the mean L2 norm of the LLM's (scaled) text
            embeddings, so media arrive neither louder nor quieter than words (measured on `mini` without it: audio
            tokens 2.7x, face tokens 1/200 of the text norm, and faces never learned).
    """

    model_type = "affect"
    has_no_defaults_at_init = True  # a text_config is required: transformers must not build AffectConfig()
    sub_configs = {"text_config": AutoConfig, "audio_config": AutoConfig, "vision_config": AutoConfig}

    def __init__(
        self,
        text_config: Any = None,
        audio_config: Any = None,
        vision_config: Any = None,
        audio_token: str = "<audio>",
        image_token: str = "<image>",
        video_token: str = "<video>",
        audio_token_id: int | None = None,
        image_token_id: int | None = None,
        video_token_id: int | None = None,
        audio_layer: int = -1,
        vision_layer: int = -1,
        audio_downsample: int = 1,
        vision_downsample: int = 1,
        vision_feature_select: str = "patch",
        audio_projector: str = "mlp2x_gelu",
        vision_projector: str = "mlp2x_gelu",
        audio_num_queries: int = 16,
        vision_num_queries: int = 16,
        resampler_heads: int = 4,
        video_num_frames: int = 8,
        video_aggregation: str = "mean",
        video_use_audio: bool = True,
        max_audio_seconds: float = 30.0,
        freeze_audio_tower: bool = True,
        freeze_vision_tower: bool = True,
        freeze_language_model: bool = False,
        audio_tower_path: str | None = None,
        vision_tower_path: str | None = None,
        projector_output_norm: bool = False,
        **kwargs: Any,
    ):
        text_config = _as_config(text_config, "text_config")
        if text_config is None:
            raise ConfigError("AffectConfig needs a text_config (any transformers causal LM config)")
        audio_config = _as_config(audio_config, "audio_config")
        vision_config = _as_config(vision_config, "vision_config")
        if vision_config is not None and vision_config.model_type in _VISION_PART:
            vision_config = getattr(vision_config, _VISION_PART[vision_config.model_type])
        if audio_config is not None and audio_config.model_type not in AUDIO_TOWER_TYPES:
            raise ConfigError(unknown_name_message("audio tower type", audio_config.model_type, AUDIO_TOWER_TYPES))
        if vision_config is not None and vision_config.model_type not in VISION_TOWER_TYPES:
            raise ConfigError(unknown_name_message("vision tower type", vision_config.model_type, VISION_TOWER_TYPES))
        for name, value in (("audio_projector", audio_projector), ("vision_projector", vision_projector)):
            if value not in PROJECTOR_TYPES:
                raise ConfigError(unknown_name_message("projector", value, PROJECTOR_TYPES))
        if video_aggregation not in VIDEO_AGGREGATIONS:
            raise ConfigError(unknown_name_message("video aggregation", video_aggregation, VIDEO_AGGREGATIONS))
        if video_aggregation == "resampler" and vision_projector != "resampler":
            raise ConfigError("video_aggregation='resampler' needs vision_projector='resampler'")
        if vision_feature_select not in VISION_FEATURE_SELECTS:
            raise ConfigError(unknown_name_message("vision feature select", vision_feature_select, VISION_FEATURE_SELECTS))
        if min(audio_downsample, vision_downsample, video_num_frames) < 1:
            raise ConfigError("audio_downsample, vision_downsample and video_num_frames must be >= 1")
        self.text_config = text_config
        self.audio_config = audio_config
        self.vision_config = vision_config
        self.audio_token, self.image_token, self.video_token = audio_token, image_token, video_token
        self.audio_token_id, self.image_token_id, self.video_token_id = audio_token_id, image_token_id, video_token_id
        self.audio_layer, self.vision_layer = audio_layer, vision_layer
        self.audio_downsample, self.vision_downsample = audio_downsample, vision_downsample
        self.vision_feature_select = vision_feature_select
        self.audio_projector, self.vision_projector = audio_projector, vision_projector
        self.audio_num_queries, self.vision_num_queries = audio_num_queries, vision_num_queries
        self.resampler_heads = resampler_heads
        self.video_num_frames, self.video_aggregation = video_num_frames, video_aggregation
        self.video_use_audio = video_use_audio
        self.max_audio_seconds = max_audio_seconds
        self.freeze_audio_tower, self.freeze_vision_tower = freeze_audio_tower, freeze_vision_tower
        self.freeze_language_model = freeze_language_model
        self.audio_tower_path, self.vision_tower_path = audio_tower_path, vision_tower_path
        self.projector_output_norm = projector_output_norm
        kwargs.setdefault("tie_word_embeddings", getattr(text_config, "tie_word_embeddings", False))
        super().__init__(**kwargs)

    # ---- facts the processor needs without running the model ---------------------------------------------
    @property
    def modalities(self) -> list[str]:
        out = []
        if self.audio_config is not None:
            out.append("audio")
        if self.vision_config is not None:
            out += ["image", "video"]
        return out

    @property
    def text_hidden_size(self) -> int:
        return self.text_config.hidden_size

    def audio_sampling_rate(self) -> int:
        return int(getattr(self.audio_config, "sampling_rate", 16000) or 16000)

    def audio_tower_frames(self, num_samples: int) -> int:
        """Number of frames the audio tower emits for a clip of `num_samples` samples."""
        cfg = self.audio_config
        if cfg.model_type == "whisper":
            mel = max(1, num_samples // 160)  # WhisperFeatureExtractor hop 160; encoder conv2 has stride 2
            return min((mel - 1) // 2 + 1, cfg.max_source_positions)
        if cfg.model_type == "affect_prosody":
            return cfg.num_output_frames(num_samples)
        length = num_samples  # wav2vec2 / wavlm / hubert conv feature encoder
        for kernel, stride in zip(cfg.conv_kernel, cfg.conv_stride):
            length = (length - kernel) // stride + 1
        if length < 1:
            raise ConfigError(f"audio of {num_samples} samples is too short for the {cfg.model_type} tower")
        return length

    def audio_num_tokens(self, num_samples: int) -> int:
        if self.audio_projector in FIXED_BUDGET_PROJECTORS:
            return self.audio_num_queries
        return math.ceil(self.audio_tower_frames(num_samples) / self.audio_downsample)

    def vision_image_size(self) -> int:
        size = getattr(self.vision_config, "image_size", 224)
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    def vision_tower_tokens(self) -> int:
        """Tokens per image that the vision tower emits after feature selection."""
        cfg = self.vision_config
        if cfg.model_type in GRID_VISION_TOWERS:
            return cfg.num_output_tokens
        if self.vision_feature_select == "cls":
            return 1
        patch = cfg.patch_size[0] if isinstance(cfg.patch_size, (list, tuple)) else cfg.patch_size
        grid = (self.vision_image_size() // patch) ** 2
        has_cls = cfg.model_type in ("clip_vision_model", "open_clip_vision")
        return grid + (1 if has_cls and self.vision_feature_select == "all" else 0)

    def image_num_tokens(self) -> int:
        if self.vision_projector in FIXED_BUDGET_PROJECTORS:
            return self.vision_num_queries
        return math.ceil(self.vision_tower_tokens() / self.vision_downsample)

    def video_num_tokens(self, num_frames: int) -> int:
        if self.video_aggregation == "resampler":
            return self.vision_num_queries
        per_frame = self.image_num_tokens()
        return per_frame * num_frames if self.video_aggregation == "frames" else per_frame

    def image_normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return IMAGE_NORMALIZATION[self.vision_config.model_type]


AutoConfig.register("affect", AffectConfig)
