"""Data layer: manifest schema, corpus adapters on the real data kit (skipped when ../shared/data is absent),
subject/speaker-disjoint splits, measured speech cues, and grounded training targets."""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from affectllm.data import (CORPORA, LABEL_SETS, Sample, build_manifests, load_corpus, read_manifest,
                            target_answer, write_manifest)
from affectllm.data import cues as cues_mod
from affectllm.data.targets import describe_speech
from affectllm.errors import AffectError, ConfigError
from affectllm.schema import ANSWER_KEYS

DATA = Path(os.environ.get("AFFECTLLM_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def need(subdir: str):
    return pytest.mark.skipif(not (DATA / subdir).is_dir(), reason=f"{DATA / subdir} absent")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Cue cache in a per-session temp folder; adapters read DATA explicitly."""
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def load(name, split):
    return load_corpus(name, split, DATA)


# ---------------------------------------------------------------- adapters on the real data

EXPECTED = {("goemotions", "train"): 43410, ("goemotions", "dev"): 5426, ("meld", "train"): 9989,
            ("meld", "dev"): 1109, ("emobank", "train"): 8062, ("emobank", "dev"): 1000,
            ("semeval2018_ec", "train"): 6838, ("semeval2018_ec", "dev"): 886, ("emobench", "test"): 148,
            ("ravdess", "train"): 600, ("ravdess", "dev"): 120, ("ravdess", "trainval"): 720,
            ("ravdess", "test"): 240, ("mer2023", "test"): 6, ("mer2023", "all"): 17,
            ("mer2023", "subtitles"): 303}


def test_registry_names_and_errors():
    assert CORPORA.names() == sorted(["goemotions", "meld", "emobank", "semeval2018_ec", "emobench", "ravdess",
                                      "ckplus", "mer2023"])
    with pytest.raises(ConfigError, match="did you mean 'ravdess'"):
        CORPORA.get("ravdes")
    with pytest.raises(AffectError, match="split"):
        CORPORA.get("ravdess").load(DATA, "validation")
    with pytest.raises(AffectError, match="not found"):
        CORPORA.get("ravdess").load("/nonexistent/data", "test")


@pytest.mark.parametrize("name,split", sorted(EXPECTED))
def test_adapter_counts(name, split):
    spec = CORPORA.get(name)
    if not spec.available(DATA):
        pytest.skip(f"{spec.subdir} absent")
    samples = load(name, split)
    assert len(samples) == EXPECTED[name, split]
    assert len({s.id for s in samples}) == len(samples)
    assert all(s.corpus == name and s.split == split for s in samples)
    if spec.label_set:
        allowed = set(LABEL_SETS[spec.label_set]) | {"neutral"}
        assert all(s.labels and set(s.labels) <= allowed for s in samples)


@need("text/goemotions")
def test_goemotions_labels():
    names = (DATA / "text/goemotions/labels.txt").read_text().split()
    assert names == LABEL_SETS["goemotions"] and len(names) == 28
    dev = load("goemotions", "dev")
    multi = [s for s in dev if len(s.multi_labels) > 1]
    assert multi and all(s.label is None for s in multi)
    first = dev[0]
    line = (DATA / "text/goemotions/dev.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert first.text == line[0] and first.labels == [names[int(i)] for i in line[1].split(",")]


@need("text/semeval2018_ec")
def test_semeval_header_and_neutral():
    header = (DATA / "text/semeval2018_ec/E-c-En-dev.txt").read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert header[2:] == LABEL_SETS["semeval2018_ec"]
    none = [s for s in load("semeval2018_ec", "train") if not s.multi_labels]
    assert none and all(s.labels == ["neutral"] for s in none)


@need("text/meld")
def test_meld_labels_and_meta():
    dev = load("meld", "dev")
    assert {s.label for s in dev} == set(LABEL_SETS["meld"])
    assert {s.meta["sentiment"] for s in dev} == set(LABEL_SETS["meld_sentiment"])
    assert all(s.speaker for s in dev)


@need("text/emobank")
def test_emobank_scale():
    s = load("emobank", "dev")[0]
    assert s.vad_scale == [1.0, 5.0] and not s.labels
    for k in ("valence", "arousal", "dominance"):
        assert getattr(s, k) == pytest.approx((s.vad_native[k] - 3) / 2)


@need("text/emobench")
def test_emobench_mcq():
    samples = load("emobench", "test")
    assert Counter(s.meta["task"] for s in samples) == {"EU": 78, "EA": 70}
    assert Counter(s.language for s in samples) == {"en": 74, "zh": 74}
    for s in samples:
        assert s.meta["answer"] in s.meta["choices"]
    eu = next(s for s in samples if s.meta["task"] == "EU" and "&" in s.label)
    assert len(eu.labels) == 2


@need("speech/ravdess")
def test_ravdess_files_actors_and_disjoint_splits():
    splits = {sp: load("ravdess", sp) for sp in ("train", "dev", "trainval", "test")}
    everything = splits["trainval"] + splits["test"]
    assert len(everything) == 960 == len(list((DATA / "speech/ravdess").glob("Actor_*/*.flac")))
    assert set(Counter(s.meta["actor"] for s in everything).values()) == {60}
    assert Counter(s.label for s in everything) == {**{e: 128 for e in LABEL_SETS["ravdess"][1:]}, "neutral": 64}
    assert all(s.gender == ("male" if s.meta["actor"] % 2 else "female") for s in everything)
    spk = {sp: {s.speaker for s in v} for sp, v in splits.items()}
    assert spk["train"] & spk["dev"] == set() and spk["train"] & spk["test"] == set()
    assert spk["dev"] & spk["test"] == set() and spk["trainval"] == spk["train"] | spk["dev"]
    assert {s.meta["actor"] for s in splits["test"]} == {13, 14, 15, 16}
    s = splits["test"][0]
    assert len(s.reference_audio) == 4 and all(f"Actor_{s.meta['actor']:02d}" in p for p in s.reference_audio)


@need("face/ckplus48")
def test_ckplus_subject_disjoint_and_complete():
    splits = {sp: load("ckplus", sp) for sp in ("train", "dev", "test")}
    assert sum(len(v) for v in splits.values()) == 648 == len(list((DATA / "face/ckplus48/CK+48").glob("*/*.png")))
    subj = {sp: {s.subject for s in v} for sp, v in splits.items()}
    assert not (subj["train"] & subj["dev"] or subj["train"] & subj["test"] or subj["dev"] & subj["test"])
    for v in splits.values():  # every expression in every split
        assert {s.label for s in v} == set(LABEL_SETS["ckplus"])
    assert [s.id for s in load("ckplus", "test")] == [s.id for s in splits["test"]]  # deterministic
    assert all(Path(s.image).parent.name == s.label for s in splits["dev"])


@need("av/mer2023")
def test_mer2023_ov_labels_and_explanations():
    test = load("mer2023", "test")
    assert len(test) == 6 and all(s.labels and s.explanation and Path(s.video).is_file() for s in test)
    gold = {r.split(",", 1)[0] for r in (DATA / "ovmer/ov_store/check-openset.csv").read_text().splitlines()}
    assert all(s.meta["clip"] in gold for s in test)
    by_id = {s.meta["clip"]: s for s in test}
    assert by_id["sample_00000727"].labels == ["guilt", "sadness"]
    assert by_id["sample_00000000"].audio.endswith(".wav")
    unlabelled = [s for s in load("mer2023", "all") if not s.labels]
    assert len(unlabelled) == 11 and all(s.meta["clip"] not in gold for s in unlabelled)


@need("av/mer2023")
def test_ovmerd_subtitles_are_english_text_only_with_gold_labels():
    subs = load("mer2023", "subtitles")
    assert all(s.text and s.labels and not (s.audio or s.video or s.image) for s in subs)
    assert all(sum(c.isascii() for c in s.text) >= 0.9 * len(s.text) for s in subs)  # Chinese quotes left out
    by_id = {s.meta["clip"]: s for s in subs}
    assert by_id["sample_00000727"].labels == ["guilt", "sadness"]
    assert by_id["sample_00000648"].text == "Don't talk to me about feelings anymore."  # EMER v1 subtitle


# ---------------------------------------------------------------- manifest schema

def _synthetic(tmp_path: Path) -> list[Sample]:
    wav = tmp_path / "media" / "a.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    wav.write_bytes(b"RIFF")
    return [Sample(id="s1", corpus="toy", split="test", audio=str(wav), text="I am so happy", labels=["happy"],
                   label="happy", label_set="toy", speaker="spk1", meta={"intensity": "strong"}),
            Sample(id="s2", corpus="toy", split="test", text="meh", valence=-0.5, arousal=0.25, dominance=0.0,
                   vad_native={"valence": 2.0, "arousal": 3.5, "dominance": 3.0}, vad_scale=[1.0, 5.0])]


def test_manifest_round_trip_relative_paths(tmp_path):
    samples = _synthetic(tmp_path)
    path = write_manifest(tmp_path / "m.jsonl", samples, root=tmp_path)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["audio"] == "media/a.wav" and "video" not in first
    assert read_manifest(path, root=tmp_path) == samples


def test_missing_media_skipped_and_counted_or_raises(tmp_path):
    samples = _synthetic(tmp_path)
    samples.append(Sample(id="gone", corpus="toy", split="test", image=str(tmp_path / "nope.png"), labels=["x"]))
    path = write_manifest(tmp_path / "m.jsonl", samples, root=tmp_path)
    with pytest.warns(UserWarning, match="skipped 1 row"):
        got = read_manifest(path, root=tmp_path)
    assert [s.id for s in got] == ["s1", "s2"] and got.skipped == 1 and got.skipped_ids == ["gone"]
    with pytest.raises(AffectError, match=r"m\.jsonl:3: sample 'gone' media file not found"):
        read_manifest(path, root=tmp_path, on_missing="error")


@pytest.mark.parametrize("bad,msg", [
    ('{"id": "x", "corpus": "c", "split": "t"', "malformed JSON"),
    ('["not", "an", "object"]', "JSON object"),
    ('{"id": "x", "corpus": "c", "split": "t", "labls": ["a"]}', "unknown field"),
    ('{"id": "x", "corpus": "c", "split": "t", "labels": "happy"}', "list of strings"),
    ('{"id": "x", "corpus": "c", "split": "t", "valence": 3.0}', "outside"),
    ('{"corpus": "c", "split": "t"}', "'id'"),
    ('{"id": "x", "corpus": "c", "split": "t", "vad_scale": [5, 1]}', "vad_scale"),
])
def test_malformed_row_names_file_and_line(tmp_path, bad, msg):
    good = json.dumps({"id": "ok", "corpus": "c", "split": "t", "text": "hi"})
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{bad}\n")
    with pytest.raises(AffectError, match=rf"bad\.jsonl:3: .*{msg}"):
        read_manifest(path, root=tmp_path)


@need("speech/ravdess")
def test_build_manifests_and_read_back(tmp_path):
    paths = build_manifests(DATA, tmp_path, corpora=["ravdess", "mer2023"], progress=False)
    summary = json.loads(paths["summary"].read_text())
    assert summary["corpora"]["ravdess"]["splits"]["test"]["samples"] == 240
    assert summary["corpora"]["ravdess"]["splits"]["test"]["speakers"] == 4
    back = read_manifest(paths["ravdess/test"], root=DATA, on_missing="error")
    assert back == load("ravdess", "test")
    assert not Path(json.loads(paths["ravdess/test"].read_text().splitlines()[0])["audio"]).is_absolute()
    with pytest.raises(AffectError, match="not found"):
        build_manifests(tmp_path / "empty", tmp_path / "out", corpora=["ravdess"], progress=False)
    assert build_manifests(tmp_path / "empty", tmp_path / "out2", progress=False).keys() == {"summary"}


# ---------------------------------------------------------------- measured cues

def _tone(hz: float, seconds: float = 2.0, amp: float = 0.3, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _write_wav(path: Path, y: np.ndarray, sr: int = 16000) -> Path:
    import soundfile as sf
    sf.write(path, y, sr)
    return path


def test_tone_pitch_and_cache(tmp_path, monkeypatch):
    wav = _write_wav(tmp_path / "tone.wav", _tone(200.0))
    c = cues_mod.speech_cues(wav)
    assert c["f0_mean_hz"] == pytest.approx(200.0, abs=3.0) and c["f0_std_hz"] < 2.0
    assert c["voiced_ratio"] > 0.9 and c["duration_s"] == pytest.approx(2.0) and c["onset_rate"] == 0.0
    monkeypatch.setattr(cues_mod, "compute_speech_cues", lambda *a, **k: pytest.fail("cache miss"))
    assert cues_mod.speech_cues(wav) == c  # second run: from the JSON cache
    _write_wav(wav, _tone(200.0, seconds=1.0))  # changed file (size/mtime): the key changes
    with pytest.raises(pytest.fail.Exception):
        cues_mod.speech_cues(wav)


def _assert_numbers_grounded(text: str, cue: dict, ref: dict | None):
    allowed = {round(cue["rms_db"], 1), round(cue["onset_rate"], 1), round(cue["active_s"], 1),
               round(100 * cue["voiced_ratio"])}
    if cue["f0_mean_hz"] is not None:
        allowed |= {round(cue["f0_mean_hz"]), round(cue["f0_std_hz"])}
    if ref:
        allowed |= {round(100 * (cue[k] - ref[k]) / ref[k]) for k in ("f0_mean_hz", "f0_std_hz", "onset_rate")
                    if ref.get(k) and cue.get(k) is not None}
        allowed.add(round(cue["rms_db"] - ref["rms_db"], 1))
    found = [float(n) for n in NUMBER.findall(text)]
    assert found, text
    for n in found:
        assert any(abs(n - a) < 1e-9 for a in allowed), f"{n} in {text!r} is not a measured value"
    assert round(cue["rms_db"], 1) in found


def test_describe_speech_synthetic_reference(tmp_path):
    cue = cues_mod.compute_speech_cues(_tone(260.0))
    ref = cues_mod.compute_speech_cues(_tone(200.0, amp=0.1))
    ref["onset_rate"] = 0.0  # no tempo reference: the rate comparison must be left out, not invented
    text = describe_speech(cue, ref, "this speaker's neutral recordings")
    assert re.search(r"pitch is higher \(mean 2[56]\d Hz, \+3\d%\) with a spread of 0 Hz", text), text
    assert "energy is higher" in text and "onset" not in text
    _assert_numbers_grounded(text, cue, ref)


@need("speech/ravdess")
def test_ravdess_target_is_grounded_in_the_towers_own_cues():
    """Speech explanations cite only values measured by the prosody tower the model listens through, and never a
    comparison with recordings the model is not shown."""
    from affectllm.data.targets import tower_speech_cues

    s = next(x for x in load("ravdess", "dev") if x.label == "angry" and x.meta["intensity"] == "strong")
    ans = target_answer(s, ["audio"])
    assert set(ans) <= set(ANSWER_KEYS) and ans["labels"] == ["angry"]
    text = ans["explanation"]
    assert text.startswith("Evidence: audio (prosody).") and "Compared with" not in text and "recordings" not in text
    cue = tower_speech_cues(s.audio)
    allowed = {round(cue["pitch_mean_hz"]), round(cue["pitch_std_hz"]), round(cue["energy_db_mean"], 1),
               round(cue["speaking_rate_hz"], 1), round(100 * cue["voiced_ratio"]), round(cue["active_s"], 1),
               round(cue["pitch_range_semitones"])}
    found = [float(n) for n in NUMBER.findall(text)]
    assert len(found) >= 5, text
    for n in found:
        assert any(abs(n - a) < 1e-9 for a in allowed), f"{n} in {text!r} is not a value the tower measured"
    both = target_answer(s, ["audio", "text"])["explanation"]
    assert "audio (prosody), text (words)" in both and s.text in both


# ---------------------------------------------------------------- text / image / EMER targets

def test_text_target_cites_only_words_in_text(tmp_path):
    s = Sample(id="t", corpus="toy", split="x", text="Thanks, I'm not happy about it but I love you", labels=["love"])
    ans = target_answer(s)
    assert ans["explanation"].startswith("Evidence: text (words).")
    cited = re.findall(r'"(\w+)" \(', ans["explanation"])
    assert cited == ["thanks", "happy", "love"] and 'after "not"' in ans["explanation"]
    with pytest.raises(AffectError, match="no audio"):
        target_answer(s, ["audio"])
    with pytest.raises(AffectError, match="no emotion labels"):
        target_answer(Sample(id="u", corpus="toy", split="x", text="hello"))


@need("text/goemotions")
def test_goemotions_target():
    s = next(x for x in load("goemotions", "dev") if " sad " in f" {x.text.lower()} ")
    ans = target_answer(s, ["text"])
    assert ans["labels"] == s.labels and '"sad" (sadness)' in ans["explanation"]


@need("text/emobank")
def test_emobank_target_has_dimensions():
    s = load("emobank", "dev")[0]
    ans = target_answer(s)
    assert ans["valence"] == pytest.approx(s.valence, abs=1e-3) and -1 <= ans["arousal"] <= 1
    assert f"valence {s.vad_native['valence']:g}" in ans["explanation"] and ans["labels"]


@need("face/ckplus48")
def test_ckplus_target_does_not_repeat_the_label():
    """A face explanation says what the model can see (the modality, a posed face); repeating the dataset's label
    taught the model to copy labels instead of looking."""
    s = load("ckplus", "test")[0]
    ans = target_answer(s, ["image"])
    assert ans["explanation"].startswith("Evidence: image (face).") and s.label not in ans["explanation"]


@need("av/mer2023")
def test_mer2023_uses_emer_only_when_all_its_modalities_are_seen():
    s = load("mer2023", "test")[0]
    full = target_answer(s)
    assert full["labels"] == s.labels and s.explanation in full["explanation"]
    text_only = target_answer(s, ["text"])["explanation"]
    assert s.explanation not in text_only and text_only.startswith("Evidence: text (words).")
