"""Which models a gateway serves: the base (a preset, a checkpoint folder, or the base an artifact extends) and
one entry per LoRA artifact, each with its own processor, projectors and vLLM adapter name.

Every entry is an ordinary AffectPipeline built by `affectllm.load` / `load_artifact`: the gateway runs exactly
the processor, towers and projectors that training and `AffectPipeline.chat` run. With the vLLM backend the
entries share the base language model (the gateway only needs its embedding module; vLLM applies the LoRA)."""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..media import MediaLimits

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


@dataclass
class ServedModel:
    name: str  # what clients put in `model`
    pipe: object  # AffectPipeline
    vllm_name: str  # the base model's served name, or this entry's LoRA name in vLLM
    artifact: Path | None = None
    adapter_dir: Path | None = None  # PEFT adapter folder vLLM loads (None: base LLM weights)
    lora_rank: int = 0


def adapter_info(artifact: Path) -> tuple[Path | None, int, list[str]]:
    """(adapter folder, LoRA rank, target modules) of an artifact; (None, 0, []) when it has no adapter."""
    adapter = artifact / "adapter"
    if not adapter.is_dir():
        return None, 0, []
    cfg_file = adapter / "adapter_config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"{adapter} has no adapter_config.json (not a PEFT adapter folder)")
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("modules_to_save"):
        raise ConfigError(f"{adapter}: the adapter carries modules_to_save {cfg['modules_to_save']}, which vLLM "
                          "rejects for generative models; keep projectors out of the LLM adapter")
    targets = cfg.get("target_modules") or []
    return adapter, int(cfg.get("r", 8)), [targets] if isinstance(targets, str) else list(targets)


def resolve_source(source: str) -> tuple[str, str, Path | None]:
    """CHECKPOINT_OR_PRESET -> (base served name, base reference for `load`, main artifact or None)."""
    from ..artifact import BASE_KEY, is_artifact
    from ..presets import list_presets
    from ..shipped import list_shipped, shipped_path

    if source in list_presets():
        return source, source, None
    path = shipped_path(source) if source in list_shipped() else Path(source).expanduser()
    if not path.is_dir():
        from ..registry import unknown_name_message

        raise ConfigError(unknown_name_message("preset or checkpoint folder", source, list_presets()))
    if is_artifact(path):
        base = json.loads((path / "config.json").read_text()).get(BASE_KEY)
        if not base:
            raise ConfigError(f"artifact '{path}' has no '{BASE_KEY}' in config.json")
        return Path(base).name if Path(base).is_dir() else base, base, path.resolve()
    return path.resolve().name, str(path.resolve()), None


def load_artifact_dtype(base_ref: str):
    """The dtype `load(base_ref)` would pick: a preset's own (resolved), else its config's (float32 if unset)."""
    from ..dtypes import resolve_dtype
    from ..presets import list_presets, preset_spec

    if base_ref in list_presets():
        return resolve_dtype(preset_spec(base_ref).get("dtype") or "float32")
    cfg_file = Path(base_ref).expanduser() / "config.json"
    dtype = json.loads(cfg_file.read_text()).get("torch_dtype") if cfg_file.is_file() else None
    return resolve_dtype(dtype or "float32")


