"""Helpers shared by the benches that fit classical models (bench/baselines.py, bench/real_runs.py,
bench/bench_towers.py): the GoEmotions TF-IDF model, C selection by grouped CV, feature towers built from a
preset's config, clip/image features exactly as the processor would feed the towers, and a clustered bootstrap
that re-runs the project's own metric aggregation.

Import from a bench script (its folder is on sys.path): `from classical import ...`."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def data_root(arg: str | None = None) -> Path:
    return Path(arg or os.environ.get("AFFECTLLM_DATA") or REPO.parent / "shared" / "data")


# ---- text ------------------------------------------------------------------------------------------------------
def tfidf_vectorizer():
    """Word 1-2-grams, min_df 2, sublinear tf: the TF-IDF settings of every text baseline here."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)


def fit_tfidf_ovr(texts: Sequence[str], Y: np.ndarray, C: float = 4.0):
    """TF-IDF + one-vs-rest logistic regression (multi-label). Returns predict_proba(texts) -> [N, L]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    vec = tfidf_vectorizer()
    clf = OneVsRestClassifier(LogisticRegression(max_iter=1000, C=C), n_jobs=1).fit(vec.fit_transform(texts), Y)
    return lambda new: clf.predict_proba(vec.transform(list(new)))


def threshold_labels(prob: np.ndarray, space: Sequence[str], threshold: float) -> list[list[str]]:
    """Every label with probability >= threshold; the most probable one when none is (never an empty answer)."""
    return [[space[j] for j in np.flatnonzero(row >= threshold)] or [space[int(row.argmax())]] for row in prob]


# ---- model selection -------------------------------------------------------------------------------------------
def pick_c(make: Callable[[float], Any], X, y, groups, n_splits: int, grid) -> tuple[float, dict]:
    """C with the best mean grouped-CV accuracy (groups = speakers/subjects of the training part only)."""
    from sklearn.model_selection import GroupKFold, cross_val_score

    scores = {c: float(np.mean(cross_val_score(make(c), X, y, groups=groups, cv=GroupKFold(n_splits))))
              for c in grid}
    return max(scores, key=scores.get), scores


# ---- towers ----------------------------------------------------------------------------------------------------
def tower_from_preset(preset: str, which: str, **overrides):
    """(tower, config) for the preset's `audio_config` / `vision_config`, no LLM. Without overrides a tower with
    pretrained weights (`{which}_path`, e.g. mini's FER mini-Xception) is loaded from its local folder; with
    overrides (e.g. a HOG grid point, `model_type` included) the tower is built from its config alone."""
    import affectllm.towers  # noqa: F401  (registers the Auto classes)
    from transformers import AutoConfig, AutoModel

    from affectllm.presets import _local_dir, preset_spec

    full = preset_spec(preset)
    if not overrides and f"{which}_path" in full:
        tower = AutoModel.from_pretrained(_local_dir(full[f"{which}_path"], f"{which} tower")).eval()
        return tower, tower.config
    spec = dict(full[f"{which}_config"])
    spec.update(overrides)
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    return AutoModel.from_config(cfg).eval(), cfg


def load_waves(paths: Sequence[str], sampling_rate: int) -> list[np.ndarray]:
    """Mono float32 waveforms decoded and resampled by affectllm.media, as the processor does."""
    from affectllm import media

    return [media.load_audio(p, sampling_rate=sampling_rate).astype(np.float32) for p in paths]


def load_pixels(paths: Sequence[str], image_size: int, model_type: str = "affect_hog") -> np.ndarray:
    """[N, 3, S, S] float32: affectllm.media.load_image + the processor's own resize/crop/normalisation."""
    from affectllm import media
    from affectllm.configuration_affect import IMAGE_NORMALIZATION
    from affectllm.processing_affect import tower_pixels

    mean, std = IMAGE_NORMALIZATION[model_type]
    return np.stack([tower_pixels(media.load_image(p), image_size, mean, std) for p in paths])


def tower_batches(tower, waves: Sequence, batch_size: int = 16, **kw):
    """Yield (tower output, lengths) for right-padded batches of 1-D waveforms (torch tensors or arrays)."""
    import torch

    for i in range(0, len(waves), batch_size):
        chunk = [torch.as_tensor(w) for w in waves[i: i + batch_size]]
        lengths = [len(w) for w in chunk]
        x = torch.zeros(len(chunk), max(lengths))
        mask = torch.zeros_like(x, dtype=torch.long)
        for j, w in enumerate(chunk):
            x[j, : len(w)], mask[j, : len(w)] = w, 1
        with torch.no_grad():
            yield tower(input_values=x, attention_mask=mask, **kw), lengths


def mean_std(tokens) -> np.ndarray:
    """[T, D] -> [2D]: per-dim mean then population std over the tokens."""
    import torch

    return torch.cat([tokens.mean(0), tokens.std(0, unbiased=False)]).numpy()


def audio_mean_std(tower, waves: Sequence, batch_size: int = 16) -> np.ndarray:
    """Clip features [N, 2 * hidden]: mean+std of the tower's output tokens over each clip's valid tokens."""
    out = []
    for res, lengths in tower_batches(tower, waves, batch_size):
        for j, n in enumerate(lengths):
            out.append(mean_std(res.last_hidden_state[j, : tower.config.num_output_frames(n)].float()))
    return np.stack(out)


def image_tokens(tower, pixels, batch_size: int = 256) -> np.ndarray:
    """[N, tokens * hidden]: the vision tower's output tokens, flattened."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(pixels), batch_size):
            x = torch.as_tensor(pixels[i: i + batch_size])
            out.append(tower(pixel_values=x).last_hidden_state.flatten(1).float().numpy())
    return np.concatenate(out)


def rowspace_basis(X_train: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """[D, r] orthonormal basis of the span of the training rows. An L2-regularised linear model's weights lie in
    that span, and projecting keeps every inner product with a training row, so a dual-solver fit (LinearSVC with
    dual=True) on X @ V sees the same Gram matrix: identical iterates and decision values (checked: equal
    iteration counts, |decision difference| < 1e-6 on CK+), at r = n_train dims instead of D (9,900 for 64 px
    HOG cells of 4 + LBP: ~15x faster)."""
    _, s, vt = np.linalg.svd(np.asarray(X_train, dtype=np.float64), full_matrices=False)
    return vt[s > s[0] * rtol].T


# ---- intervals -------------------------------------------------------------------------------------------------
def cluster_bootstrap(table, groups: Sequence, n: int = 1000, seed: int = 0, alpha: float = 0.05,
                      keys: Sequence[str] | None = None) -> dict[str, tuple[float, float]]:
    """Percentile CI that resamples whole groups (speakers, subjects) with replacement, re-running the metric's
    own aggregation (`SampleTable.aggregate`) on the implied per-sample weights. Use it where samples of one
    group are not independent (3 peak frames of one CK+ sequence, 60 utterances of one RAVDESS actor)."""
    rng = np.random.default_rng(seed)
    uniq, idx = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        counts = np.bincount(rng.integers(0, len(uniq), len(uniq)), minlength=len(uniq)).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = table.aggregate(table.columns, counts[idx])
        for k, v in res.items():
            if keys is None or k in keys:
                draws.setdefault(k, []).append(float(np.asarray(v, float)))
    out = {}
    for k, vals in draws.items():
        arr = np.asarray(vals)
        arr = arr[np.isfinite(arr)]
        lo, hi = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)]) if arr.size else (np.nan, np.nan)
        out[k] = (float(lo), float(hi))
    return out
