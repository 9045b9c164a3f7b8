"""Corpus adapters, registered by name in a lazy Registry("corpus"): `CORPORA.get("ravdess").load(root, "test")`.
Each adapter module defines SPEC (a CorpusSpec) and reads the corpus in place; nothing is copied."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import AffectError
from ...registry import Registry, unknown_name_message
from ..manifest import Sample
from ..paths import default_data_root


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    subdir: str                       # folder under the data root that must exist
    splits: tuple[str, ...]
    modalities: tuple[str, ...]
    label_set: str | None
    reader: Callable[[Path, str], list[Sample]]
    licence: str = ""

    def available(self, data_root: str | Path | None = None) -> bool:
        return (_root(data_root) / self.subdir).is_dir()

    def load(self, data_root: str | Path | None, split: str) -> list[Sample]:
        """Samples of one split, media paths absolute. Raises AffectError for an unknown split or absent data."""
        if split not in self.splits:
            raise AffectError(unknown_name_message(f"{self.name} split", split, self.splits))
        root = _root(data_root)
        if not self.available(root):
            raise AffectError(f"corpus '{self.name}' not found: {root / self.subdir} is missing "
                              f"(set AFFECTLLM_DATA or pass data_root)")
        return self.reader(root, split)


CORPORA = Registry("corpus")
for _name in ("goemotions", "meld", "emobank", "semeval2018_ec", "emobench", "ravdess", "ckplus", "mer2023"):
    CORPORA.register(_name, f"affectllm.data.corpora.{_name}:SPEC")


def load_corpus(name: str, split: str, data_root: str | Path | None = None) -> list[Sample]:
    return CORPORA.get(name).load(data_root, split)


def _root(data_root: str | Path | None) -> Path:
    return Path(data_root) if data_root is not None else default_data_root()


def read_csv(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a UTF-8 csv/tsv with a header; AffectError if the file is missing."""
    if not path.is_file():
        raise AffectError(f"corpus file not found: {path}")
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def require_columns(rows: list[dict], columns: tuple[str, ...], path: Path) -> None:
    have = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in have]
    if missing:
        raise AffectError(f"{path}: missing column(s) {missing}; found {sorted(have)}")
