"""Model preparation for a recipe: load the base, apply the freeze policy, LoRA or QLoRA on the LLM only
(towers and projectors are never quantized), trainable parameters kept in fp32 over a bf16 base."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from ..api import AffectPipeline, load
from ..artifact import BASE_KEY, is_artifact
from .recipe import Recipe


def base_name(recipe: Recipe) -> str:
    """The preset/folder the stock weights come from (an artifact's own base when continuing from one)."""
    path = Path(recipe.model.base)
    if is_artifact(path):
        return json.loads((path / "config.json").read_text())[BASE_KEY]
    return str(path.resolve()) if path.is_dir() else recipe.model.base


def _quantize_4bit(language_model, compute_dtype: torch.dtype):
    """Reload the LLM as bitsandbytes NF4 (QLoRA); only the LLM's linear layers are quantized.

    Not peft's prepare_model_for_kbit_training: it upcasts every non-quantized weight to fp32, and for a
    small-vocabulary-heavy LLM like Gemma-3-270M (the embedding is 63% of the weights) that made QLoRA use 1.34x the
    memory of bf16 LoRA (bench/bench_train.py). The frozen base stays in the compute dtype; LoRA weights are fp32."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    with tempfile.TemporaryDirectory() as tmp:
        language_model.save_pretrained(tmp)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype,
                                   bnb_4bit_use_double_quant=True)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        qmodel = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=quant, device_map=device,
                                                      dtype=compute_dtype)
    for p in qmodel.parameters():
        p.requires_grad_(False)
    return qmodel


def _lora_targets(language_model, wanted: list[str]) -> list[str]:
    present = {name.rsplit(".", 1)[-1] for name, m in language_model.named_modules() if isinstance(m, torch.nn.Linear)
               or type(m).__name__.startswith("Linear")}
    targets = [t for t in wanted if t in present]
    if not targets:
        from ..errors import ConfigError

        raise ConfigError(f"none of lora.target_modules {wanted} exist in this LLM; linear layers: {sorted(present)}")
    return targets


def prepare_model(recipe: Recipe) -> tuple[AffectPipeline, str]:
    pipe = load(recipe.model.base, dtype=recipe.model.dtype)
    model = pipe.model
    model.config.freeze_audio_tower = recipe.model.freeze_audio_tower
    model.config.freeze_vision_tower = recipe.model.freeze_vision_tower
    model.config.freeze_language_model = recipe.stage == "align" or recipe.lora.enabled
    model.apply_freeze_policy()
    llm = model.language_model
    if recipe.stage != "align" and recipe.lora.enabled:
        if hasattr(llm, "peft_config"):  # continuing from an artifact's adapter (e.g. GRPO after SFT)
            for name, p in llm.named_parameters():
                p.requires_grad_("lora_" in name)
        else:
            from peft import LoraConfig, get_peft_model
            from transformers import set_seed

            set_seed(recipe.optim.seed)  # building the preset re-seeded torch with its own seed: LoRA init per recipe

            if recipe.lora.quantize_4bit:
                llm = _quantize_4bit(llm, model.dtype)
            cfg = LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,
                             target_modules=_lora_targets(llm, recipe.lora.target_modules), bias="none",
                             task_type="CAUSAL_LM")
            llm = get_peft_model(llm, cfg)
        model.language_model = llm
    if recipe.model.freeze_projectors:
        for proj in (model.audio_projector, model.vision_projector):
            if proj is not None:
                proj.requires_grad_(False)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    model.train()
    return pipe, base_name(recipe)


def parameter_groups(model, recipe: Recipe) -> list[dict]:
    lr = recipe.optim.lr
    proj_lr = recipe.optim.projector_lr or lr
    llm, other = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (llm if name.startswith("language_model.") else other).append(p)
    groups = [g for g in ({"params": llm, "lr": lr, "name": "llm"}, {"params": other, "lr": proj_lr, "name": "projectors"})
              if g["params"]]
    for g in groups:
        g["weight_decay"] = recipe.optim.weight_decay
    return groups
