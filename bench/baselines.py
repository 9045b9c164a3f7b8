"""Classical baselines the LLM recipes must beat, on the project's own splits of ../shared/data.

Every choice (C, threshold, HOG configuration) is made on train (cross-validation) or dev, never on test; every
number is computed by the project's scorer (`affectllm.scoring.score`, the code the eval suite uses) with n and a
95 % percentile bootstrap CI over samples (1000 resamples, seed 0). Where samples cluster (CK+ subjects, RAVDESS
actors) a second CI resamples whole subjects/actors (when there are >= 4 of them), the honest one for a
subject-disjoint test (still crude with RAVDESS's 4 test actors).

  goemotions  TF-IDF (1-2-grams) + one-vs-rest logistic regression, train -> FULL dev (5,426), macro-F1 over the
              28 labels. C and the global decision threshold (labels with p >= t, else the argmax) are chosen
              by 3-fold CV on train (out-of-fold macro-F1); dev is only scored.
  meld        TF-IDF + multinomial logistic regression, train -> full dev (1,109); C and class_weight chosen by
              dialogue-grouped 5-fold CV on train (weighted-F1); weighted-F1, UAR, accuracy.
  ravdess     the `mini` preset's prosody tower (built from its audio_config, no LLM), normalisation fitted on the
              train split (actors 1-10) only; clip = mean+std of the normalised tokens; standardise + logistic
              regression, C chosen on dev (actors 11-12) UAR; trained on train -> dev and test (13-16) UAR.
              Also: the same C refitted on trainval (actors 1-12, what the speech recipe trains on) -> test.
  ckplus      the HOG tower on processor-identical inputs (media.load_image + the processor's resize to the tower's
              image_size); HOG config x C chosen by subject-grouped 5-fold CV UAR on the train split (tower
              normalisation refitted inside each training fold, as the recipes fit it on their training split);
              linear SVM (LinearSVC, class_weight balanced). Trained on train -> dev and test UAR; also refitted on
              train+dev -> test. The current `mini` vision_config gets the same protocol for comparison.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python bench/baselines.py [--only goemotions,meld,ravdess,ckplus] [--data DIR]
Writes docs/results/baselines.json (sections not run keep their previous values) and prints a table.
Single-threaded (n_jobs=1, 1 torch/BLAS thread), sized for a shared 2-core CPU: measured 8.0 min wall (4.1 min CPU)
for all four sections on an AMD EPYC box loaded by a training run.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from classical import (REPO, audio_mean_std, cluster_bootstrap, data_root, fit_tfidf_ovr, image_tokens,  # noqa: E402
                       load_pixels, load_waves, rowspace_basis, threshold_labels, tfidf_vectorizer,
                       tower_from_preset)

RESULTS = REPO / "docs" / "results" / "baselines.json"
N_BOOT, SEED = 1000, 0
MIN_GROUPS = 4  # fewer groups (RAVDESS dev: 2 actors) give too few distinct resamples for a group CI
SECTIONS = ("goemotions", "meld", "ravdess", "ckplus")

GO_C_GRID = (1.0, 4.0, 16.0)
GO_THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.05, 0.601, 0.025))
MELD_C_GRID = (0.3, 1.0, 3.0, 10.0)
MELD_CLASS_WEIGHT = (None, "balanced")
LR_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
SVM_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0)
HOG_GRID = [{"model_type": "affect_hog", "image_size": s, "num_channels": 1, "cell_size": c, "block_size": 2,
             "num_bins": 9, "extra_features": e}
            for s in (48, 64) for c in (4, 6, 8) if s % c == 0 for e in ("none", "lbp")]


def scored(metric: str, gold, pred, label_set, keys, groups=None) -> dict:
    """The project's scorer with a per-sample bootstrap CI; plus a group-resampling CI when groups are given."""
    from affectllm.scoring import score, score_table

    res = score(metric, gold, pred, label_set=label_set, bootstrap=N_BOOT, seed=SEED)
    out = {"n": len(gold)}
    for k in keys:
        out[k] = res[k]
        out[f"{k}_ci95"] = [res[f"{k}_ci_low"], res[f"{k}_ci_high"]]
    if groups is not None and len(set(groups)) >= MIN_GROUPS:
        ci = cluster_bootstrap(score_table(metric, gold, pred, label_set=label_set), groups, n=N_BOOT, seed=SEED,
                               keys=keys)
        out["n_groups"] = len(set(groups))
        for k in keys:
            out[f"{k}_ci95_by_group"] = list(ci[k])
    return out


def single(labels) -> list[list[str]]:
    return [[str(x)] for x in labels]


