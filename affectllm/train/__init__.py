"""Recipes (YAML) -> runs: align, sft (LoRA / QLoRA), grpo and interpolate on the composed model.

    affectllm train sft_lora optim.max_steps=50 data.limit=200
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m affectllm.train sft_lora
"""
from __future__ import annotations

from .recipe import Recipe, list_recipes, load_recipe

__all__ = ["Recipe", "list_recipes", "load_recipe", "run_recipe"]


def run_recipe(name_or_path: str, overrides: list[str] | None = None, progress: bool = True):
    recipe = load_recipe(name_or_path, overrides)
    if recipe.stage == "interpolate":
        from .interpolate import run_interpolation

        return run_interpolation(recipe, progress=progress)
    from .loop import train

    return train(recipe, progress=progress)
