"""mer_wheel (MER2025/2026 emotion-wheel metric): hand-computed cases on a tiny synthetic lexicon that
exercise each rule of OV_METRIC.md, then the real OV-MERD numbers (skipped without ../shared/data), checked
against an independent literal implementation of the rules written here."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from affectllm.errors import ScoringInputError
from affectllm.scoring import (MerWheel, bootstrap_ci, mer_wheel, sample_wheel_f, sample_wheel_scores, score,
                               split_mer2025)

DATA = Path(os.environ.get("AFFECTLLM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
OVMER = DATA / "ovmer"

WHEEL_ROWS = [
    ("Happy", "Playful", "Cheerful"),
    (None, None, "Amused"),          # merged cells: forward-filled from the row above
    (None, None, "Joyful"),
    (None, "Content", "Pleased"),
    ("Sad", "Lonely", "Down"),
    (None, "Hurt", "Unhappy"),
    (" Angry ", "Mad", "Furious"),   # stray spaces are stripped
    (None, None, "Annoyed"),
    ("Fearful", "Scared", "Helpless"),
    (None, None, "Worried"),
]


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("emotion_wheel")
    pd.DataFrame({"name": ["happy", "joyful", "angry", "furious", "sad", "calm", "worried", "amused", "no words"],
                  "format": ["happy,happiness,happily", "joyful,joy,happiness", "angry,anger", "furious,fury",
                             "sad,sadness", "calm,calmness", "worried,worry", "amused,amusement", None]}
                 ).to_csv(d / "format.csv", index=False)
    pd.DataFrame({
        "word_run1": ["happy", "angry", "sad", "calm", "no words", "amused"],
        "synonym_run1": ["cheerful, joyful", "furious, mad", "unhappy", "relaxed", "speechless", "entertained"],
        "word_run2": ["joyful", "Angry ", "worried", "Sad", "calm", "amused"],
        "synonym_run2": ["happy", "Furious", "anxious", "down", "serene", "amusing"],
    }).to_excel(d / "synonym.xlsx", index=False)
    for k in range(1, 6):
        rows = WHEEL_ROWS + ([("Peaceful", "Calm", "Relaxed")] if k == 2 else [])
        pd.DataFrame(rows, columns=["level1", "level2", "level3"]).to_excel(d / f"wheel{k}.xlsx", index=False)
    return d


@pytest.fixture(scope="module")
def wheel(wheel_dir) -> MerWheel:
    return MerWheel.load(wheel_dir)


# -- rule 3: the mappings ------------------------------------------------------------------------------
def test_m1_alphabetically_first_row(wheel):
    assert wheel.m1("happiness") == "happy"      # listed by rows 'happy' and 'joyful'
    assert wheel.m1("joy") == "joyful"
    assert wheel.m1(" Fury ") == "furious"
    assert wheel.m1("glad") is None              # not a word of format.csv


def test_m2_first_sorted_synonym_head_merged_over_runs(wheel):
    assert wheel.m2("joy") == "happy"            # heads of 'joyful' = {happy (run1), joyful (run2)}
    assert wheel.m2("fury") == "angry"
    assert wheel.m2("worry") == "worried"
    assert wheel.heads["sad"] == {"sad"} and wheel.heads["down"] == {"sad"}   # 'Sad' lower-cased, stripped


def test_m3_candidates_are_sorted_heads_of_all_rows(wheel):
    # 'joy' -> rows [joyful] -> heads {happy, joyful}: 'happy' sorts first, so level 2 is happy's first
    # child 'content', not joyful's own branch 'playful'
    assert wheel.m3("joy", 1, 1) == "happy"
    assert wheel.m3("joy", 1, 2) == "content"
    assert wheel.m3("fury", 1, 1) == "angry" and wheel.m3("fury", 1, 2) == "mad"


def test_level2_maps_level1_word_to_alphabetically_first_child(wheel):
    assert wheel.m3("happy", 3, 2) == "content"  # children: playful, content -> content
    assert wheel.m3("sad", 3, 2) == "hurt"       # children: lonely, hurt -> hurt


def test_wheel_sheets_are_forward_filled(wheel):
    assert wheel.m3("amused", 1, 1) == "happy" and wheel.m3("amused", 1, 2) == "playful"
    assert wheel.m3("worry", 4, 1) == "fearful" and wheel.m3("worry", 4, 2) == "scared"
    assert wheel.m3("anger", 5, 1) == "angry"    # ' Angry ' stripped


def test_word_missing_from_a_wheel_is_dropped_there(wheel):
    assert wheel.m3("calm", 1, 1) is None
    assert wheel.m3("calm", 2, 1) == "peaceful" and wheel.m3("calm", 2, 2) == "calm"


# -- rules 1, 2, 4, 5: per sample ----------------------------------------------------------------------
def test_case_a_mappings_differ(wheel):
    s = sample_wheel_scores("['happy', 'angry']", "['joy', 'fury', 'glad']", wheel)
    assert (s["m1_p"], s["m1_r"]) == (0.0, 0.0)          # joyful/furious != happy/angry as word forms
    assert (s["m2_p"], s["m2_r"]) == (1.0, 1.0)          # synonyms merge them
    assert s["w1_l1_f"] == 1.0 and s["w1_l2_f"] == 1.0
    assert s["m2_p_lc"] == pytest.approx(2 / 3)          # honest: 'glad' is a predicted label too


def test_case_b_level1_hit_level2_miss(wheel):
    s = sample_wheel_scores(["happy"], ["amused"], wheel)
    assert s["w1_l1_p"] == 1.0 and s["w1_l2_p"] == 0.0 and s["m1_f"] == 0.0


def test_rule1_splitting():
    assert split_mer2025("['Happy ', ' SAD']") == ["Happy", "SAD"]
    assert split_mer2025("[happy; sad|calm\nfear]") == ["happy; sad|calm\nfear"]
    assert split_mer2025('["don\'t care", x]') == ["don", "t care", "x"]


def test_rule1_in_metric(wheel):
    r = mer_wheel(["[happy; sad]", "['Happy ']"], ["['happy']", "[' HAPPY', 'x']"], lexicon=wheel)
    assert r["skipped_empty_gold"] == 1 and r["oov_dropped_gold"] == 1 and r["m1_p"] == 1.0
    # MER2025 gold is split, joined with ", " and split again: "[happy]]" -> 'happy' in gold, 'happy]' in pred
    r = mer_wheel(["[happy]]", "[happy]]"], ["['happy']", "[happy]]"], lexicon=wheel)
    assert r["skipped_empty_gold"] == 0 and r["m1_p"] == 0.5 and r["oov_dropped_pred"] == 1


def test_rule2_oov_dropped_but_counted(wheel):
    r = mer_wheel(["['happy']"], ["['happy', 'glad', 'neutral']"], lexicon=wheel)
    assert r["m1_p"] == 1.0 and r["m1_r"] == 1.0                   # official: the made-up words vanish
    assert r["oov_dropped_pred"] == 2 and r["oov_rate_pred"] == pytest.approx(2 / 3)
    assert r["level1_f_lc"] == pytest.approx(2 * (1 / 3) / (1 / 3 + 1))   # honest: they count as wrong


def test_rule4_duplicates_collapse(wheel):
    r = mer_wheel(["['happy']"], ["['happy', 'happiness', 'joy', 'joyful']"], lexicon=wheel)
    assert r["m1_p"] == 0.5                      # {happy, joyful}
    assert r["m2_p"] == 1.0 and r["level1_f"] == 1.0
    assert r["mean_pred_labels"] == 4
    assert r["level1_f_lc"] == pytest.approx(2 * 0.25 / 1.25)    # 1 hit out of 4 predicted labels


def test_rule5_empty_gold_skipped_empty_pred_counts(wheel):
    gold = ["['happy', 'angry', 'sad']", "['worried']", "['glad']", "['happy']"]
    pred = ["['happy']", "['worried', 'sad']", "['happy']", "['glad']"]
    r = mer_wheel(gold, pred, lexicon=wheel)
    assert r["n_samples"] == 4 and r["skipped_empty_gold"] == 1 and r["empty_pred"] == 1
    assert r["m1_p"] == pytest.approx(0.5) and r["m1_r"] == pytest.approx(4 / 9)
    assert r["m1_f"] == pytest.approx(8 / 17)


def test_rule6_f_from_averaged_p_and_r(wheel):
    r = mer_wheel(["['happy', 'angry', 'sad']", "['worried']"], ["['happy']", "['worried', 'sad']"], lexicon=wheel)
    assert r["m1_p"] == pytest.approx(0.75) and r["m1_r"] == pytest.approx(2 / 3)
    assert r["m1_f"] == pytest.approx(12 / 17)                  # not the mean of per-sample F ...
    assert r["level1_f_sample"] == pytest.approx((0.5 + 2 / 3) / 2)   # ... which is reported separately


def test_rule6_no_zero_guard(wheel):
    r = mer_wheel(["['happy']"], ["['sad']"], lexicon=wheel)
    assert math.isnan(r["m1_f"]) and math.isnan(r["mer2025"])
    assert r["mer2025_sample"] == 0.0


def test_rule7_level_is_mean_of_wheel_f(wheel):
    r = mer_wheel(["['calm']", "['happy']"], ["['calm']", "['happy', 'sad']"], lexicon=wheel)
    # wheels 1,3,4,5 skip the 'calm' sample (F = 2/3); wheel 2 has P = 0.75, R = 1 (F = 6/7)
    assert r["w1_l1_f"] == pytest.approx(2 / 3) and r["w2_l1_f"] == pytest.approx(6 / 7)
    assert r["level1_f"] == pytest.approx(74 / 105)
    assert r["level1_f"] != pytest.approx(2 * 0.55 / 1.55)      # F of wheel-averaged P and R differs
    assert r["level2_f"] == pytest.approx(74 / 105)
    assert r["mer2025"] == pytest.approx(74 / 105)


def test_sample_wheel_f_reward(wheel):
    assert sample_wheel_f(["happy"], ["joyful"], wheel) == 1.0
    assert sample_wheel_f(["happy"], ["joyful", "joy", "happiness", "happy"], wheel, honest=True) == pytest.approx(0.4)
    assert sample_wheel_f(["happy"], [], wheel) == 0.0
    assert math.isnan(sample_wheel_f(["glad"], ["happy"], wheel))
    assert sample_wheel_f(["calm"], ["calm"], wheel, level="level1") == 1.0   # only wheel 2 counts
    with pytest.raises(ValueError):
        sample_wheel_f(["happy"], ["happy"], wheel, level="level3")


def test_score_entry_point_and_bootstrap(wheel):
    gold = {f"s{i}": g for i, g in enumerate(["['happy']", "['sad', 'angry']", "['worried']", "['calm']"] * 5)}
    pred = {f"s{i}": p for i, p in enumerate(["['joy']", "['sad']", "['happy']", "['calm', 'sad']"] * 5)}
    r = score("mer_wheel", gold, pred, lexicon=wheel, bootstrap=300, seed=3)
    assert r["mer2025_ci_low"] <= r["mer2025"] <= r["mer2025_ci_high"]
    again = bootstrap_ci("mer_wheel", gold, pred, lexicon=wheel, n=300, seed=3)
    assert again["mer2025"] == (r["mer2025_ci_low"], r["mer2025_ci_high"])
    del pred["s0"]
    with pytest.raises(ScoringInputError, match="missing from pred"):
        score("mer_wheel", gold, pred, lexicon=wheel)


def test_unreadable_lexicon_files(tmp_path, wheel_dir):
    import shutil

    d = tmp_path / "w"
    shutil.copytree(wheel_dir, d)
    (d / "wheel3.xlsx").write_bytes(b"not an xlsx")
    with pytest.raises(ScoringInputError, match=r"wheel3\.xlsx.*unreadable xlsx"):
        MerWheel.load(d)
    shutil.copy(wheel_dir / "wheel3.xlsx", d / "wheel3.xlsx")
    pd.DataFrame({"level1": ["Happy"], "level3": ["Joyful"]}).to_excel(d / "wheel4.xlsx", index=False)
    with pytest.raises(ScoringInputError, match=r"wheel4\.xlsx.*missing column.*level2"):
        MerWheel.load(d)
    with pytest.raises(ScoringInputError, match="not found"):
        MerWheel.load(tmp_path / "nowhere")


# -- real OV-MERD data ----------------------------------------------------------------------------------
needs_data = pytest.mark.skipif(not (OVMER / "emotion_wheel" / "format.csv").is_file(),
                                reason=f"real data not found under {OVMER}")


def _reference(gold_csv: Path, pred_csv: Path, root: Path) -> dict[str, float]:
    """A literal, slow transcription of OV_METRIC.md (independent of the package code)."""
    def s2l(s):
        if not isinstance(s, str) or s == "":
            return []
        s = s[1:] if s[0] == "[" else s
        s = s[:-1] if s[-1:] == "]" else s
        return [x.strip() for x in re.split("['\",]", s) if x.strip() not in ("", ",")]

    fmt = pd.read_csv(root / "format.csv")
    rows = {}
    for name, forms in zip(fmt["name"], fmt["format"]):
        for f in s2l(forms) + [name]:
            rows.setdefault(f, []).append(name)
    syn = pd.read_excel(root / "synonym.xlsx")
    heads = {}
    for k in range(1, 9):
        for w, ss in zip(syn[f"word_run{k}"], syn[f"synonym_run{k}"]):
            w = w.strip().lower()
            heads.setdefault(w, set()).add(w)
            for x in s2l(ss):
                heads.setdefault(x.strip().lower(), set()).add(w)

    def wmap(k, level):
        df = pd.read_excel(root / f"wheel{k}.xlsx").ffill()
        out = {}
        tree = {}
        for a, b, c in zip(df.level1, df.level2, df.level3):
            a, b, c = a.lower().strip(), b.lower().strip(), c.lower().strip()
            tree.setdefault(a, {}).setdefault(b, []).append(c)
        for a, kids in tree.items():
            out[a] = a if level == 1 else sorted(kids)[0]
            for b, leaves in kids.items():
                out[b] = a if level == 1 else b
                for c in leaves:
                    out[c] = a if level == 1 else b
        return out

    def m3(x, wm):
        cands = sorted(h for r in rows[x] for h in heads[r])
        return next((wm[c] for c in cands if c in wm), "")

    g = pd.read_csv(gold_csv)
    p = pd.read_csv(pred_csv).set_index("name")["openset"]
    res = {}
    for level in (1, 2):
        fs = []
        for k in range(1, 6):
            wm = wmap(k, level)
            P, R = [], []
            for name, gcell in zip(g["name"], g["openset"]):
                gs = {m3(x, wm) for x in (y.lower().strip() for y in s2l(", ".join(s2l(gcell)))) if x in rows} - {""}
                ps = {m3(x, wm) for x in (y.lower().strip() for y in s2l(p[name])) if x in rows} - {""}
                if not gs:
                    continue
                P.append(len(gs & ps) / len(ps) if ps else 0.0)
                R.append(len(gs & ps) / len(gs) if ps else 0.0)
            fs.append(2 * np.mean(P) * np.mean(R) / (np.mean(P) + np.mean(R)))
        res[f"level{level}_f"] = float(np.mean(fs))
    res["mer2025"] = (res["level1_f"] + res["level2_f"]) / 2
    return res


@needs_data
def test_real_ovmerd_numbers():
    from affectllm.scoring import read_labels

    store = OVMER / "ov_store"
    gold, pred = read_labels(store / "check-openset.csv"), read_labels(store / "predict-openset.csv")
    r = score("mer_wheel", gold, pred, lexicon=OVMER / "emotion_wheel")
    print(f"\nmer_wheel on OV-MERD predict-openset: level1 {r['level1_f']:.6f} level2 {r['level2_f']:.6f} "
          f"MER2025 {r['mer2025']:.6f} | honest: lc {r['mer2025_lc']:.4f} per-sample {r['mer2025_sample']:.4f} "
          f"oov_rate_pred {r['oov_rate_pred']:.4f} mean_pred_labels {r['mean_pred_labels']:.3f}")
    ref = _reference(store / "check-openset.csv", store / "predict-openset.csv", OVMER / "emotion_wheel")
    for key in ("level1_f", "level2_f", "mer2025"):
        assert r[key] == pytest.approx(ref[key], abs=1e-9)
    assert r["level1_f"] == pytest.approx(0.5537059069585599, abs=1e-6)
    assert r["level2_f"] == pytest.approx(0.42448634887957565, abs=1e-6)
    assert r["mer2025"] == pytest.approx(0.48909612791906776, abs=1e-6)
    assert r["m1_f"] == pytest.approx(0.29120388952538445, abs=1e-6)
    assert r["m2_f"] == pytest.approx(0.3280487459318136, abs=1e-6)
    assert (r["n_samples"], r["skipped_empty_gold"], r["oov_dropped_pred"], r["oov_dropped_gold"]) == (332, 1, 63, 146)
    assert r["mer2025_lc"] < r["mer2025"]


@needs_data
def test_real_lexicon_sizes():
    w = MerWheel.load(OVMER / "emotion_wheel")
    assert len(w.table) == 7386 and len(w.heads) == 1255
    lex = w.to_lexicon()
    assert lex.normalise("abandonment") == "abandoned" and lex.is_emotion("happiness")