# ---- GoEmotions ------------------------------------------------------------------------------------------------
def run_goemotions() -> dict:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import MultiLabelBinarizer

    from affectllm.data import LABEL_SETS, load_corpus

    space = LABEL_SETS["goemotions"]
    train, dev = load_corpus("goemotions", "train"), load_corpus("goemotions", "dev")
    texts = np.array([s.text for s in train], dtype=object)
    Y = MultiLabelBinarizer(classes=space).fit_transform([s.multi_labels for s in train])

    def binarise(prob, t):
        P = (prob >= t).astype(int)
        empty = P.sum(1) == 0
        P[empty, prob[empty].argmax(1)] = 1  # same rule as threshold_labels
        return P

    cv = {}
    folds = list(KFold(3, shuffle=True, random_state=SEED).split(texts))
    for C in GO_C_GRID:
        oof = np.zeros(Y.shape)
        for tr, va in folds:
            oof[va] = fit_tfidf_ovr(texts[tr], Y[tr], C=C)(texts[va])
        cv[C] = {t: float(f1_score(Y, binarise(oof, t), average="macro", zero_division=0)) for t in GO_THRESHOLDS}
    C, t = max(((c, t) for c in cv for t in cv[c]), key=lambda k: cv[k[0]][k[1]])
    prob = fit_tfidf_ovr(texts, Y, C=C)([s.text for s in dev])
    gold = [s.multi_labels for s in dev]
    keys = ("macro_f1", "micro_f1", "samples_f1")
    res = {
        "model": "TF-IDF word 1-2-grams (min_df 2, sublinear tf) + one-vs-rest LogisticRegression (lbfgs)",
        "train": {"split": "train", "n": len(train)}, "eval_split": "dev (full)",
        "selection": "C and global threshold by 3-fold CV on train (out-of-fold macro-F1 over 28 labels); a sample "
                     "gets every label with p >= threshold, else its argmax label",
        "c_grid": list(GO_C_GRID), "threshold_grid": [GO_THRESHOLDS[0], GO_THRESHOLDS[-1], 0.025],
        "cv_best_threshold_per_c": {f"{c:g}": {"threshold": max(cv[c], key=cv[c].get),
                                               "cv_macro_f1": max(cv[c].values())} for c in cv},
        "cv_macro_f1_per_threshold_at_chosen_c": {f"{k:g}": v for k, v in cv[C].items()},
        "chosen": {"C": C, "threshold": t, "cv_macro_f1": cv[C][t]},
        "dev": scored("closed_set_multilabel", gold, threshold_labels(prob, space, t), "goemotions", keys),
        "dev_fixed_threshold_0.3": scored("closed_set_multilabel", gold, threshold_labels(prob, space, 0.3),
                                          "goemotions", ("macro_f1",)),
    }
    return res


# ---- MELD ------------------------------------------------------------------------------------------------------
def run_meld() -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline

    from affectllm.data import load_corpus

    train, dev = load_corpus("meld", "train"), load_corpus("meld", "dev")
    X = np.array([s.text for s in train], dtype=object)
    y = np.array([s.label for s in train])
    groups = np.array([s.meta["dialogue_id"] for s in train])

    def make(c, cw):
        return make_pipeline(tfidf_vectorizer(), LogisticRegression(C=c, class_weight=cw, max_iter=2000))

    cv = {}
    for cw in MELD_CLASS_WEIGHT:
        for c in MELD_C_GRID:
            pred = np.empty_like(y)
            for tr, va in GroupKFold(5).split(X, y, groups):
                pred[va] = make(c, cw).fit(X[tr], y[tr]).predict(X[va])
            cv[(c, cw)] = float(f1_score(y, pred, average="weighted"))
    c, cw = max(cv, key=cv.get)
    pred = make(c, cw).fit(X, y).predict([s.text for s in dev])
    return {
        "model": "TF-IDF word 1-2-grams (min_df 2, sublinear tf) + multinomial LogisticRegression",
        "train": {"split": "train", "n": len(train)}, "eval_split": "dev (full)",
        "selection": "C x class_weight by dialogue-grouped 5-fold CV on train (out-of-fold weighted-F1)",
        "cv_weighted_f1": {f"C={k[0]:g},class_weight={k[1]}": v for k, v in cv.items()},
        "chosen": {"C": c, "class_weight": cw, "cv_weighted_f1": cv[(c, cw)]},
        "dev": scored("closed_set", [s.label for s in dev], single(pred), "meld",
                      ("weighted_f1", "uar", "accuracy", "macro_f1")),
        "majority_class_dev_accuracy": float(np.mean([s.label == "neutral" for s in dev])),
    }


