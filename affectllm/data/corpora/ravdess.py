"""RAVDESS speech (24 actors in the original, actors 1-16 here; 8 acted emotions, 2 intensities; CC BY-NC-SA 4.0).

Files: speech/ravdess/Actor_XX/03-01-EE-II-SS-RR-AA.flac (16 kHz mono) and labels.csv (emotion, intensity,
statement, repetition, actor, gender). Speaker-disjoint splits (RAVDESS has no official one):
  train    = actors 1-10   (5 male, 5 female; 600 files)
  dev      = actors 11-12  (1 male, 1 female; 120 files) -- for model selection, never seen in training
  trainval = actors 1-12   (the final refit after model selection; 720 files)
  test     = actors 13-16  (2 male, 2 female; 240 files)
`text` is the spoken statement (lexically neutral by design); `reference_audio` lists the actor's own neutral
utterances, the baseline for grounded prosody explanations."""
from __future__ import annotations

from pathlib import Path

from ...errors import AffectError
from ..labels import LABEL_SETS, check_label_names
from ..manifest import Sample
from . import CorpusSpec, read_csv, require_columns

SPLIT_ACTORS = {"train": range(1, 11), "dev": range(11, 13), "trainval": range(1, 13), "test": range(13, 17)}


def _read(root: Path, split: str) -> list[Sample]:
    base = root / "speech" / "ravdess"
    path = base / "labels.csv"
    rows = read_csv(path)
    require_columns(rows, ("file", "emotion", "intensity", "statement", "repetition", "actor", "gender"), path)
    check_label_names("ravdess", sorted({r["emotion"] for r in rows}), str(path), ordered=False)
    neutral: dict[int, list[str]] = {}
    for r in rows:
        code = int(Path(r["file"]).stem.split("-")[2])
        if LABEL_SETS["ravdess"][code - 1] != r["emotion"]:
            raise AffectError(f"{path}: {r['file']} has emotion code {code:02d} but label {r['emotion']!r}")
        if r["emotion"] == "neutral":
            neutral.setdefault(int(r["actor"]), []).append(str(base / r["file"]))
    actors = set(SPLIT_ACTORS[split])
    out = []
    for r in rows:
        actor = int(r["actor"])
        if actor not in actors:
            continue
        out.append(Sample(
            id=f"ravdess-{Path(r['file']).stem}", corpus="ravdess", split=split, audio=str(base / r["file"]),
            text=r["statement"], labels=[r["emotion"]], label=r["emotion"], label_set="ravdess",
            speaker=f"ravdess_actor_{actor:02d}", gender=r["gender"], language="en",
            reference_audio=sorted(neutral.get(actor, [])),
            meta={"text_kind": "statement", "intensity": r["intensity"], "statement": r["statement"], "repetition": int(r["repetition"]),
                  "actor": actor, "duration_s": float(r["duration_s"]) if r.get("duration_s") else None,
                  "acted": True}))
    return out


SPEC = CorpusSpec("ravdess", "speech/ravdess", tuple(SPLIT_ACTORS), ("audio", "text"), "ravdess", _read,
                  "CC BY-NC-SA 4.0")
