"""The trained artifact (../shared/DESIGN.md), the contract between training, `load` and vLLM serving:

    <checkpoint>/
      config.json              AffectConfig + `affect_base` (the preset or folder the stock parts come from)
      projectors.safetensors   adapter weights (and any tower weights that were trained)
      adapter/                 PEFT LoRA adapter of the language model only (vLLM loads it directly)
      llm/                     only when the LLM itself was fully trained (no LoRA)
      tokenizer files + chat template, affect_processor.json, recipe.yaml

Writes are atomic (temp folder, then rename), so a crash or a full disk never leaves a half artifact behind
that looks finished."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import AffectError, ConfigError

PROJECTORS_FILE = "projectors.safetensors"
BASE_KEY = "affect_base"


def is_artifact(path: str | Path) -> bool:
    return (Path(path) / PROJECTORS_FILE).is_file()


NORM_PARAMS = ("feature_shift", "feature_scale")  # a feature tower's fitted normalisation (train split)


def trained_state(model) -> dict[str, torch.Tensor]:
    """Projector weights, any tower weights that are trainable (unfrozen towers), and the normalisation statistics
    a feature tower was fitted with (they are data, not stock weights)."""
    out = {}
    for prefix in ("audio_projector", "vision_projector", "audio_tower", "vision_tower"):
        module = getattr(model, prefix, None)
        if module is None:
            continue
        if prefix.endswith("tower") and not any(p.requires_grad for p in module.parameters()):
            if getattr(module.config, "norm_mean", None) is not None:
                for name in NORM_PARAMS:
                    out[f"{prefix}.{name}"] = getattr(module, name).detach().float().contiguous().cpu()
            continue
        for name, tensor in module.state_dict().items():
            out[f"{prefix}.{name}"] = tensor.detach().contiguous().cpu()
    return out


def _is_peft(module) -> bool:
    return hasattr(module, "peft_config")


def publish(tmp: Path, out_dir: Path) -> None:
    """Make the finished folder `tmp` visible as `out_dir` (flushed first, an old one swapped out), so a reader
    sees either the old artifact or the new one, never half of either."""
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out_dir)


def save_artifact(pipe, out_dir: str | Path, base: str, recipe_yaml: str | None = None,
                  extra_files: dict[str, str] | None = None) -> Path:
    """Write the artifact atomically; `base` is a preset name or a folder that provides the stock weights."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model = pipe.model
        config = model.config.to_dict()
        config[BASE_KEY] = base
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        save_file(trained_state(model), str(tmp / PROJECTORS_FILE))
        llm = model.language_model
        if _is_peft(llm):
            llm.save_pretrained(tmp / "adapter")
        elif any(p.requires_grad for p in llm.parameters()):
            llm.save_pretrained(tmp / "llm")
        pipe.processor.save_pretrained(tmp)
        if recipe_yaml is not None:
            (tmp / "recipe.yaml").write_text(recipe_yaml)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        publish(tmp, out_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        from .diskfull import is_disk_full, reason

        if isinstance(e, Exception) and is_disk_full(e):
            kept = "the previous artifact there is kept" if out_dir.exists() else "nothing was written there"
            raise AffectError(f"cannot save the artifact {out_dir}: {reason(e)} (disk full or a file size limit); "
                              f"{kept}") from e
        raise
    return out_dir


# Tower settings that must agree between an artifact and the base it is loaded onto (stats may differ: they are
# restored from the artifact).
_TOWER_KEYS = ("model_type", "hidden_size", "d_model", "image_size", "cell_size", "block_size", "num_bins",
               "extra_features", "num_channels", "frame_stack", "n_mels", "n_mfcc", "include_logmel",
               "include_delta2", "hop_ms", "win_ms", "sampling_rate", "patch_size", "num_hidden_layers")


def _check_towers(model, config: dict, path: Path) -> None:
    """An artifact trained with other towers (or another LLM) is refused, never run with mismatched weights."""
    text = config.get("text_config") or {}
    mine = model.config.text_config
    for key in ("model_type", "hidden_size", "vocab_size", "num_hidden_layers"):
        if key in text and text[key] != getattr(mine, key, None):
            raise ConfigError(f"artifact '{path}' was trained on another LLM: text_config.{key} is {text[key]!r} "
                              f"there but {getattr(mine, key, None)!r} in its base '{config.get(BASE_KEY)}'")
    for name in ("audio_config", "vision_config"):
        theirs, ours = config.get(name), getattr(model.config, name)
        if (theirs is None) != (ours is None):
            raise ConfigError(f"artifact '{path}' has {name}={'none' if theirs is None else theirs.get('model_type')} "
                              f"but its base has {'none' if ours is None else ours.model_type}")
        if theirs is None:
            continue
        for key in _TOWER_KEYS:
            if key in theirs and hasattr(ours, key) and theirs[key] != getattr(ours, key):
                raise ConfigError(f"artifact '{path}' was trained with another {name.split('_')[0]} tower: "
                                  f"{name}.{key} is {theirs[key]!r} there but {getattr(ours, key)!r} in its base")


def _apply_normalization(model, norm: dict, path: Path) -> None:
    """Restore the towers' fitted statistics from the artifact's safetensors (refused when they do not fit)."""
    from .train.normalization import check_normalization

    for prefix in ("audio_tower", "vision_tower"):
        shift, scale = norm.get(f"{prefix}.feature_shift"), norm.get(f"{prefix}.feature_scale")
        if shift is None and scale is None:
            continue
        tower = getattr(model, prefix, None)
        if tower is None or shift is None or scale is None or not hasattr(tower, "feature_shift"):
            raise ConfigError(f"{path / PROJECTORS_FILE}: normalisation statistics for a {prefix} the base lacks "
                              "(or an incomplete pair)")
        std = (1.0 / scale.double()).tolist()
        check_normalization(tower, shift.tolist(), std, f"{path / PROJECTORS_FILE} {prefix}")
        with torch.no_grad():
            tower.feature_shift.copy_(shift.to(tower.feature_shift.dtype))
            tower.feature_scale.copy_(scale.to(tower.feature_scale.dtype))
        tower.config.norm_mean, tower.config.norm_std = [float(v) for v in shift.double()], [float(v) for v in std]


def load_artifact(path: str | Path, dtype: str | torch.dtype | None = None, merge_lora: bool = False):
    """Rebuild the base (preset or folder), then apply trained projectors, towers and the LoRA adapter.

    `dtype`: a name, "auto" (affectllm.dtypes) or None for the base's own dtype; projectors and a fully trained
    llm/ follow the base's dtype. `merge_lora`: add the adapter into the weights (inference only; a plain LoRA is
    merged without importing PEFT); False keeps it a PEFT adapter that training can continue."""
    from .api import AffectPipeline, load
    from .dtypes import resolve_dtype_name
    from .processing_affect import AffectProcessor, processor_limits

    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    base = config.get(BASE_KEY)
    if not base:
        raise ConfigError(f"artifact '{path}' has no '{BASE_KEY}' in config.json (which preset or folder it extends)")
    pipe = load(base, dtype=None if dtype is None else resolve_dtype_name(dtype))
    model = pipe.model
    _check_towers(model, config, path)
    model.config.projector_output_norm = bool(config.get("projector_output_norm", False))
    if (path / "llm").is_dir():
        from transformers import AutoModelForCausalLM

        model.language_model = AutoModelForCausalLM.from_pretrained(path / "llm", dtype=model.dtype)
    state = load_file(str(path / PROJECTORS_FILE))
    missing = [k for k in state if k.split(".")[0] not in ("audio_projector", "vision_projector", "audio_tower",
                                                            "vision_tower")]
    if missing:
        raise ConfigError(f"{path / PROJECTORS_FILE}: unexpected keys {missing[:3]}")
    norm = {k: state.pop(k) for k in list(state) if k.split(".")[-1] in NORM_PARAMS}
    result = model.load_state_dict({k: v.to(model.dtype) for k, v in state.items()}, strict=False)
    _apply_normalization(model, norm, path)
    if result.unexpected_keys:
        raise ConfigError(f"{path / PROJECTORS_FILE} does not fit the base '{base}': {result.unexpected_keys[:3]}")
    if (path / "adapter").is_dir():
        from .lora import merge_plain_lora

        if not (merge_lora and merge_plain_lora(model.language_model, path / "adapter")):  # plain LoRA: no PEFT
            from peft import PeftModel

            model.language_model = PeftModel.from_pretrained(model.language_model, path / "adapter")
            if merge_lora:
                model.language_model = model.language_model.merge_and_unload()
    model.eval()
    if (path / "tokenizer_config.json").is_file():
        processor = AffectProcessor.from_pretrained(path, config=model.config)
    else:  # a shipped model (affectllm.shipped) keeps only what training changed: the tokenizer is the base's
        processor = AffectProcessor(pipe.processor.tokenizer, model.config, processor_limits(path))
    return AffectPipeline(model, processor, str(path))
