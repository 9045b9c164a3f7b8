"""CK+ 48x48 grey face crops (3 peak frames per posed sequence, 7 expressions; CK+ agreement: non-commercial,
no redistribution).

Files: face/ckplus48/CK+48/<emotion>/S###_###_########.png and labels.csv (file, emotion, subject, sequence).
CK+ has no official split. Subject-disjoint train/dev/test (about 70/15/15 % of the 79 subjects), made
deterministically: subjects are shuffled with a fixed seed, those holding the rarest expressions first, and each
goes to the split least filled relative to its quota for that subject's expressions, so every split gets every expression
and no subject (hence no sequence) crosses splits. The same seed always gives the same split."""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

from ..labels import check_label_names
from ..manifest import Sample
from . import CorpusSpec, read_csv, require_columns

SEED = 0
FRACTIONS = {"train": 0.70, "dev": 0.15, "test": 0.15}


def subject_split(rows: list[dict], seed: int = SEED) -> dict[str, str]:
    """subject -> split, stratified by expression over whole subjects."""
    per_subject: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        per_subject[r["subject"]][r["emotion"]] += 1
    total = Counter(r["emotion"] for r in rows)
    subjects = sorted(per_subject)
    random.Random(seed).shuffle(subjects)
    subjects.sort(key=lambda s: min(total[e] for e in per_subject[s]))  # stable: rare expressions first
    have = {k: Counter() for k in FRACTIONS}
    assign = {}
    for s in subjects:
        def deficit(k: str) -> float:
            return sum(n * have[k][e] / (total[e] * FRACTIONS[k]) for e, n in per_subject[s].items())  # fill ratio
        k = min(FRACTIONS, key=deficit)
        assign[s] = k
        have[k].update(per_subject[s])
    return assign


def _read(root: Path, split: str) -> list[Sample]:
    base = root / "face" / "ckplus48"
    path = base / "labels.csv"
    rows = read_csv(path)
    require_columns(rows, ("file", "emotion", "subject", "sequence"), path)
    check_label_names("ckplus", sorted({r["emotion"] for r in rows}), str(path), ordered=False)
    assign = subject_split(rows)
    out = []
    for r in rows:
        if assign[r["subject"]] != split:
            continue
        stem = Path(r["file"]).stem
        out.append(Sample(id=f"ckplus-{stem}", corpus="ckplus", split=split, image=str(base / r["file"]),
                          labels=[r["emotion"]], label=r["emotion"], label_set="ckplus", subject=r["subject"],
                          meta={"sequence": r["sequence"], "frame": int(stem.rsplit("_", 1)[1]), "posed": True,
                                "frame_type": "peak", "size": [48, 48]}))
    return out


SPEC = CorpusSpec("ckplus", "face/ckplus48", tuple(FRACTIONS), ("image",), "ckplus", _read,
                  "CK+ agreement: non-commercial, no redistribution")
