"""Do the `mini` feature towers carry real signal? Held-aside speakers/subjects, real data only.

RAVDESS (8 classes): prosody tower -> mean+std pooling over tokens -> standardise + logistic regression; C picked by
actor-grouped CV on training actors 1-12 only; tested once on actors 13-16.
Reported twice: mean+std over all output tokens (the plain protocol, 2 x 430 dims), and mean+std over the 50 Hz
frames the tokens stack, restricted to speech frames (within 40 dB of the clip's loudest, from the tower's own energy
feature; drops the leading/trailing silence), plus the voiced frames' log-F0 mean/std and the voiced ratio
(2 x 86 + 3 dims: the same information without the 5x redundancy of stacked tokens).
CK+ (7 classes): HOG tower tokens flattened -> linear SVM (on the raw L2-Hys tokens: standardising every dim
amplifies noise and lost ~4 points); subject-disjoint 5-fold GroupKFold, C picked by subject-grouped inner CV on
the training folds only.

Usage: python bench/bench_towers.py [--data DIR] [--skip-audio] [--skip-vision] [--threads 1]
                                    [--hog-extras none,lbp,intensity]
Data: $AFFECTLLM_DATA or ../shared/data next to the project root.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import affectllm.towers  # noqa: E402,F401  (registers the Auto classes)
from transformers import AutoConfig, AutoModel  # noqa: E402

from classical import data_root, mean_std, pick_c  # noqa: E402  (shared with bench/baselines.py)

LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
SVM_GRID = (0.1, 0.3, 1.0, 3.0)


def bench_ravdess(root: Path, batch_size: int = 16) -> None:
    import soundfile as sf

    base = root / "speech" / "ravdess"
    labels = pd.read_csv(base / "labels.csv")
    waves = []
    for f in labels["file"]:
        w, sr = sf.read(base / f, dtype="float32", always_2d=True)
        assert sr == 16000, (f, sr)
        waves.append(torch.from_numpy(w.mean(1)))
    train = (labels["actor"] <= 12).to_numpy()
    test = labels["actor"].between(13, 16).to_numpy()
    print(f"RAVDESS: {len(waves)} clips, {train.sum()} train (actors 1-12), {test.sum()} test (actors 13-16)")

    tower = AutoModel.from_config(AutoConfig.for_model("affect_prosody")).eval()
    t0 = time.perf_counter()
    tower.fit_normalization([w for w, t in zip(waves, train) if t])
    t_fit = time.perf_counter() - t0

    pooled, pooled_speech, t_feat = [], [], 0.0
    names = tower.config.frame_feature_names
    e_col, v_col, f0_col = (names.index(n) for n in ("energy_db", "voiced", "log_f0"))
    d = tower.config.num_frame_features
    for i in range(0, len(waves), batch_size):
        chunk = waves[i: i + batch_size]
        lengths = [len(w) for w in chunk]
        x = torch.zeros(len(chunk), max(lengths))
        mask = torch.zeros_like(x, dtype=torch.long)
        for j, w in enumerate(chunk):
            x[j, : len(w)], mask[j, : len(w)] = w, 1
        t0 = time.perf_counter()
        with torch.no_grad():
            res = tower(input_values=x, attention_mask=mask, output_hidden_states=True)
        t_feat += time.perf_counter() - t0
        for j, n in enumerate(lengths):
            tok = res.last_hidden_state[j, : tower.config.num_output_frames(n)]
            pooled.append(mean_std(tok))
            # the same tokens read as the frames they stack; speech frames only, pitch over voiced frames only
            nf = tower.config.num_feature_frames(n)
            frames = tok.reshape(-1, d)[:nf]
            raw = res.hidden_states[0][j, : tok.shape[0]].reshape(-1, d)[:nf]  # unnormalised, same layout
            speech = raw[:, e_col] > raw[:, e_col].max() - 40.0
            voiced = raw[:, v_col] > 0.5
            f0 = frames[voiced, f0_col] if voiced.sum() > 1 else torch.zeros(2)
            sf_ = frames[speech]
            pitch = torch.stack([f0.mean(), f0.std(unbiased=False), voiced.float().mean()])
            pooled_speech.append(torch.cat([sf_.mean(0), sf_.std(0, unbiased=False), pitch]).numpy())
    audio_s = sum(len(w) for w in waves) / 16000
    print(f"  tower: {tower.config.hidden_size}-d tokens at {tower.config.tokens_per_second:g}/s; "
          f"extraction {len(waves) / t_feat:.0f} clips/s = {audio_s / t_feat:.0f}x real time "
          f"({1000 * t_feat / len(waves):.1f} ms per {audio_s / len(waves):.1f} s clip, batches of {batch_size}); "
          f"normalisation fit {t_fit:.1f} s")
    for name, X in (("tokens mean+std", np.stack(pooled)), ("speech frames mean+std", np.stack(pooled_speech))):
        evaluate_ravdess(name, X, labels, train, test)


def evaluate_ravdess(name, X, labels, train, test) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = labels["emotion"].to_numpy()

    def make(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))

    c, scores = pick_c(make, X[train], y[train], labels["actor"].to_numpy()[train], n_splits=4, grid=LR_GRID)
    print(f"  [{name}] C by actor-grouped CV on actors 1-12: "
          + ", ".join(f"{k:g}:{v:.3f}" for k, v in scores.items()) + f" -> C={c:g}")
    clf = make(c).fit(X[train], y[train])
    pred = clf.predict(X[test])
    acc, uar = accuracy_score(y[test], pred), balanced_accuracy_score(y[test], pred)
    print(f"  [{name}] RAVDESS held-out actors 13-16: accuracy {acc:.3f}, UAR {uar:.3f} (chance 0.125)")


def load_ckplus(root: Path, size: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    from PIL import Image

    base = root / "face" / "ckplus48"
    labels = pd.read_csv(base / "labels.csv")
    imgs = np.stack([np.asarray(Image.open(base / f).convert("L"), dtype=np.float32) / 255.0 for f in labels["file"]])
    x = torch.from_numpy(imgs)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1).expand(-1, 3, -1, -1)
    return x.contiguous(), labels["emotion"].to_numpy(), labels["subject"].to_numpy()


def bench_ckplus(root: Path, extras: list[str]) -> None:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.svm import LinearSVC

    for extra in extras:
        cfg = AutoConfig.for_model("affect_hog", extra_features=extra)
        tower = AutoModel.from_config(cfg).eval()
        x, y, subj = load_ckplus(root, cfg.image_size)
        if extra == extras[0]:
            print(f"CK+: {len(y)} images, {len(set(subj))} subjects, {len(set(y))} classes; resized to "
                  f"{cfg.image_size}px; subject-disjoint 5-fold GroupKFold")
        t0 = time.perf_counter()
        with torch.no_grad():
            X = tower(pixel_values=x).last_hidden_state.flatten(1).numpy()
        t_feat = time.perf_counter() - t0

        def make(c):
            return LinearSVC(C=c, max_iter=5000)

        preds = np.empty_like(y)
        chosen = []
        for tr, te in GroupKFold(5).split(X, y, subj):
            c, _ = pick_c(make, X[tr], y[tr], subj[tr], n_splits=3, grid=SVM_GRID)
            chosen.append(c)
            preds[te] = make(c).fit(X[tr], y[tr]).predict(X[te])
        acc, uar = accuracy_score(y, preds), balanced_accuracy_score(y, preds)
        chance = pd.Series(y).value_counts(normalize=True).max()
        print(f"  HOG extra_features={extra!r}: {cfg.num_output_tokens} tokens x {cfg.hidden_size} d; "
              f"{len(y) / t_feat:.0f} images/s; C per fold {chosen}; accuracy {acc:.3f}, UAR {uar:.3f} "
              f"(chance: uniform {1 / len(set(y)):.3f}, majority {chance:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--skip-audio", action="store_true")
    ap.add_argument("--skip-vision", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (small ops: 1 is fastest on a busy box)")
    ap.add_argument("--hog-extras", default="none",
                    help="comma list of extra_features variants, e.g. none,lbp,intensity")
    args = ap.parse_args()
    root = data_root(args.data)
    if not root.is_dir():
        print(f"no data at {root} (set AFFECTLLM_DATA); nothing to benchmark")
        return
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    if not args.skip_audio:
        bench_ravdess(root)
    if not args.skip_vision:
        bench_ckplus(root, args.hog_extras.split(","))


if __name__ == "__main__":
    main()
