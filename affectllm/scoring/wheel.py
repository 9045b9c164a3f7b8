"""The official MER emotion-wheel lexicon (format.csv, synonym.xlsx, wheel1..5.xlsx), read from a folder
the user gives (never bundled: the files carry MER licence terms).

It yields the three mappings of the MER2025/2026 metric (see `wheel_metric` for the scoring rules):

* M1 (word forms): ``format.csv`` rows ``name,format`` map every listed form, and the name itself, to the
  row name; a word listed by several rows maps to the alphabetically first row.
* M2 (synonyms): ``synonym.xlsx`` has 8 runs of (``word_runK``, ``synonym_runK``) columns; each word and each
  of its synonyms maps to the word (a "head"); the runs are merged; M2 = first of the sorted heads of M1.
* M3 (wheel k, level j): the candidates are all heads of all rows that list the word; the first sorted
  candidate that appears in the wheel's map gives its cluster. Wheel sheets are forward-filled (merged
  cells), lower-cased and stripped; level 1 maps every word of a branch to its level-1 word, level 2 maps
  level-2/level-3 words to their level-2 word and a level-1 word to its alphabetically first child.

Everything is precomputed once into `table` (word -> 12 mapped values) so scoring is dictionary look-ups.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ScoringInputError
from .labels import split_mer2025
from .lexicon import Lexicon

WHEELS = ("wheel1", "wheel2", "wheel3", "wheel4", "wheel5")
LEVELS = ("level1", "level2")
# order of the 12 mapped columns in MerWheel.table
MAPPINGS = ("m1", "m2") + tuple(f"w{k}_l{j}" for j in (1, 2) for k in range(1, 6))


def _read_excel(path: Path, required: list[str]):
    import pandas as pd

    if not path.is_file():
        raise ScoringInputError(f"{path}: file not found (emotion-wheel lexicon folder is incomplete)")
    try:
        df = pd.read_excel(path)
    except Exception as exc:  # openpyxl raises many types for corrupt files
        raise ScoringInputError(f"{path}: unreadable xlsx ({type(exc).__name__}: {exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ScoringInputError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df


def _cell_text(path: Path, df, row: int, col: str) -> str:
    value = df[col].iloc[row]
    if not isinstance(value, str):
        raise ScoringInputError(f"{path}: row {row + 2}, column '{col}': expected a word, got {value!r}")
    return value


def read_format(path: Path) -> dict[str, list[str]]:
    """format.csv -> {form: [row names listing it]} (the name itself counts as a form of its row)."""
    import pandas as pd

    if not path.is_file():
        raise ScoringInputError(f"{path}: file not found (emotion-wheel lexicon folder is incomplete)")
    try:
        df = pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScoringInputError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except Exception as exc:
        raise ScoringInputError(f"{path}: unreadable csv ({type(exc).__name__}: {exc})") from None
    for col in ("name", "format"):
        if col not in df.columns:
            raise ScoringInputError(f"{path}: missing column '{col}'; found {list(df.columns)}")
    forms: dict[str, list[str]] = {}
    for i in range(len(df)):
        raw = _cell_text(path, df, i, "name")
        fmt = df["format"].iloc[i]
        for item in split_mer2025(fmt):
            forms.setdefault(item, []).append(raw)
        forms.setdefault(raw, []).append(raw)
    return forms


def read_synonyms(path: Path) -> dict[str, set[str]]:
    """synonym.xlsx -> {word: {heads}} merged over the 8 runs."""
    runs = [c[len("word_"):] for c in _read_excel(path, []).columns if str(c).startswith("word_")]
    cols = [f"word_{r}" for r in runs] + [f"synonym_{r}" for r in runs]
    df = _read_excel(path, cols)
    if not runs:
        raise ScoringInputError(f"{path}: no 'word_runK' columns")
    heads: dict[str, set[str]] = {}
    for run in runs:
        for i in range(len(df)):
            head = _cell_text(path, df, i, f"word_{run}").strip().lower()
            heads.setdefault(head, set()).add(head)
            for syn in split_mer2025(df[f"synonym_{run}"].iloc[i]):
                heads.setdefault(str(syn).strip().lower(), set()).add(head)
    return heads


def read_wheel(path: Path) -> dict[str, dict[str, list[str]]]:
    """wheelK.xlsx -> {level1: {level2: [level3, ...]}} with merged cells forward-filled."""
    import pandas as pd

    df = _read_excel(path, ["level1", "level2", "level3"])
    tree: dict[str, dict[str, list[str]]] = {}
    cur = {"level1": "", "level2": "", "level3": ""}
    for i in range(len(df)):
        for col in cur:
            value = df[col].iloc[i]
            if not pd.isna(value):
                if not isinstance(value, str):
                    raise ScoringInputError(f"{path}: row {i + 2}, column '{col}': expected a word, got {value!r}")
                cur[col] = value
            cur[col] = cur[col].lower().strip()
        tree.setdefault(cur["level1"], {}).setdefault(cur["level2"], []).append(cur["level3"])
    return tree


def wheel_cluster_map(tree: dict[str, dict[str, list[str]]], level: str) -> dict[str, str]:
    """Word -> cluster at level1 or level2 (later assignments win, in sheet order, as in the official code)."""
    out: dict[str, str] = {}
    for l1, children in tree.items():
        out[l1] = l1 if level == "level1" else sorted(children)[0]
        for l2, leaves in children.items():
            out[l2] = l1 if level == "level1" else l2
            for l3 in leaves:
                out[l3] = l1 if level == "level1" else l2
    return out


@dataclass
class MerWheel:
    """The loaded lexicon. `table[word]` gives the 12 mapped values in `MAPPINGS` order ("" = unmapped)."""

    root: Path
    forms: dict[str, list[str]]
    heads: dict[str, set[str]]
    trees: dict[str, dict[str, dict[str, list[str]]]]
    table: dict[str, tuple[str, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        maps = [wheel_cluster_map(self.trees[w], lv) for lv in LEVELS for w in WHEELS]
        table: dict[str, tuple[str, ...]] = {}
        for word, rows in self.forms.items():
            m1 = sorted(rows)[0]
            m2 = sorted(self.heads.get(m1, ()))[0] if self.heads.get(m1) else ""
            cands = sorted(h for r in rows for h in self.heads.get(r, ()))
            m3 = []
            for wm in maps:
                m3.append(next((wm[c] for c in cands if c in wm), ""))
            table[word] = (m1, m2, *m3)
        self.table = table

    @classmethod
    def load(cls, root: str | os.PathLike) -> "MerWheel":
        """Read the folder (cached per path and file modification times)."""
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise ScoringInputError(f"{root}: emotion-wheel folder not found")
        names = ["format.csv", "synonym.xlsx"] + [f"{w}.xlsx" for w in WHEELS]
        stamp = tuple((n, (root / n).stat().st_mtime_ns if (root / n).exists() else None) for n in names)
        return _load_cached(root, stamp)

    def mapping(self, name: str) -> dict[str, str]:
        """word -> mapped value for one of `MAPPINGS` (unmapped words omitted)."""
        i = MAPPINGS.index(name)
        return {w: t[i] for w, t in self.table.items() if t[i]}

    def m1(self, word: str) -> str | None:
        t = self.table.get(word.lower().strip())
        return t[0] if t else None

    def m2(self, word: str) -> str | None:
        t = self.table.get(word.lower().strip())
        return (t[1] or None) if t else None

    def m3(self, word: str, wheel: int = 1, level: int = 1) -> str | None:
        t = self.table.get(word.lower().strip())
        return (t[MAPPINGS.index(f"w{wheel}_l{level}")] or None) if t else None

    def to_lexicon(self):
        """A generic `Lexicon` view: lemma = M1, head = M2, group = wheel-1 level-1 cluster."""
        col = MAPPINGS.index("w1_l1")
        return Lexicon(
            form_to_lemma={w: t[0] for w, t in self.table.items()},
            lemma_to_head={t[0]: t[1] for t in self.table.values() if t[1]},
            form_to_group={w: t[col] for w, t in self.table.items() if t[col]},
            name=f"mer-wheel:{self.root}",
        )


@functools.lru_cache(maxsize=8)
def _load_cached(root: Path, stamp: tuple) -> MerWheel:
    forms = read_format(root / "format.csv")
    heads = read_synonyms(root / "synonym.xlsx")
    trees = {w: read_wheel(root / f"{w}.xlsx") for w in WHEELS}
    return MerWheel(root=root, forms=forms, heads=heads, trees=trees)
