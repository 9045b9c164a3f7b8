"""Benchmark: score 20,000 samples with mer_wheel (and mer2024_ov) by resampling the real OV-MERD rows.

    python bench/bench_scoring.py [--n 20000] [--bootstrap 1000] [--data ../shared/data]

Prints the lexicon load time (once per process, cached) and the scoring wall/CPU time; the target is < 5 s for
20,000 samples on a 2-core CPU. Needs ../shared/data (or AFFECTLLM_DATA); exits 0 with a note if absent.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from affectllm.scoring import MerWheel, read_labels, read_synonym_zip, score

DEFAULT_DATA = Path(os.environ.get("AFFECTLLM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args(argv)
    ovmer = args.data / "ovmer"
    if not (ovmer / "emotion_wheel" / "format.csv").is_file():
        print(f"skipped: real data not found under {ovmer}")
        return 0
    gold = read_labels(ovmer / "ov_store" / "check-openset.csv")
    pred = read_labels(ovmer / "ov_store" / "predict-openset.csv")
    names = list(gold)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(names), args.n)
    big_gold = {f"s{i}": gold[names[j]] for i, j in enumerate(pick)}
    big_pred = {f"s{i}": pred[names[j]] for i, j in enumerate(pick)}

    t0 = time.perf_counter()
    wheel = MerWheel.load(ovmer / "emotion_wheel")
    t_load = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    r = score("mer_wheel", big_gold, big_pred, lexicon=wheel)
    t_score, c_score = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    rb = score("mer_wheel", big_gold, big_pred, lexicon=wheel, bootstrap=args.bootstrap)
    t_boot = time.perf_counter() - t0 - t_score

    syn = read_synonym_zip(ovmer / "ov_store" / "openset-synonym.zip")
    big_syn = {f"s{i}": syn[names[j]] for i, j in enumerate(pick)}
    t0 = time.perf_counter()
    r24 = score("mer2024_ov", big_gold, big_pred, synonyms=big_syn)
    t_24 = time.perf_counter() - t0

    print(f"samples: {args.n} (resampled from {len(names)} OV-MERD rows), CPU cores: {os.cpu_count()}")
    print(f"lexicon load (once, cached):       {t_load:7.3f} s")
    print(f"mer_wheel scoring:                 {t_score:7.3f} s   (CPU {c_score:.3f} s)  MER2025 {r['mer2025']:.4f} "
          f"(level1 {r['level1_f']:.4f}, level2 {r['level2_f']:.4f})")
    print(f"mer_wheel bootstrap x{args.bootstrap}:        {max(t_boot, 0):7.3f} s   95% CI "
          f"[{rb['mer2025_ci_low']:.4f}, {rb['mer2025_ci_high']:.4f}]")
    print(f"mer2024_ov scoring:                {t_24:7.3f} s   score {r24['score']:.4f}")
    ok = t_score < 5.0
    print("target (< 5 s for mer_wheel scoring):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