def _same_base(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


class ModelRegistry:
    def __init__(self, source: str, backend: str = "vllm", dtype: str | None = None,
                 media_limits: MediaLimits | None = None, main_name: str | None = None, merge_lora: bool = False):
        from ..api import load

        self.backend, self.dtype, self.limits = backend, dtype, media_limits
        base_name, self.base_ref, main_artifact = resolve_source(source)
        self._lock = threading.Lock()
        self.merged = False
        if merge_lora and main_artifact is not None and adapter_info(main_artifact)[0] is not None:
            self._serve_merged(main_name or main_artifact.name, main_artifact)
            return
        base_pipe = load(self.base_ref, dtype=dtype)
        self._apply_limits(base_pipe)
        self.base = ServedModel(base_name, base_pipe, vllm_name=base_name)
        self.models: dict[str, ServedModel] = {base_name: self.base}
        self.default = base_name
        if main_artifact is not None:
            self.default = self.add_lora(main_name or main_artifact.name, main_artifact).name

    def _serve_merged(self, name: str, artifact: Path) -> None:
        """The artifact's LoRA merged into its LLM, served as the only model: no LoRA in the engine, so vLLM can
        compute prompt logprobs (scored candidates) and decodes without the adapter's cost per token. The merge is
        done in float32 and then cast, so bf16 rounding does not eat the low-rank update."""
        import torch

        from ..artifact import load_artifact
        from ..dtypes import resolve_dtype

        if not _NAME.match(name):
            raise ConfigError(f"invalid model name {name!r} (letters, digits, '.', '_', '-'; at most 128)")
        want = resolve_dtype(self.dtype) if self.dtype is not None else load_artifact_dtype(self.base_ref)
        pipe = load_artifact(artifact, dtype="float32", merge_lora=True)
        if want != torch.float32:
            pipe.model.to(want)
        pipe.model.language_model.config._name_or_path = ""  # not the base's folder: its weights differ now
        self._apply_limits(pipe)
        self.base = ServedModel(name, pipe, vllm_name=name, artifact=artifact.resolve())
        self.models = {name: self.base}
        self.default, self.merged = name, True

    def set_limits(self, limits: MediaLimits) -> None:
        self.limits = limits
        for entry in self.models.values():
            self._apply_limits(entry.pipe)

    def _apply_limits(self, pipe) -> None:
        if self.limits is not None:
            pipe.processor.limits = self.limits

    def add_lora(self, name: str, artifact: str | Path) -> ServedModel:
        """Load an artifact (its projectors, processor and adapter) under `name`."""
        from ..artifact import BASE_KEY, is_artifact, load_artifact

        if not _NAME.match(name):
            raise ConfigError(f"invalid model name {name!r} (letters, digits, '.', '_', '-'; at most 128)")
        if self.merged:
            raise ConfigError(f"this server serves '{self.default}' with its LoRA merged into the LLM; another "
                              "artifact's LoRA would apply on top of those weights, not the base's (serve it "
                              "without --merge-lora)")
        artifact = Path(artifact).expanduser().resolve()
        if not is_artifact(artifact):
            raise ConfigError(f"'{artifact}' is not a trained artifact (no projectors.safetensors)")
        with self._lock:
            if name in self.models:
                raise ConfigError(f"a model named '{name}' is already served")
        base = json.loads((artifact / "config.json").read_text()).get(BASE_KEY, "")
        if not _same_base(base, self.base_ref):
            raise ConfigError(f"artifact '{artifact}' extends base '{base}', but this server serves '{self.base_ref}'")
        adapter, rank, targets = adapter_info(artifact)
        has_llm = (artifact / "llm").is_dir()
        if self.backend == "vllm" and has_llm:
            raise ConfigError(f"artifact '{artifact}' has a fully trained llm/ (no LoRA): vLLM serves the base LLM "
                              "plus LoRA adapters only; serve it with --backend hf")
        pipe = load_artifact(artifact, dtype=self.dtype)
        self._apply_limits(pipe)
        if self.backend == "vllm" and not any(t in ("embed_tokens", "lm_head") for t in targets):
            # The gateway only embeds tokens; vLLM applies the adapter. Share the base LLM (frees the copy).
            pipe.model.language_model = self.base.pipe.model.language_model
        entry = ServedModel(name, pipe, vllm_name=name if adapter is not None else self.base.vllm_name,
                            artifact=artifact, adapter_dir=adapter, lora_rank=rank)
        with self._lock:
            if name in self.models:
                raise ConfigError(f"a model named '{name}' is already served")
            self.models[name] = entry
        return entry

    def remove(self, name: str) -> ServedModel:
        with self._lock:
            entry = self.models.get(name)
            if entry is None or entry is self.base:
                raise ConfigError(f"no LoRA model named '{name}' is served")
            return self.models.pop(name)

    def get(self, name: str) -> ServedModel | None:
        return self.models.get(name)

    def names(self) -> list[str]:
        return list(self.models)

    def loras(self) -> list[ServedModel]:
        return [m for m in self.models.values() if m.adapter_dir is not None]
