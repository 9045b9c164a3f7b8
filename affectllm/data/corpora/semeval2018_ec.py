"""SemEval-2018 Task 1 E-c (English tweets, 11 binary emotions, multi-label; NRC terms: never redistribute).

Files: text/semeval2018_ec/E-c-En-{train,dev}.txt (tab-separated, header `ID Tweet anger ... trust`).
Splits: the official train (6,838) / dev (886). A tweet with no emotion marked means "neutral or no emotion"
in the task definition: its `multi_labels` is empty and its open-vocabulary `labels` is ["neutral"]."""
from __future__ import annotations

from pathlib import Path

from ...errors import AffectError
from ..labels import check_label_names
from ..manifest import Sample
from . import CorpusSpec, read_csv, require_columns


def _read(root: Path, split: str) -> list[Sample]:
    path = root / "text" / "semeval2018_ec" / f"E-c-En-{split}.txt"
    rows = read_csv(path, delimiter="\t")
    require_columns(rows, ("ID", "Tweet"), path)
    names = [c for c in rows[0] if c not in ("ID", "Tweet")]
    check_label_names("semeval2018_ec", names, str(path))
    out = []
    for i, r in enumerate(rows, 2):
        if any(r[n] not in ("0", "1") for n in names):
            raise AffectError(f"{path}:{i}: emotion columns must be 0/1")
        multi = [n for n in names if r[n] == "1"]
        out.append(Sample(id=f"semeval2018_ec-{r['ID']}", corpus="semeval2018_ec", split=split, text=r["Tweet"],
                          labels=multi or ["neutral"], multi_labels=multi,
                          label=multi[0] if len(multi) == 1 else None, label_set="semeval2018_ec", language="en"))
    return out


SPEC = CorpusSpec("semeval2018_ec", "text/semeval2018_ec", ("train", "dev"), ("text",), "semeval2018_ec", _read,
                  "NRC terms: do not redistribute")
