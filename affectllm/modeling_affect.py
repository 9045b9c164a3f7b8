"""AffectForConditionalGeneration: towers -> projectors -> scatter into the LLM's input embeddings -> LLM.

Reads top to bottom: tower construction, feature extraction per modality (tower -> layer pick -> downsample ->
projector, a list of [n_tokens, hidden] per item), the masked scatter that checks placeholder counts, and
forward / generate, which both go through `build_inputs_embeds` so training, `generate` and the serving gateway
(which forwards these embeddings to vLLM as `prompt_embeds`) share one code path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from . import draft_decoding
from .configuration_affect import GRID_VISION_TOWERS, AffectConfig
from .decode_half import decoding_in_half
from .errors import ConfigError, PlaceholderMismatchError
from .projectors import build_projector


def build_audio_tower(cfg) -> nn.Module:
    """Whisper contributes only its encoder; every other audio config is an encoder already."""
    if cfg.model_type == "whisper":
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(cfg)
    return AutoModel.from_config(cfg)


def build_vision_tower(cfg) -> nn.Module:
    return AutoModel.from_config(cfg)


def _tower_hidden_size(cfg) -> int:
    return int(getattr(cfg, "d_model", None) or cfg.hidden_size)


def _pool_tokens(x: torch.Tensor, k: int) -> torch.Tensor:
    """Average-pool k consecutive tokens: [T, D] -> [ceil(T/k), D] (partial last window averaged over its size)."""
    if k == 1:
        return x
    t, d = x.shape
    pad = (-t) % k
    if pad:
        x = torch.cat([x, x.new_zeros(pad, d)], 0)
    sums = x.view(-1, k, d).sum(1)
    counts = torch.full((sums.shape[0], 1), float(k), dtype=x.dtype, device=x.device)
    if pad:
        counts[-1] = k - pad
    return sums / counts


class AffectPreTrainedModel(PreTrainedModel):
    config_class = AffectConfig
    base_model_prefix = ""
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules: list[str] = []

    def _init_weights(self, module: nn.Module) -> None:
        # Towers and the LLM initialise themselves; only our projectors need it (and only when built fresh).
        if isinstance(module, nn.Linear) and getattr(module, "_affect_projector", False):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class AffectForConditionalGeneration(AffectPreTrainedModel):
    def __init__(self, config: AffectConfig, language_model: nn.Module | None = None):
        """`language_model`: an already loaded LLM (a preset's pretrained weights) to use as is. Building one from
        the config only to replace it drew ~270M random numbers for Gemma-3-270M: about a quarter of `chat`'s load
        time on a 2-core CPU (profiled)."""
        super().__init__(config)
        hidden = config.text_hidden_size
        self.language_model = (language_model if language_model is not None
                               else AutoModelForCausalLM.from_config(config.text_config))
        if language_model is not None and language_model.config._attn_implementation is None:
            # AffectConfig(text_config=<the LLM's own config>) resets its attention implementation; building from
            # the config set it again, a given LLM must get it back (with None, Gemma-3 answers garbage).
            language_model.set_attn_implementation(self.config._attn_implementation)
        self.audio_tower = self.audio_projector = None
        self.vision_tower = self.vision_projector = None
        if config.audio_config is not None:
            self.audio_tower = build_audio_tower(config.audio_config)
            self.audio_projector = build_projector(
                config.audio_projector, _tower_hidden_size(config.audio_config), hidden,
                config.audio_num_queries, config.resampler_heads)
        if config.vision_config is not None:
            self.vision_tower = build_vision_tower(config.vision_config)
            self.vision_projector = build_projector(
                config.vision_projector, _tower_hidden_size(config.vision_config), hidden,
                config.vision_num_queries, config.resampler_heads,
                num_input_tokens=config.vision_tower_tokens() if config.vision_projector == "global_mlp" else None)
        for proj in (self.audio_projector, self.vision_projector):
            if proj is not None:
                for m in proj.modules():
                    if isinstance(m, nn.Linear):
                        m._affect_projector = True
        self.post_init()
        self.apply_freeze_policy()

    # ---- plumbing ------------------------------------------------------------------------------------------
    def apply_freeze_policy(self) -> None:
        policy = {
            "audio_tower": self.config.freeze_audio_tower,
            "vision_tower": self.config.freeze_vision_tower,
            "language_model": self.config.freeze_language_model,
        }
        for name, frozen in policy.items():
            module = getattr(self, name)
            if module is not None:
                module.requires_grad_(not frozen)

    def train(self, mode: bool = True):
        """Frozen towers stay in eval mode: a pretrained CNN's batch norm must keep its running statistics (batch
        statistics of 8 training faces are not the features the tower was trained to give), and dropout in a
        frozen tower would only add noise to cached features."""
        super().train(mode)
        for tower, frozen in ((self.audio_tower, self.config.freeze_audio_tower),
                              (self.vision_tower, self.config.freeze_vision_tower)):
            if tower is not None and frozen:
                tower.eval()
        return self

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    # ---- per-modality features -----------------------------------------------------------------------------
    def _tower_states(self, tower: nn.Module, layer: int, **inputs) -> torch.Tensor:
        frozen = not any(p.requires_grad for p in tower.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            out = tower(**inputs, output_hidden_states=layer != -1, return_dict=True)
        return out.last_hidden_state if layer == -1 else out.hidden_states[layer]

    def audio_tower_states(self, audio_values: torch.Tensor, audio_lengths: torch.Tensor) -> list[torch.Tensor]:
        """audio_values: tower input per item ([N, T] waveform or [N, mels, frames] log-mel), padded;
        audio_lengths: samples per item. Returns the selected tower layer per item, [frames, D], padding cut."""
        cfg = self.config
        key = "input_features" if cfg.audio_config.model_type == "whisper" else "input_values"
        frames = [cfg.audio_tower_frames(int(n)) for n in audio_lengths.tolist()]
        dtype = next(self.audio_tower.parameters()).dtype
        values = audio_values.to(dtype)
        if key == "input_values" and len(set(audio_lengths.tolist())) > 1:
            # Variable-length waveforms run one by one: padding would leak into conv/group-norm statistics.
            states = [self._tower_states(self.audio_tower, cfg.audio_layer, input_values=values[i : i + 1, : int(n)])[0]
                      for i, n in enumerate(audio_lengths.tolist())]
        else:
            states = list(self._tower_states(self.audio_tower, cfg.audio_layer, **{key: values}))
        return [s[:f] for s, f in zip(states, frames)]

    def project_audio(self, states: list[torch.Tensor]) -> list[torch.Tensor]:
        cfg = self.config
        return self._project(states, self.audio_projector, cfg.audio_downsample, cfg.audio_projector)

    def get_audio_features(self, audio_values: torch.Tensor, audio_lengths: torch.Tensor) -> list[torch.Tensor]:
        """One [n_tokens, hidden] tensor per audio item: tower -> layer -> downsample -> projector."""
        return self.project_audio(self.audio_tower_states(audio_values, audio_lengths))

    def vision_tower_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] -> [N, T, D] selected tower tokens."""
        cfg = self.config
        dtype = next(self.vision_tower.parameters()).dtype
        states = self._tower_states(self.vision_tower, cfg.vision_layer, pixel_values=pixel_values.to(dtype))
        if cfg.vision_config.model_type in GRID_VISION_TOWERS:
            return states
        has_cls = cfg.vision_config.model_type in ("clip_vision_model", "open_clip_vision")
        if cfg.vision_feature_select == "cls":
            return states[:, :1] if has_cls else states.mean(1, keepdim=True)
        if cfg.vision_feature_select == "patch" and has_cls:
            return states[:, 1:]
        return states

    def project_images(self, states: list[torch.Tensor]) -> list[torch.Tensor]:
        cfg = self.config
        return self._project(list(states), self.vision_projector, cfg.vision_downsample, cfg.vision_projector)

    def get_image_features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return self.project_images(list(self.vision_tower_states(pixel_values)))

    def video_tower_states(self, video_values: torch.Tensor, video_frames: torch.Tensor) -> list[torch.Tensor]:
        """video_values: [sum(frames), 3, S, S] frames of all videos; video_frames: frames per video.
        Returns one [frames, T, D] tensor per video."""
        tokens = self.vision_tower_states(video_values)
        return list(torch.split(tokens, video_frames.tolist()))

    def project_videos(self, states: list[torch.Tensor]) -> list[torch.Tensor]:
        cfg = self.config
        if cfg.video_aggregation == "mean":
            return self._project([clip.mean(0) for clip in states], self.vision_projector, cfg.vision_downsample,
                                 cfg.vision_projector)
        if cfg.video_aggregation == "frames":
            if cfg.vision_projector == "global_mlp":  # one descriptor per frame
                return [torch.cat(self._project(list(clip), self.vision_projector, 1, "global_mlp"), 0)
                        for clip in states]
            items = [torch.cat([_pool_tokens(f, cfg.vision_downsample) for f in clip], 0) for clip in states]
            return self._project(items, self.vision_projector, 1, cfg.vision_projector)
        return self._project([clip.reshape(-1, clip.shape[-1]) for clip in states], self.vision_projector, 1,
                             cfg.vision_projector)

    def get_video_features(self, video_values: torch.Tensor, video_frames: torch.Tensor) -> list[torch.Tensor]:
        return self.project_videos(self.video_tower_states(video_values, video_frames))

    def text_embedding_norm(self) -> float:
        """Mean L2 norm of the LLM's input embeddings as the LLM sees them (after e.g. Gemma's sqrt(hidden) scale).
        Cached: the embedding table is frozen in every recipe (LoRA never touches it)."""
        emb = self.get_input_embeddings()
        key = (emb.weight.data_ptr(), emb.weight.shape, emb.weight.dtype)
        if getattr(self, "_embed_norm_key", None) != key:
            scale = float(getattr(emb, "embed_scale", 1.0))
            with torch.no_grad():
                norms = torch.cat([w.float().norm(dim=-1) for w in emb.weight.split(8192)])
            self._embed_norm, self._embed_norm_key = float(norms.mean()) * scale, key
        return self._embed_norm

    def _match_text_scale(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.projector_output_norm:
            return x
        return x * (self.text_embedding_norm() / x.float().norm(dim=-1, keepdim=True).clamp_min(1e-6)).to(x.dtype)

    def _project(self, items: list[torch.Tensor], projector: nn.Module, downsample: int, kind: str) -> list[torch.Tensor]:
        return [self._match_text_scale(x) for x in self._project_raw(items, projector, downsample, kind)]

    def _project_raw(self, items: list[torch.Tensor], projector: nn.Module, downsample: int, kind: str) -> list[torch.Tensor]:
        proj_dtype = next(projector.parameters()).dtype
        if kind == "resampler":
            # Pad to one batch with a key mask: fixed token budget per item.
            longest = max(x.shape[0] for x in items)
            batch = items[0].new_zeros(len(items), longest, items[0].shape[-1])
            mask = torch.zeros(len(items), longest, dtype=torch.bool, device=batch.device)
            for i, x in enumerate(items):
                batch[i, : x.shape[0]] = x
                mask[i, : x.shape[0]] = True
            return list(projector(batch.to(proj_dtype), mask))
        if kind == "global_mlp":  # the descriptor reads the tower's own tokens: no pooling first
            return [projector(x.to(proj_dtype).unsqueeze(0))[0] for x in items]
        return [projector(_pool_tokens(x, downsample).to(proj_dtype).unsqueeze(0))[0] for x in items]

    # ---- composition -----------------------------------------------------------------------------------------
    def _scatter(self, embeds: torch.Tensor, input_ids: torch.Tensor, token_id: int | None,
                 features: list[torch.Tensor], name: str) -> torch.Tensor:
        mask = input_ids == token_id if token_id is not None else torch.zeros_like(input_ids, dtype=torch.bool)
        n_slots = int(mask.sum())
        n_feats = sum(f.shape[0] for f in features)
        if n_slots != n_feats:
            raise PlaceholderMismatchError(
                f"{name}: the prompt has {n_slots} placeholder tokens but the {name} features fill {n_feats} "
                f"({len(features)} item(s)); build inputs with AffectProcessor so counts match the tower")
        if n_feats == 0:
            return embeds
        flat = torch.cat(features, 0).to(embeds.dtype)
        return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), flat)

    def build_inputs_embeds(self, input_ids: torch.Tensor, audio_values=None, audio_lengths=None, pixel_values=None,
                            video_values=None, video_frames=None, audio_states=None, image_states=None,
                            video_states=None) -> torch.Tensor:
        """The LLM input embeddings with every media placeholder replaced by projected tower features.
        Uses the LLM's own embedding module, so model-specific scaling (e.g. Gemma's sqrt(hidden)) is applied.
        `*_states` are precomputed tower outputs (the training feature cache) used instead of raw media."""
        cfg = self.config
        embeds = self.get_input_embeddings()(input_ids)
        plan = (
            ("audio", cfg.audio_token_id, self.audio_tower, audio_values, audio_states, self.project_audio,
             lambda: self.audio_tower_states(audio_values, audio_lengths)),
            ("image", cfg.image_token_id, self.vision_tower, pixel_values, image_states, self.project_images,
             lambda: list(self.vision_tower_states(pixel_values))),
            ("video", cfg.video_token_id, self.vision_tower, video_values, video_states, self.project_videos,
             lambda: self.video_tower_states(video_values, video_frames)),
        )
        for name, token_id, tower, values, states, project, run_tower in plan:
            given = states is not None or values is not None
            if given and tower is None:
                raise ConfigError(f"{name} input given but this model has no {name} tower (modalities: {cfg.modalities})")
            if states is None and values is not None and values.shape[0] > 0:
                states = run_tower()
            feats = project(states) if states else []
            embeds = self._scatter(embeds, input_ids, token_id, feats, name)
        return embeds

    def _media_kwargs(self, kwargs: dict) -> dict:
        keys = ("audio_values", "audio_lengths", "pixel_values", "video_values", "video_frames", "audio_states",
                "image_states", "video_states")
        return {k: kwargs.pop(k) for k in keys if k in kwargs}

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None,
                logits_to_keep: int | torch.Tensor | None = None, return_token_logprobs: bool = False, **kwargs):
        """The transformers causal-LM contract, with a cheap path for training.

        - Without `labels`: the LLM's own forward (`logits_to_keep` passed through).
        - With `labels` and `logits_to_keep=None` (the cheap path every recipe uses): the loss comes from the LM
          head applied to target positions only. The prompt is most of the sequence and Gemma's head is 262k wide:
          full logits of a batch of 8 x 150 tokens are 1.26 GB in fp32, the target-only ones a few MB.
          `logits` is None here.
        - With `labels` and `logits_to_keep` (0 = every position, k = the last k, or a 1-D index tensor), as TRL/PEFT
          trainers call it: the same loss plus `logits` [B, kept, V] from the same hidden states.
        `return_token_logprobs` adds per-target-token log-probabilities, the target mask and whether the argmax
        token was right (`token_correct`), for GRPO and the label-token metrics of the loop."""
        media = self._media_kwargs(kwargs)
        if inputs_embeds is None:
            inputs_embeds = self.build_inputs_embeds(input_ids, **media)
        if labels is None:
            if logits_to_keep is not None:
                kwargs["logits_to_keep"] = logits_to_keep
            return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs)
        lm = self.language_model.get_base_model() if hasattr(self.language_model, "get_base_model") else self.language_model
        hidden = lm.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **kwargs).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != -100
        logits = self._head(lm, hidden[:, :-1][keep])
        token_logp = -F.cross_entropy(logits, targets[keep], reduction="none")
        out = CausalLMOutputWithPast(loss=-token_logp.mean() if token_logp.numel() else logits.sum() * 0.0)
        if logits_to_keep is not None:
            if isinstance(logits_to_keep, int):
                kept = hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
            else:
                kept = hidden[:, logits_to_keep.to(hidden.device)]
            out["logits"] = self._head(lm, kept)
        if return_token_logprobs:
            dense = torch.zeros(targets.shape, dtype=token_logp.dtype, device=token_logp.device)
            out["token_logprobs"] = dense.masked_scatter(keep, token_logp)
            out["token_mask"] = keep
            correct = torch.zeros(targets.shape, dtype=torch.bool, device=token_logp.device)
            out["token_correct"] = correct.masked_scatter(keep, logits.detach().argmax(-1) == targets[keep])
        return out

    def _head(self, lm, hidden: torch.Tensor) -> torch.Tensor:
        """LM head (+ Gemma's final logit soft-capping) in fp32."""
        logits = lm.get_output_embeddings()(hidden).float()
        cap = getattr(self.config.text_config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, draft_phrases=None, **kwargs) -> torch.Tensor:
        """Greedy by default. Returns only the new tokens ([B, new]). `draft_phrases` (a PhraseSource from
        `draft_decoding.phrase_source`): plain greedy calls of one sequence check drafted tokens several at a time
        (affectllm/draft_decoding.py, same text, fewer weight reads); other calls ignore it."""
        embeds = self.build_inputs_embeds(input_ids, **self._media_kwargs(kwargs))
        kwargs.setdefault("do_sample", False)
        if not kwargs["do_sample"]:
            for key in ("temperature", "top_p", "top_k"):
                kwargs.setdefault(key, None)
        with decoding_in_half(self.language_model):
            if draft_phrases is not None and draft_decoding.applicable(self.language_model, embeds, attention_mask,
                                                                       kwargs):
                return draft_decoding.draft_greedy(self.language_model, embeds, attention_mask, input_ids,
                                                   draft_phrases, **kwargs)
            return self.language_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


AutoModel.register(AffectConfig, AffectForConditionalGeneration)
try:
    from transformers import AutoModelForImageTextToText

    AutoModelForImageTextToText.register(AffectConfig, AffectForConditionalGeneration)
except (ImportError, ValueError):  # registration is a convenience only
    pass
