"""Shared fixtures: tiny models from configs in code, synthetic media, and the real data kit when present."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from strict_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402,F401  (strict CI hooks)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("AFFECTLLM_DATA", REPO.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """A file of ../shared/data, or skip the test cleanly when the kit (or that file) is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def tiny_spec(**overrides) -> dict:
    """The `tiny` preset spec with overrides: top-level keys replace, `affect`/`*_config` dicts update."""
    from affectllm.presets import preset_spec

    spec = copy.deepcopy(preset_spec("tiny"))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict) and not value.get("model_type"):
            spec[key].update(value)
        else:
            spec[key] = value
    return spec


def build_tiny(**overrides):
    from affectllm.api import AffectPipeline
    from affectllm.presets import build_from_spec

    model, processor = build_from_spec(tiny_spec(**overrides))
    return AffectPipeline(model, processor, "tiny")


def tone(seconds: float = 1.5, freq: float = 220.0, sr: int = 16000, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def picture(h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny():
    return build_tiny()
