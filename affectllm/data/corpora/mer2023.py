"""MER2023 audio-visual clips (Mandarin TV/film; MER EULA: academic use only) with OV-MERD open-vocabulary labels
and EMER explanations, for smoke tests, demos and an open-vocabulary sanity check.

Files: av/mer2023/examples/*.mp4 (each with an audio track; one clip also has a .wav), clip_index.csv (English
subtitle), ovmer/ov_store/check-openset.csv (gold open-vocabulary labels: the ground truth; the clips' README
hints disagree with it and are ignored), explanations/emer/dataset-v2/final-EMER-reason.csv (English reasoning
for OV-MERD samples) and dataset-v1/gt-eng.csv (EMER v1 emotion + reasoning).
Splits: "test" = the clips that have OV-MERD labels (6); "all" = every clip (17), labels only where OV-MERD has
them (EMER v1's single emotion is kept in meta, not as a label); "subtitles" = every OV-MERD sample whose English
subtitle is known (EMER v1, or quoted in English in the EMER v2 description: 303 of 332), as text only, so the
official MER2025 score is measured on hundreds of samples rather than on 6 clips (a text-only reading of labels
that annotators gave from video, audio and text: a transfer row, harder than the multimodal one). `audio` is the .wav when present, else the mp4
itself (decode its audio track); `text` is the English subtitle translation (spoken language: zh), taken from the
subtitle quoted in the EMER description when the index has none."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from ...errors import AffectError
from ..manifest import Sample
from . import CorpusSpec, read_csv, require_columns

EMER_V2_MODALITIES = ["video", "audio", "text"]
_QUOTED_SUBTITLE = re.compile(r"subtitle[^\"\u201c]{0,30}[\"\u201c](.+?)[\"\u201d]")


def _openset(root: Path) -> dict[str, list[str]]:
    path = root / "ovmer" / "ov_store" / "check-openset.csv"
    rows = read_csv(path)
    require_columns(rows, ("name", "openset"), path)
    out = {}
    for i, r in enumerate(rows, 2):
        try:
            words = ast.literal_eval(r["openset"])  # a Python list literal; literal_eval never executes code
        except (ValueError, SyntaxError):
            raise AffectError(f"{path}:{i}: openset is not a list literal: {r['openset'][:60]!r}") from None
        out[r["name"]] = [str(w).strip() for w in words if str(w).strip()]
    return out


def _english(text: str) -> bool:
    return bool(text) and sum(c.isascii() for c in text) >= 0.9 * len(text) and re.search("[A-Za-z]{2}", text)


def _subtitles(labels: dict[str, list[str]], v2: dict[str, str], v1: dict[str, dict]) -> list[Sample]:
    out = []
    for name in sorted(labels):
        subtitle, source = (v1[name]["subtitles"].strip(), "EMER v1") if name in v1 else ("", "")
        if not subtitle and name in v2 and (m := _QUOTED_SUBTITLE.search(v2[name])):
            subtitle, source = m.group(1).strip(), "quoted in the EMER v2 description"
        if not labels[name] or not _english(subtitle):
            continue
        out.append(Sample(id=f"mer2023-{name}", corpus="mer2023", split="subtitles", text=subtitle,
                          labels=labels[name], language="zh",
                          meta={"text_kind": "subtitle", "clip": name, "text_language": "en",
                                "subtitle_source": source}))
    return out


def _read(root: Path, split: str) -> list[Sample]:
    base = root / "av" / "mer2023"
    index = {r["name"]: r for r in read_csv(base / "clip_index.csv")}
    labels = _openset(root)
    emer = root / "explanations" / "emer"
    v2 = {r["name"]: r["english"] for r in read_csv(emer / "dataset-v2" / "final-EMER-reason.csv")}
    v1 = {r["names"]: r for r in read_csv(emer / "dataset-v1" / "gt-eng.csv")}
    if split == "subtitles":
        return _subtitles(labels, v2, v1)
    out = []
    for mp4 in sorted((base / "examples").glob("*.mp4")):
        name = mp4.stem
        gold = labels.get(name, [])
        if split == "test" and not gold:
            continue
        wav = mp4.with_suffix(".wav")
        meta: dict = {"text_kind": "subtitle", "clip": name, "text_language": "en", "audio_from_video": not wav.is_file()}
        explanation = None
        if name in v2:
            explanation = v2[name].strip().removeprefix("Input:").strip()
            meta.update(explanation_source="EMER v2", explanation_modalities=EMER_V2_MODALITIES)
        if name in v1:
            meta["emer_v1_emotion"] = v1[name]["emotions"]
            if explanation is None:
                explanation = v1[name]["reasons"].strip()
                meta.update(explanation_source="EMER v1", explanation_modalities=EMER_V2_MODALITIES)
        subtitle = (index.get(name, {}).get("subtitle_en") or (v1[name]["subtitles"] if name in v1 else "")).strip()
        if not subtitle and explanation and (m := _QUOTED_SUBTITLE.search(explanation)):
            subtitle, meta["subtitle_source"] = m.group(1).strip(), "quoted in the EMER description"
        out.append(Sample(id=f"mer2023-{name}", corpus="mer2023", split=split, video=str(mp4),
                          audio=str(wav if wav.is_file() else mp4), text=subtitle or None, labels=gold,
                          explanation=explanation, language="zh", meta=meta))
    return out


SPEC = CorpusSpec("mer2023", "av/mer2023", ("test", "all", "subtitles"), ("video", "audio", "text"), None, _read,
                  "MER EULA: academic use only")