# ---- RAVDESS ---------------------------------------------------------------------------------------------------
def run_ravdess() -> dict:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from affectllm.data import load_corpus

    tower, cfg = tower_from_preset("mini", "audio")
    splits = {k: load_corpus("ravdess", k) for k in ("train", "dev", "test")}
    t0 = time.perf_counter()
    waves = {k: load_waves([s.audio for s in v], cfg.sampling_rate) for k, v in splits.items()}
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    tower.fit_normalization([torch.from_numpy(w) for w in waves["train"]])
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    X = {k: audio_mean_std(tower, [torch.from_numpy(w) for w in v]) for k, v in waves.items()}
    t_feat = time.perf_counter() - t0
    y = {k: np.array([s.label for s in v]) for k, v in splits.items()}
    actors = {k: [s.meta["actor"] for s in v] for k, v in splits.items()}

    def make(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))

    dev_uar = {c: float(balanced_accuracy_score(y["dev"], make(c).fit(X["train"], y["train"]).predict(X["dev"])))
               for c in LR_GRID}
    c = max(dev_uar, key=dev_uar.get)  # ties -> the smallest C (grid order)
    clf = make(c).fit(X["train"], y["train"])
    keys = ("uar", "accuracy")
    refit = make(c).fit(np.concatenate([X["train"], X["dev"]]), np.concatenate([y["train"], y["dev"]]))
    return {
        "model": "mini prosody tower (preset audio_config) -> mean+std of normalised tokens over each clip -> "
                 "StandardScaler + multinomial LogisticRegression",
        "tower_config": {k: v for k, v in preset_audio_config().items()},
        "features": f"{X['train'].shape[1]} dims (2 x {cfg.hidden_size}); tower normalisation fitted on train only "
                    f"({len(waves['train'])} clips)",
        "splits": {k: {"n": len(v), "actors": sorted(set(actors[k]))} for k, v in splits.items()},
        "selection": "C by dev UAR (train -> dev); test never used for a choice",
        "dev_uar_per_c": {f"{k:g}": v for k, v in dev_uar.items()},
        "chosen": {"C": c},
        "dev": scored("closed_set", list(y["dev"]), single(clf.predict(X["dev"])), "ravdess", keys,
                      groups=actors["dev"]),
        "test": scored("closed_set", list(y["test"]), single(clf.predict(X["test"])), "ravdess", keys,
                       groups=actors["test"]),
        "test_refit_trainval": scored("closed_set", list(y["test"]), single(refit.predict(X["test"])), "ravdess",
                                      keys, groups=actors["test"]),
        "chance_uar": 1 / 8,
        "timing_s": {"decode": round(t_load, 1), "fit_normalization": round(t_fit, 1),
                     "features_960_clips": round(t_feat, 1)},
    }


def preset_audio_config() -> dict:
    from affectllm.presets import preset_spec

    return dict(preset_spec("mini")["audio_config"])


