"""EmoBank (sentences rated for valence/arousal/dominance on a 1..5 SAM scale; CC-BY-SA 4.0).

File: text/emobank/emobank.csv (`id,split,V,A,D,text`). Splits: the corpus' own `split` column, train (8,062)
and dev (1,000); its test rows are not in the kit. Native ratings go to `vad_native` with `vad_scale` [1, 5];
`valence`/`arousal`/`dominance` are (x - 3) / 2, i.e. -1..1 with 0 = the scale midpoint. No categorical labels."""
from __future__ import annotations

from pathlib import Path

from ..manifest import Sample, normalise
from . import CorpusSpec, read_csv, require_columns

SCALE = (1.0, 5.0)


def _read(root: Path, split: str) -> list[Sample]:
    path = root / "text" / "emobank" / "emobank.csv"
    rows = read_csv(path)
    require_columns(rows, ("id", "split", "V", "A", "D", "text"), path)
    out = []
    for r in rows:
        if r["split"] != split:
            continue
        v, a, d = float(r["V"]), float(r["A"]), float(r["D"])
        out.append(Sample(id=f"emobank-{r['id']}", corpus="emobank", split=split, text=r["text"],
                          valence=normalise(v, *SCALE), arousal=normalise(a, *SCALE), dominance=normalise(d, *SCALE),
                          vad_native={"valence": v, "arousal": a, "dominance": d}, vad_scale=list(SCALE),
                          language="en"))
    return out


SPEC = CorpusSpec("emobank", "text/emobank", ("train", "dev"), ("text",), None, _read, "CC-BY-SA 4.0")
