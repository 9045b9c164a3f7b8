"""open_clip vision towers as transformers models, so the composed model builds them from config like CLIP/SigLIP.

`pretrained` must be a local file (open_clip would download a tag; this project never downloads): a named
architecture (`model_name`, e.g. "ViT-L-14") plus a weights file, or an explicit `vision_cfg` dict (tests)."""
from __future__ import annotations

import os

import torch
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .errors import ConfigError, WeightsNotFoundError


class OpenClipVisionConfig(PretrainedConfig):
    model_type = "open_clip_vision"

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | None = None, vision_cfg: dict | None = None,
                 embed_dim: int | None = None, **kwargs):
        self.model_name, self.pretrained, self.vision_cfg, self.embed_dim = model_name, pretrained, vision_cfg, embed_dim
        if vision_cfg is None:
            import open_clip

            full = open_clip.get_model_config(model_name)
            if full is None:
                from .registry import unknown_name_message

                raise ConfigError(unknown_name_message("open_clip model", model_name, open_clip.list_models()))
            vision_cfg, self.embed_dim = full["vision_cfg"], full["embed_dim"]
        self.image_size = vision_cfg.get("image_size", 224)
        self.patch_size = vision_cfg.get("patch_size", 16)
        self.hidden_size = vision_cfg.get("width", 768)
        self.num_hidden_layers = vision_cfg.get("layers", 12)
        super().__init__(**kwargs)


class OpenClipVisionTower(PreTrainedModel):
    config_class = OpenClipVisionConfig
    main_input_name = "pixel_values"

    def __init__(self, config: OpenClipVisionConfig):
        super().__init__(config)
        import open_clip
        from open_clip.model import _build_vision_tower

        if config.vision_cfg is not None:
            self.visual = _build_vision_tower(config.embed_dim or config.hidden_size, config.vision_cfg)
        else:
            if config.pretrained and not os.path.isfile(config.pretrained):
                raise WeightsNotFoundError(
                    f"open_clip weights '{config.pretrained}' are not a local file; download them once elsewhere and "
                    "give the path (this tool never downloads)")
            self.visual = open_clip.create_model(config.model_name, pretrained=config.pretrained or None).visual
        self.post_init()

    def _init_weights(self, module):  # open_clip initialises its own modules
        pass

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False, return_dict: bool = True, **_):
        out = self.visual.forward_intermediates(
            pixel_values, indices=None if output_hidden_states else 1, output_fmt="NLC",
            output_extra_tokens=True, intermediates_only=True, normalize_intermediates=False)
        states = [torch.cat([p, x], 1) for p, x in zip(out["image_intermediates_prefix"], out["image_intermediates"])]
        last = self.visual.ln_post(states[-1])
        return BaseModelOutput(last_hidden_state=last, hidden_states=tuple(states) if output_hidden_states else None)


AutoConfig.register("open_clip_vision", OpenClipVisionConfig)
AutoModel.register(OpenClipVisionConfig, OpenClipVisionTower)
