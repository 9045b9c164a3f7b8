"""Where the real corpora and the cue cache live. The corpora are never copied into the repository (several
licences forbid it): they are read in place from ../shared/data next to the checkout, or from $AFFECTLLM_DATA."""
from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    """$AFFECTLLM_DATA if set, else <repo>/../shared/data (the folder may be absent: callers skip or raise)."""
    env = os.environ.get("AFFECTLLM_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def cache_dir() -> Path:
    """$AFFECTLLM_CACHE if set, else ~/.cache/affectllm; created on demand by writers."""
    env = os.environ.get("AFFECTLLM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "affectllm"