# ---- CK+ -------------------------------------------------------------------------------------------------------
def run_ckplus() -> dict:
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.svm import LinearSVC

    from affectllm.data import load_corpus
    from affectllm.presets import preset_spec

    splits = {k: load_corpus("ckplus", k) for k in ("train", "dev", "test")}
    y = {k: np.array([s.label for s in v]) for k, v in splits.items()}
    subj = {k: [s.subject for s in v] for k, v in splits.items()}
    pixel_cache: dict[int, dict[str, np.ndarray]] = {}

    def pixels(size: int) -> dict[str, np.ndarray]:
        if size not in pixel_cache:
            pixel_cache[size] = {k: load_pixels([s.image for s in v], size) for k, v in splits.items()}
        return pixel_cache[size]

    def features(hog: dict, fit_on: np.ndarray, *apply_to: np.ndarray) -> list[np.ndarray]:
        """Flattened tokens with the tower normalisation fitted on `fit_on` only (as the recipes fit it on their
        training split), projected on the span of the `fit_on` rows (exact for the dual SVM: see rowspace_basis).
        `hog` = {} means the `mini` preset's own (pretrained) vision tower."""
        tower, _ = tower_from_preset("mini", "vision", **hog)
        tower.fit_normalization(torch_tensor(fit_on))
        V = rowspace_basis(image_tokens(tower, fit_on))
        return [image_tokens(tower, a) @ V for a in apply_to]

    def svm(c):
        return LinearSVC(C=c, class_weight="balanced", dual=True, max_iter=20000, random_state=SEED)

    folds = list(GroupKFold(5).split(y["train"], y["train"], subj["train"]))

    def size(hog: dict) -> int:
        return hog.get("image_size") or tower_from_preset("mini", "vision")[1].image_size

    def cv_uar(hog: dict) -> dict[float, float]:
        px = pixels(size(hog))["train"]
        per_c = {c: [] for c in SVM_GRID}
        for tr, va in folds:
            Xtr, Xva = features(hog, px[tr], px[tr], px[va])
            for c in SVM_GRID:
                pred = svm(c).fit(Xtr, y["train"][tr]).predict(Xva)
                per_c[c].append(balanced_accuracy_score(y["train"][va], pred))
        return {c: float(np.mean(v)) for c, v in per_c.items()}

    def evaluate(hog: dict, c: float) -> dict:
        px = pixels(size(hog))
        Xtr, Xdev, Xte = features(hog, px["train"], px["train"], px["dev"], px["test"])
        clf = svm(c).fit(Xtr, y["train"])
        keys = ("uar", "accuracy")
        both = np.concatenate([px["train"], px["dev"]])
        Xboth, Xte2 = features(hog, both, both, px["test"])
        refit = svm(c).fit(Xboth, np.concatenate([y["train"], y["dev"]]))
        tower, _ = tower_from_preset("mini", "vision", **hog)
        return {"n_features": tower.config.num_output_tokens * tower.config.hidden_size,
                "dev": scored("closed_set", list(y["dev"]), single(clf.predict(Xdev)), "ckplus", keys,
                              groups=subj["dev"]),
                "test": scored("closed_set", list(y["test"]), single(clf.predict(Xte)), "ckplus", keys,
                               groups=subj["test"]),
                "test_refit_train_dev": scored("closed_set", list(y["test"]), single(refit.predict(Xte2)), "ckplus",
                                               keys, groups=subj["test"])}

    t0 = time.perf_counter()
    grid = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LinearSVC convergence chatter on tiny folds
        for hog in HOG_GRID:
            scores = cv_uar(hog)
            best = max(scores, key=scores.get)
            grid.append({"config": hog, "cv_uar_per_c": {f"{k:g}": v for k, v in scores.items()},
                         "best_c": best, "cv_uar": scores[best]})
        chosen = max(grid, key=lambda g: g["cv_uar"])  # ties -> the first in grid order
        _, mini_full = tower_from_preset("mini", "vision")  # the preset's own tower (pretrained weights if any)
        mini_cfg = {"model_type": mini_full.model_type}
        mini_scores = cv_uar({})
        mini_c = max(mini_scores, key=mini_scores.get)
        chosen_eval = evaluate(chosen["config"], chosen["best_c"])
        mini_eval = evaluate({}, mini_c)
    return {
        "model": "vision tower tokens (normalisation fitted on the training part) flattened -> LinearSVC "
                 "(squared hinge, dual, class_weight balanced; fitted in the exact row-space projection); 'chosen' "
                 "= the best HOG configuration, 'mini_preset' = the preset's own tower",
        "input": "media.load_image (RGB) -> processor resize (shortest side to image_size, bicubic, centre crop), "
                 "the tower's own grey conversion; CK+ crops are 48x48 grey",
        "splits": {k: {"n": len(v), "subjects": len(set(subj[k]))} for k, v in splits.items()},
        "selection": "HOG config x C by subject-grouped 5-fold CV UAR on the train split only (tower normalisation "
                     "refitted inside each training fold)",
        "svm_c_grid": list(SVM_GRID),
        "grid": grid,
        "chosen": {"config": chosen["config"], "C": chosen["best_c"], "cv_uar": chosen["cv_uar"], **chosen_eval},
        "mini_preset": {"config": mini_cfg, "preset_vision_config": preset_spec("mini")["vision_config"],
                        "C": mini_c,
                        "cv_uar": mini_scores[mini_c], "cv_uar_per_c": {f"{k:g}": v for k, v in mini_scores.items()},
                        **mini_eval},
        "chance_uar": 1 / 7,
        "note": "num_channels is declarative for the HOG tower (the processor sends RGB; the tower converts to grey "
                "and CK+ is grey), so 1 and 3 give identical features",
        "timing_s": round(time.perf_counter() - t0, 1),
    }


