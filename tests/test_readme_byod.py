"""The README's "Your own data" walkthrough works as written: its label set is written verbatim, stand-in files with
the layout it describes are generated (synthetic tones and faces), and every command of its bash block runs in
order from a fresh folder; the results are the ones the README describes."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from affectllm.cli import main

from byod_helpers import CSV_HEADER, crema_like, faces_like

README = Path(__file__).resolve().parents[1] / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## Your own data\n")
    end = text.index("\n## ", start + 5)
    return text[start:end]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", section(), flags=re.S)


def commands() -> list[list[str]]:
    lines = [ln.strip() for ln in blocks("bash")[0].splitlines()]
    return [shlex.split(ln) for ln in lines if ln and not ln.startswith("#")]


def test_the_walkthrough_lists_what_the_test_runs():
    cmds = commands()
    assert all(c[0] == "affectllm" for c in cmds) and [c[1] for c in cmds] == [
        "data", "data", "data", "train", "chat", "eval", "eval", "predict", "score"]
    assert CSV_HEADER in section() and "AudioWAV/1001_DFA_ANG_XX.wav,ANG,1001,male,Don't forget a jacket." in section()


@pytest.mark.slow      # trains tiny for 2 steps and runs two evals: ~60 s on the shared 2-core box
def test_readme_your_own_data_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    root = Path("my_corpus")
    crema_like(root, with_labels_yaml=False)
    faces_like(root / "faces")
    (root / "labels.yaml").write_text(blocks("yaml")[0], encoding="utf-8")
    assert (root / "clips.csv").read_text().splitlines()[1] == "AudioWAV/1001_DFA_ANG_XX.wav,ANG,1001,male,Don't forget a jacket."
    outputs = []
    for argv in commands():
        rc = main(argv[1:])
        out = capsys.readouterr()
        assert rc == 0, (argv, out.err[-2000:])
        outputs.append(out.out)
    assert "samples:     32 of 32 rows/files" in outputs[0] and "dry run:     nothing written" in outputs[0]
    clips = [json.loads(line) for line in (root / "clips.jsonl").read_text().splitlines()]
    assert len(clips) == 32 and sorted({r["speaker"] for r in clips if r["split"] == "test"}) == ["1003", "1008"]
    assert sum(r["split"] == "train" for r in clips) == 16
    assert (Path("runs/my_sft/final") / "recipe.yaml").is_file()
    assert "labels:" in outputs[4] and "explanation:" in outputs[4]                     # the chat answer
    s = json.loads(Path("runs/eval/my_clips/summary.json").read_text())
    assert {n: t["status"] for n, t in s["tasks"].items()} == {n: "ok" for n in (
        "zs_clips", "calib_clips", "ps_clips", "hall_absent_clips", "hall_pairs_clips", "hall_grounding_clips",
        "fair_clips_gender")}
    assert s["tasks"]["zs_clips"]["n_records"] == 8 and s["tasks"]["calib_clips"]["metrics"]["n_fit"] == 8
    assert s["tasks"]["zs_clips"]["data"]["seen_in_training"] is True
    faces = json.loads(Path("runs/eval/my_faces/summary.json").read_text())
    assert faces["tasks"]["zs_faces"]["data"]["seen_in_training"] is False
    assert faces["tasks"]["zs_faces"]["n_records"] == 12
    assert "**no, unseen**" in Path("runs/eval/my_faces/report.md").read_text()
    assert len(Path("runs/my_faces_preds.jsonl").read_text().splitlines()) == 12
    assert "closed_set" in outputs[-1] and "accuracy" in outputs[-1]
