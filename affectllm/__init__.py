"""affectllm: LLM-based multimodal affective reasoning.

Public API is imported lazily so that `import affectllm` (and the scoring CLI) stays fast and does not
pull in torch until a model is needed."""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "AffectConfig": "affectllm.configuration_affect",
    "AffectForConditionalGeneration": "affectllm.modeling_affect",
    "AffectProcessor": "affectllm.processing_affect",
    "load": "affectllm.api",
    "chat": "affectllm.api",
    "AffectError": "affectllm.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'affectllm' has no attribute {name!r}")
