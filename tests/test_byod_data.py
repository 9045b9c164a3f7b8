"""Bring your own data, the data side: `affectllm data csv|folders|media|check` turn a user's corpus (synthetic tones
and faces made here) into validated manifests with exact counts; label sets as YAML (synonyms, lexicon mapping,
collisions refused) map and score like built-in ones; seeded speaker-disjoint splits; every kind of bad input gets
an error naming its row, or a counted skip."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from affectllm.cli import main
from affectllm.data import read_manifest
from affectllm.errors import ConfigError
from affectllm.scoring import LabelMapper, score
from affectllm.scoring.label_set import build_label_set, load_label_set

from byod_helpers import CSV_HEADER, LABELS_YAML, crema_like, faces_like, write_tone
from conftest import DATA

WHEEL = (DATA / "ovmer" / "emotion_wheel" / "format.csv").is_file()


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "my_corpus"
    crema_like(root)                                   # 8 actors x 4 emotions = 32 clips
    faces_like(root / "faces")                         # 4 moods x 3 faces
    return root


def summary_of(out: Path) -> dict:
    return json.loads(Path(str(out) + ".summary.json").read_text())


def test_csv_to_manifest_with_label_set_and_speaker_disjoint_splits(corpus, capsys):
    out = corpus / "clips.jsonl"
    argv = ["data", "csv", str(corpus / "clips.csv"), "--label-set", str(corpus / "labels.yaml"), "--split-by",
            "speaker", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "samples:     32 of 32 rows/files" in printed and "lexicon:     4/4 labels map into the emotion lexicon" in printed
    rows = read_manifest(out, root=corpus)
    assert len(rows) == 32 and Counter(s.label for s in rows) == {"angry": 8, "happy": 8, "sad": 8, "neutral": 8}
    assert all(s.label_set == "crema" and s.labels == [s.label] and s.corpus == "clips" for s in rows)
    assert all(Path(s.audio).is_absolute() and Path(s.audio).is_file() and s.text == "Don't forget a jacket."
               for s in rows)
    assert Counter(s.gender for s in rows) == {"male": 16, "female": 16}
    # 8 speakers: test ceil(0.2 * 8) = 2, dev ceil(0.25 * 6) = 2, train the other 4 -> rows 16 / 8 / 8
    assert Counter(s.split for s in rows) == {"train": 16, "dev": 8, "test": 8}
    per_speaker = {}
    for s in rows:
        per_speaker.setdefault(s.speaker, set()).add(s.split)
    assert all(len(v) == 1 for v in per_speaker.values())             # no speaker crosses splits
    summ = summary_of(out)
    assert summ["samples"] == 32 and summ["skipped"] == 0 and summ["duplicate_content"] == []
    assert summ["splits"] == {"dev": 8, "test": 8, "train": 16} and summ["speakers"] == 8
    assert summ["coverage"]["lexicon_mapped"] == 4 and summ["coverage"]["unmapped"] == []
    if WHEEL:                                         # the MER wheel has no 'neutral'
        assert summ["coverage"]["wheel_mapped"] == 3 and summ["coverage"]["wheel_unmapped"] == ["neutral"]
    again = corpus / "again.jsonl"
    assert main(argv[:-1] + [str(again)]) == 0                         # seeded: the same split again
    assert [s.split for s in read_manifest(again, root=corpus)] == [s.split for s in rows]


def test_folder_per_label_layout_counts_skips_and_duplicates(corpus, capsys):
    faces = corpus / "faces"
    (faces / "README.txt").write_text("not media")
    shutil.copy(faces / "happy" / "face_00.png", faces / "happy" / "copy.png")
    shutil.copy(faces / "sad" / "face_00.png", faces / "stray.png")
    shutil.copy(faces / "sad" / "face_01.png", faces / "surprised.png")
    (faces / "surprised").mkdir()
    shutil.copy(faces / "sad" / "face_02.png", faces / "surprised" / "x.png")
    (faces / "happy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out = corpus / "faces.jsonl"
    base = ["data", "folders", str(faces), "--label-set", str(corpus / "labels.yaml"), "--out", str(out)]
    assert main(base) == 2                             # default: the first problem is an error naming its file
    assert "happy/broken.png: cannot decode" in capsys.readouterr().err and not out.exists()
    assert main(base + ["--on-error", "skip"]) == 0
    rows = read_manifest(out, root=faces)
    assert len(rows) == 13 and all(s.image and s.modalities() == ["image"] for s in rows)
    assert Counter(s.label for s in rows) == {"angry": 3, "happy": 4, "sad": 3, "neutral": 3}
    summ = summary_of(out)
    assert summ["rows"] == 17 and summ["ignored_files"] == 1
    assert summ["problems_by_kind"] == {"undecodable": 1, "no_label_folder": 2, "unknown_label": 1}
    assert summ["duplicate_content"] == [["happy/copy", "happy/face_00"]]
    assert [p["where"] for p in summ["problems"]] == ["happy/broken.png", "stray.png", "surprised/x.png",
                                                      "surprised.png"]


def test_plain_media_folder_is_an_unlabelled_manifest(corpus):
    out = corpus / "unlabelled.jsonl"
    assert main(["data", "media", str(corpus / "AudioWAV"), "--out", str(out), "--split", "all"]) == 0
    rows = read_manifest(out, root=corpus)
    assert len(rows) == 32 and not any(s.labels for s in rows) and {s.split for s in rows} == {"all"}
    summ = summary_of(out)
    assert summ["labels"] == {} and summ["unlabelled"] == 32 and "coverage" not in summ


def test_dry_run_writes_nothing_and_reports_coverage_of_the_labels_found(corpus, capsys):
    out = corpus / "never.jsonl"
    # no label set: the folder codes themselves are the labels; only 'sad' is a word of the emotion lexicon
    codes = corpus / "codes"
    for code in ("ANG", "HAP", "SAD", "NEU"):
        shutil.copytree(corpus / "faces" / {"ANG": "angry", "HAP": "happy", "SAD": "sad", "NEU": "neutral"}[code],
                        codes / code)
    assert main(["data", "folders", str(codes), "--out", str(out), "--dry-run", "--json"]) == 0
    summ = json.loads(capsys.readouterr().out)
    assert not out.exists() and summ["samples"] == 12
    assert summ["labels"] == {"ang": 3, "hap": 3, "neu": 3, "sad": 3}
    assert summ["coverage"]["lexicon_mapped"] == 1 and summ["coverage"]["unmapped"] == ["ang", "hap", "neu"]


def _csv(root: Path, lines: list[str], name: str = "clips.csv", header: str = CSV_HEADER) -> Path:
    p = root / name
    p.write_text("\n".join([header] + lines) + "\n", encoding="utf-8")
    return p


GOOD = "AudioWAV/1001_DFA_ANG_XX.wav,ANG,1001,male,hi"
BAD_INPUT = {
    "missing column": (["AudioWAV/1001_DFA_ANG_XX.wav,ANG"], "file,label", "missing column 'path'; found ['file', 'label']"),
    "unknown label": ([GOOD, "AudioWAV/1001_DFA_HAP_XX.wav,XYZ,1001,male,hi"], None,
                      "clips.csv: row 3: label 'XYZ' is not in the label set 'crema'"),
    "empty label": (["AudioWAV/1001_DFA_HAP_XX.wav,,1001,male,hi"], None, "clips.csv: row 2: empty label"),
    "missing file": (["AudioWAV/nope.wav,ANG,1001,male,hi"], None, "clips.csv: row 2: media file not found"),
    "undecodable file": (["AudioWAV/bad.wav,ANG,1001,male,hi"], None, "clips.csv: row 2: cannot decode"),
    "duplicate file": ([GOOD, GOOD], None, "clips.csv: row 3: file 'AudioWAV/1001_DFA_ANG_XX.wav' is already listed "
                                           "at clips.csv: row 2"),
    "duplicate id": (["AudioWAV/1001_DFA_ANG_XX.wav,ANG,a", "AudioWAV/1001_DFA_HAP_XX.wav,HAP,a"], "path,label,id",
                     "clips.csv: row 3: id 'a' is already used at clips.csv: row 2"),
    "mixed delimiters": ([GOOD, "AudioWAV/1001_DFA_HAP_XX.wav\tHAP\t1001\tmale\thi"], None,
                         "clips.csv: row 3: 1 field(s) but the header has 5 (found tab: mixed delimiters?)"),
    "tab header in a .csv": ([GOOD.replace(",", "\t")], CSV_HEADER.replace(",", "\t"),
                             "row 1: the header has no comma but contains a tab: wrong or mixed delimiters; "
                             "pass --delimiter tab"),
    "outside the root": (["../outside.wav,ANG,1001,male,hi"], None,
                         "clips.csv: row 2: path '../outside.wav' resolves outside the root"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_gets_an_error_naming_the_row(tmp_path, capsys, case):
    root = tmp_path / "c"
    crema_like(root, speakers=range(1001, 1002))
    (root / "AudioWAV" / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    write_tone(tmp_path / "outside.wav", 300.0)
    lines, header, message = BAD_INPUT[case]
    table = _csv(root, lines, header=header or CSV_HEADER)
    rc = main(["data", "csv", str(table), "--label-set", str(root / "labels.yaml"), "--out", str(root / "m.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and not (root / "m.jsonl").exists(), err


def test_bad_rows_are_counted_skips_with_the_setting_and_outside_root_can_be_allowed(tmp_path):
    root = tmp_path / "c"
    crema_like(root, speakers=range(1001, 1003))
    (root / "AudioWAV" / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    write_tone(tmp_path / "outside.wav", 300.0)
    lines = ["AudioWAV/1001_DFA_ANG_XX.wav,ANG,1001,male,a", "AudioWAV/1001_DFA_HAP_XX.wav,XYZ,1001,male,b",
             "AudioWAV/nope.wav,SAD,1001,male,c", "AudioWAV/bad.wav,SAD,1001,male,d",
             "AudioWAV/1001_DFA_ANG_XX.wav,ANG,1001,male,e", "AudioWAV/1002_DFA_SAD_XX.wav\tSAD\t1002\tfemale\tf",
             "../outside.wav,NEU,1002,female,g", "AudioWAV/1002_DFA_NEU_XX.wav,mad,1002,female,h"]
    raw = ("\ufeff" + "\n".join([CSV_HEADER] + lines) + "\n").encode("utf-8")          # with a BOM
    (root / "clips.csv").write_bytes(raw)
    out = root / "m.jsonl"
    args = ["data", "csv", str(root / "clips.csv"), "--label-set", str(root / "labels.yaml"), "--out", str(out),
            "--on-error", "skip"]
    assert main(args) == 0
    summ = summary_of(out)
    assert summ["rows"] == 8 and summ["samples"] == 2 and summ["skipped"] == 6
    assert summ["problems_by_kind"] == {"unknown_label": 1, "missing_file": 1, "undecodable": 1,
                                        "duplicate_file": 1, "bad_row": 1, "outside_root": 1}
    assert [p["where"] for p in summ["problems"]] == [f"clips.csv: row {n}" for n in (3, 4, 5, 6, 7, 8)]
    assert summ["notes"] == ["UTF-8 byte-order mark (BOM) removed"]
    rows = read_manifest(out, root=root)
    assert [(s.label, s.text) for s in rows] == [("angry", "a"), ("angry", "h")]       # 'mad' is angry's synonym
    assert main(args + ["--allow-outside-root"]) == 0
    assert summary_of(out)["samples"] == 3 and "outside_root" not in summary_of(out)["problems_by_kind"]


def test_not_utf8_and_utf16_tables_are_refused_naming_the_row(tmp_path, capsys):
    root = tmp_path / "c"
    crema_like(root, speakers=range(1001, 1002))
    (root / "clips.csv").write_bytes((CSV_HEADER + "\n" + GOOD + "\n").encode() + b"AudioWAV/x\xff.wav,ANG\n")
    assert main(["data", "csv", str(root / "clips.csv"), "--dry-run"]) == 2
    assert "row 3: not UTF-8 text" in capsys.readouterr().err
    (root / "clips.csv").write_bytes((CSV_HEADER + "\n" + GOOD + "\n").encode("utf-16"))
    assert main(["data", "csv", str(root / "clips.csv"), "--dry-run"]) == 2
    assert "UTF-16 text; save the file as UTF-8" in capsys.readouterr().err


def test_valence_arousal_columns_are_normalised_and_checked(tmp_path, capsys):
    root = tmp_path / "c"
    crema_like(root, speakers=range(1001, 1002))
    table = _csv(root, ["AudioWAV/1001_DFA_ANG_XX.wav,2,5", "AudioWAV/1001_DFA_HAP_XX.wav,4,3"], header="path,valence,arousal")
    out = root / "va.jsonl"
    assert main(["data", "csv", str(table), "--va-scale", "1,5", "--out", str(out)]) == 0
    rows = read_manifest(out, root=root)
    assert [(s.valence, s.arousal, s.vad_native) for s in rows] == [(-0.5, 1.0, {"valence": 2.0, "arousal": 5.0}),
                                                                    (0.5, 0.0, {"valence": 4.0, "arousal": 3.0})]
    _csv(root, ["AudioWAV/1001_DFA_ANG_XX.wav,7,5"], header="path,valence,arousal")
    assert main(["data", "csv", str(table), "--va-scale", "1,5", "--out", str(out)]) == 2
    assert "row 2: column 'valence': '7' is not a number in [1.0, 5.0]" in capsys.readouterr().err


def test_check_counts_missing_media_of_an_existing_manifest(corpus, capsys):
    out = corpus / "clips.jsonl"
    assert main(["data", "csv", str(corpus / "clips.csv"), "--label-set", str(corpus / "labels.yaml"), "--out",
                 str(out)]) == 0
    (corpus / "AudioWAV" / "1001_DFA_ANG_XX.wav").unlink()
    capsys.readouterr()
    with pytest.warns(UserWarning, match="skipped 1 row"):
        assert main(["data", "check", str(out), "--label-set", str(corpus / "labels.yaml"), "--json", "--on-error",
                     "skip"]) == 0
    summ = json.loads(capsys.readouterr().out)
    assert summ["samples"] == 31 and summ["problems_by_kind"] == {"missing_file": 1}
    assert main(["data", "check", str(out)]) == 2
    assert "sample 'AudioWAV/1001_DFA_ANG_XX' media file not found" in capsys.readouterr().err


def test_label_sets_refuse_collisions_and_unknown_lexicon_words(tmp_path):
    with pytest.raises(ConfigError, match=r"label 'glad' \(synonym 'Very-Happy'\) collides with label 'very_happy' "
                                          r"\(name 'very_happy'\) after normalisation to 'very happy'"):
        build_label_set({"labels": ["very_happy", {"name": "glad", "synonyms": ["Very-Happy"]}]}, "x.yaml")
    with pytest.raises(ConfigError, match=r"label 'happy' \(name 'Happy '\) collides with label 'happy' \(name 'happy'\)"):
        build_label_set({"labels": ["happy", "Happy "]}, "x.yaml")
    with pytest.raises(ConfigError, match="lexicon word 'blorp' is not in the emotion lexicon"):
        build_label_set({"labels": [{"name": "pos", "lexicon": "blorp"}]}, "x.yaml")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['synonym'\]"):
        build_label_set({"labels": [{"name": "pos", "synonym": ["x"]}]}, "x.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("labels: [happy, HAPPY]\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_label_set(path)
    assert build_label_set({"labels": [{"name": "sad", "synonyms": ["SAD"]}]}, "x").labels == ["sad"]   # own name


def test_a_yaml_label_set_maps_and_scores_like_a_built_in_one(tmp_path):
    path = tmp_path / "labels.yaml"
    path.write_text(LABELS_YAML)
    m = LabelMapper(str(path))
    assert [m.explain(w) for w in ("furious", "HAP", "glad", "calm", "mad", "banana")] == [
        ("angry", "lemma"), ("happy", "synonym"), ("happy", "lemma"), ("neutral", "family"), ("angry", "synonym"),
        (None, None)]
    r = score("closed_set", ["angry", "happy", "sad", "neutral", "happy"],
              [["furious"], ["HAP"], ["glad"], ["calm"], ["banana"]], label_set=str(path))
    assert (r["accuracy"], r["uar"], r["unmapped_rate"]) == (0.6, 0.625, 0.2)
    assert yaml.safe_load(LABELS_YAML)["name"] == load_label_set(path).name == "crema"