def torch_tensor(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


# ---- report ----------------------------------------------------------------------------------------------------
def fmt(block: dict, key: str, by_group: bool = False) -> str:
    ci = block[f"{key}_ci95"]
    s = f"{block[key]:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    if by_group and f"{key}_ci95_by_group" in block:
        g = block[f"{key}_ci95_by_group"]
        s += f" (by-group [{g[0]:.3f}, {g[1]:.3f}])"
    return s


def table(res: dict) -> str:
    rows = []
    if "goemotions" in res:
        r = res["goemotions"]
        ch = r["chosen"]
        rows.append(("GoEmotions", "TF-IDF+OvR-LR", f"dev n={r['dev']['n']}", "macro-F1 (28)",
                     fmt(r["dev"], "macro_f1"), f"C={ch['C']:g} t={ch['threshold']:g} (CV {ch['cv_macro_f1']:.3f})"))
        rows.append(("", "", "", "micro-F1", fmt(r["dev"], "micro_f1"), ""))
        rows.append(("", "same, t=0.3 fixed", "", "macro-F1", fmt(r["dev_fixed_threshold_0.3"], "macro_f1"), ""))
    if "meld" in res:
        r = res["meld"]
        ch = r["chosen"]
        rows.append(("MELD", "TF-IDF+LR", f"dev n={r['dev']['n']}", "weighted-F1", fmt(r["dev"], "weighted_f1"),
                     f"C={ch['C']:g} cw={ch['class_weight']} (CV {ch['cv_weighted_f1']:.3f})"))
        rows.append(("", "", "", "UAR", fmt(r["dev"], "uar"), ""))
    if "ravdess" in res:
        r = res["ravdess"]
        rows.append(("RAVDESS", "prosody mean+std LR", f"dev n={r['dev']['n']}", "UAR", fmt(r["dev"], "uar", True),
                     f"C={r['chosen']['C']:g} by dev UAR"))
        rows.append(("", "", f"test n={r['test']['n']}", "UAR", fmt(r["test"], "uar", True), "train only"))
        rows.append(("", "", "", "UAR", fmt(r["test_refit_trainval"], "uar", True), "refit trainval"))
    if "ckplus" in res:
        r = res["ckplus"]
        ch, mini = r["chosen"], r["mini_preset"]
        cfg = ch["config"]
        name = f"HOG {cfg['image_size']}px cell{cfg['cell_size']} {cfg['extra_features']}"
        rows.append(("CK+", name, f"cv(train)", "UAR", f"{ch['cv_uar']:.3f}", f"C={ch['C']:g}"))
        rows.append(("", "", f"dev n={ch['dev']['n']}", "UAR", fmt(ch["dev"], "uar", True), "train only"))
        rows.append(("", "", f"test n={ch['test']['n']}", "UAR", fmt(ch["test"], "uar", True), "train only"))
        rows.append(("", "", "", "UAR", fmt(ch["test_refit_train_dev"], "uar", True), "refit train+dev"))
        rows.append(("", f"mini tower ({mini['config']['model_type']})", "cv(train)", "UAR", f"{mini['cv_uar']:.3f}",
                     f"C={mini['C']:g}"))
        rows.append(("", "", f"dev n={mini['dev']['n']}", "UAR", fmt(mini["dev"], "uar", True), "train only"))
        rows.append(("", "", f"test n={mini['test']['n']}", "UAR", fmt(mini["test"], "uar", True), "train only"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    head = ("corpus", "baseline", "split", "metric", "value [95% CI]", "chosen on train/dev")
    widths = [max(w, len(h)) for w, h in zip(widths, head)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores visible, 1 thread used"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma list of " + ",".join(SECTIONS))
    ap.add_argument("--data", default=None, help="data root (default $AFFECTLLM_DATA or ../shared/data)")
    ap.add_argument("--output", default=str(RESULTS))
    args = ap.parse_args()
    root = data_root(args.data)
    if not root.is_dir():
        print(f"no data at {root} (set AFFECTLLM_DATA); nothing to run")
        return 0
    os.environ["AFFECTLLM_DATA"] = str(root)
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    out_path = Path(args.output)
    res = json.loads(out_path.read_text()) if out_path.exists() else {}
    res.update({"machine": machine(), "bootstrap": f"{N_BOOT} resamples, seed {SEED}, percentile 95% CI",
                "scorer": "affectllm.scoring.score (closed_set / closed_set_multilabel)"})
    timings = res.setdefault("wall_s", {})
    runners = {"goemotions": run_goemotions, "meld": run_meld, "ravdess": run_ravdess, "ckplus": run_ckplus}
    for name in SECTIONS:
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        print(f"[{name}] running ...", flush=True)
        res[name] = runners[name]()
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"[{name}] done in {timings[name]} s", flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {out_path}")
    print(table({k: v for k, v in res.items() if k in SECTIONS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
