"""MELD (Friends TV-series utterances; 7 emotions + 3 sentiments; research use).

Files: text/meld/{train,dev}_sent_emo.csv. Splits: the official train (9,989) / dev (1,109), which MELD draws
by dialogue (no dialogue crosses splits). Speakers are NOT disjoint (the six main characters recur everywhere):
MELD measures generalisation to new dialogues, not new speakers. Text only here (no video in the kit)."""
from __future__ import annotations

from pathlib import Path

from ..labels import check_label_names
from ..manifest import Sample
from . import CorpusSpec, read_csv, require_columns

_COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID", "Season", "Episode",
            "StartTime", "EndTime")


def _read(root: Path, split: str) -> list[Sample]:
    path = root / "text" / "meld" / f"{split}_sent_emo.csv"
    rows = read_csv(path)
    require_columns(rows, _COLUMNS, path)
    check_label_names("meld", sorted({r["Emotion"] for r in rows}), str(path), ordered=False)
    out = []
    for r in rows:
        d, u = r["Dialogue_ID"], r["Utterance_ID"]
        out.append(Sample(id=f"meld-{split}-dia{d}_utt{u}", corpus="meld", split=split, text=r["Utterance"],
                          labels=[r["Emotion"]], label=r["Emotion"], label_set="meld", speaker=r["Speaker"],
                          language="en",
                          meta={"text_kind": "utterance", "sentiment": r["Sentiment"], "dialogue_id": int(d), "utterance_id": int(u),
                                "season": int(r["Season"]), "episode": int(r["Episode"]),
                                "start_time": r["StartTime"], "end_time": r["EndTime"]}))
    return out


SPEC = CorpusSpec("meld", "text/meld", ("train", "dev"), ("text",), "meld", _read, "GPL-3.0 repo; research use")
