"""Bad input raises ScoringInputError naming file, row and column; the `affectllm score` CLI function."""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from affectllm.errors import ScoringInputError
from affectllm.scoring import read_labels, read_synonym_zip, score
from affectllm.scoring.cli import main

DATA = Path(os.environ.get("AFFECTLLM_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
OVMER = DATA / "ovmer"


def _csv(tmp_path: Path, text: str, name: str = "f.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_reads_official_csv_and_jsonl(tmp_path):
    p = _csv(tmp_path, 'name,openset\na,"[\'happy\', \'sad\']"\nb,\nc,"[""don\'t care""]"\n')
    assert read_labels(p) == {"a": "['happy', 'sad']", "b": "", "c": '["don\'t care"]'}
    j = tmp_path / "p.jsonl"
    j.write_text("\n".join([json.dumps({"name": "a", "labels": ["happy"]}), "",
                            json.dumps({"id": "b", "openset": "['sad']"}),
                            json.dumps({"id": 7, "labels": "calm, tense"}),
                            json.dumps({"name": "d", "output": '<answer>angry</answer>'})]), encoding="utf-8")
    assert read_labels(j) == {"a": ["happy"], "b": "['sad']", "7": ["calm", "tense"], "d": ["angry"]}


@pytest.mark.parametrize("cell, problem", [
    ("happy, sad", "must look like"),
    ("['happy', 'sad]", "unbalanced quotes"),
    ("[['happy']]", "nested or extra brackets"),
    ("['a', 2]", "items must be strings"),
])
def test_malformed_list_strings(tmp_path, cell, problem):
    p = _csv(tmp_path, f'name,openset\nok,"[\'x\']"\nbad,"{cell}"\n')
    with pytest.raises(ScoringInputError, match=rf"f\.csv: row 3, column 'openset': malformed list string.*{problem}"):
        read_labels(p)


def test_duplicated_and_empty_names(tmp_path):
    p = _csv(tmp_path, "name,openset\na,['x']\nb,['y']\na,['z']\n")
    with pytest.raises(ScoringInputError, match=r"f\.csv: row 4, column 'name': duplicated name 'a' \(first at row 2\)"):
        read_labels(p)
    p = _csv(tmp_path, "name,openset\n ,['x']\n")
    with pytest.raises(ScoringInputError, match=r"row 2, column 'name': empty name"):
        read_labels(p)


def test_missing_columns(tmp_path):
    with pytest.raises(ScoringInputError, match=r"f\.csv: missing column 'openset'"):
        read_labels(_csv(tmp_path, "name,labelz\na,['x']\n"))
    with pytest.raises(ScoringInputError, match=r"f\.csv: missing column 'name'"):
        read_labels(_csv(tmp_path, "id,openset\na,['x']\n"))


def test_non_utf8(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("name,openset\na,['x']\nb,['caf\u00e9']\n".encode("latin-1"))
    with pytest.raises(ScoringInputError, match=r"latin\.csv: not UTF-8 text \(row/line 3"):
        read_labels(p)


def test_names_missing_on_either_side(tmp_path):
    gold = read_labels(_csv(tmp_path, "name,openset\na,['x']\nb,['y']\n", "g.csv"))
    pred = read_labels(_csv(tmp_path, "name,openset\na,['x']\nc,['y']\n", "p.csv"))
    with pytest.raises(ScoringInputError) as err:
        score("mer2024_ov", gold, pred)
    msg = str(err.value)
    assert "1 gold name(s) missing from pred (column 'name'), e.g. ['b']" in msg
    assert "1 name(s) in pred not in gold (column 'name'), e.g. ['c']" in msg


def test_jsonl_errors(tmp_path):
    cases = [
        ('{"name": "a", "labels": ["x"]}\n{not json}\n', r"line 2: invalid JSON"),
        ('{"labels": ["x"]}\n', r"line 1, column 'name': missing"),
        ('{"name": "a", "labels": [1]}\n', r"line 1, column 'labels': expected a list of strings"),
        ('{"name": "a", "labels": ["x"]}\n{"name": "a", "labels": ["y"]}\n', r"line 2, column 'name': duplicated name 'a'"),
        ('{"name": "a"}\n', r"line 1, column 'labels': missing"),
        ('["a"]\n', r"line 1: expected a JSON object"),
        ('{"name": "a", "openset": "[\'x\', \'y]"}\n', r"line 1, column 'openset': malformed list string"),
    ]
    for text, pattern in cases:
        p = tmp_path / "x.jsonl"
        p.write_text(text, encoding="utf-8")
        with pytest.raises(ScoringInputError, match=pattern):
            read_labels(p)


def test_synonym_zip_errors(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"no zip here")
    with pytest.raises(ScoringInputError, match=r"bad\.zip: not a zip file"):
        read_synonym_zip(bad)
    z = tmp_path / "syn.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("openset-synonym/a.npy", b"garbage")
    with pytest.raises(ScoringInputError, match=r"syn\.zip: member 'openset-synonym/a\.npy': unreadable \.npy"):
        read_synonym_zip(z)
    import io

    buf = io.BytesIO()
    np.save(buf, np.array("[['happy', 'joyful']]"))
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("openset-synonym/a.npy", buf.getvalue())
    assert read_synonym_zip(z) == {"a": [["happy", "joyful"]]}
    with pytest.raises(ScoringInputError, match="file not found"):
        read_synonym_zip(tmp_path / "missing.zip")


def test_format_csv_errors(tmp_path):
    from affectllm.scoring import MerWheel

    d = tmp_path / "wheel"
    d.mkdir()
    (d / "format.csv").write_bytes(b"name,format\n\xff\xfe,x\n")
    with pytest.raises(ScoringInputError, match=r"format\.csv: not UTF-8"):
        MerWheel.load(d)


# -- CLI ------------------------------------------------------------------------------------------------
def test_cli_json_and_table(tmp_path, capsys):
    g = _csv(tmp_path, "name,openset\na,['anger']\nb,['joy']\n", "g.csv")
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "a", "labels": ["furious"]}) + "\n" + json.dumps({"id": "b", "labels": ["sad"]}) + "\n")
    assert main(["score", "--gold", str(g), "--pred", str(p), "--metric", "closed_set", "--label-set", "meld",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == 0.5 and out["hit_rate"] == 0.5
    assert main(["--gold", str(g), "--pred", str(p), "--metric", "mer2024_ov", "--bootstrap", "50"]) == 0
    table = capsys.readouterr().out
    assert "accuracy" in table and "95% CI" in table


def test_cli_errors_exit_2(tmp_path, capsys):
    g = _csv(tmp_path, "name,openset\na,['anger']\n", "g.csv")
    bad = _csv(tmp_path, "name,openset\na,anger\n", "p.csv")
    assert main(["--gold", str(g), "--pred", str(bad), "--metric", "mer2024_ov"]) == 2
    err = capsys.readouterr().err
    assert "p.csv: row 2, column 'openset': malformed list string" in err
    assert main(["--gold", str(g), "--pred", str(g), "--metric", "mer_wheel"]) == 2
    assert "needs --lexicon" in capsys.readouterr().err
    assert main(["--gold", str(g), "--pred", str(g), "--metric", "nope"]) == 2
    assert main(["--help"]) == 0
    assert main(["--gold", str(g)]) == 2


@pytest.mark.skipif(not (OVMER / "emotion_wheel").is_dir(), reason="real data not found")
def test_cli_real_data(capsys):
    store = OVMER / "ov_store"
    rc = main(["score", "--gold", str(store / "check-openset.csv"), "--pred", str(store / "predict-openset.csv"),
               "--metric", "mer_wheel", "--lexicon", str(OVMER / "emotion_wheel"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert round(out["mer2025"], 4) == 0.4891 and out["oov_dropped_pred"] == 63
