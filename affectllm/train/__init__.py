"""Recipes (YAML) -> runs: align, sft (LoRA / QLoRA) and grpo on the composed model.

    affectllm train sft_lora optim.max_steps=50 data.limit=200
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m affectllm.train sft_lora
"""
from __future__ import annotations

from .recipe import Recipe, list_recipes, load_recipe

__all__ = ["Recipe", "list_recipes", "load_recipe", "run_recipe"]


def run_recipe(name_or_path: str, overrides: list[str] | None = None, progress: bool = True):
    from .loop import train

    return train(load_recipe(name_or_path, overrides), progress=progress)
