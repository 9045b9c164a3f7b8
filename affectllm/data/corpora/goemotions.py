"""GoEmotions (Reddit comments, 27 emotions + neutral, multi-label; Apache-2.0).

Files: text/goemotions/{train,dev}.tsv (`text<TAB>comma-separated label ids<TAB>comment id`, no header) and
labels.txt (id -> name). Splits: the official train (43,410) and dev (5,426); the official test split is not in
the data kit. `labels`/`multi_labels` hold every gold emotion; `label` is set only for single-label rows."""
from __future__ import annotations

from pathlib import Path

from ...errors import AffectError
from ..labels import check_label_names
from ..manifest import Sample
from . import CorpusSpec


def _read(root: Path, split: str) -> list[Sample]:
    base = root / "text" / "goemotions"
    names = [n.strip() for n in (base / "labels.txt").read_text(encoding="utf-8").splitlines() if n.strip()]
    check_label_names("goemotions", names, str(base / "labels.txt"))
    path = base / f"{split}.tsv"
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise AffectError(f"{path}:{lineno}: expected 3 tab-separated fields, got {len(parts)}")
            text, ids, cid = parts
            try:
                labels = [names[int(i)] for i in ids.split(",")]
            except (ValueError, IndexError):
                raise AffectError(f"{path}:{lineno}: bad label ids {ids!r}") from None
            out.append(Sample(id=f"goemotions-{cid}", corpus="goemotions", split=split, text=text, labels=labels,
                              multi_labels=list(labels), label=labels[0] if len(labels) == 1 else None,
                              label_set="goemotions", language="en"))
    return out


SPEC = CorpusSpec("goemotions", "text/goemotions", ("train", "dev"), ("text",), "goemotions", _read, "Apache-2.0")
