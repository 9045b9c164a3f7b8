"""Reading gold/prediction label files and the MER2024 synonym zip, with errors that name file, row and
column (`ScoringInputError`). Rows are numbered like a spreadsheet: the csv header is row 1.

Formats:
* official csv: columns ``name`` and ``openset`` (or ``labels``), cells are Python-list strings
  ``"['happy', 'sad']"``; an empty cell is an empty list. Cells are kept as strings so each metric applies
  its own official splitting.
* our JSONL: one object per line with ``name`` or ``id``, and ``labels`` or ``openset`` (list or list
  string); a line with only raw model text (``output``/``completion``/``response``) is run through `parse`.
"""
from __future__ import annotations

import ast
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ScoringInputError

NAME_KEYS = ("name", "id")
LABEL_KEYS = ("labels", "openset")
TEXT_KEYS = ("output", "completion", "response", "text")


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ScoringInputError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ScoringInputError(f"{path}: not UTF-8 text (row/line {line}, byte {exc.start})") from None


def check_list_string(cell: str) -> str | None:
    """Why a csv label cell is malformed, or None if it is usable. A cell must be ``[...]`` with exactly
    one bracket pair; quoted items must form a valid Python list of strings. Unquoted lists such as
    ``[happy, sad]`` are accepted (the official splitters give them meaning)."""
    s = cell.strip()
    if not s:
        return None
    if not (s.startswith("[") and s.endswith("]")):
        return "malformed list string (must look like ['a', 'b'])"
    if s.count("[") != 1 or s.count("]") != 1:
        return "malformed list string (nested or extra brackets)"
    if "'" in s or '"' in s:
        try:
            value = ast.literal_eval(s)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return "malformed list string (unbalanced quotes)"
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "malformed list string (items must be strings)"
    return None


def read_labels(path: str | Path) -> dict[str, Any]:
    """name -> label cell, in file order. `.jsonl`/`.json` files are JSONL, anything else csv."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(path)
    return _read_csv(path)


def _read_csv(path: Path) -> dict[str, Any]:
    import pandas as pd

    text = _read_text(path)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except Exception as exc:
        raise ScoringInputError(f"{path}: unreadable csv ({type(exc).__name__}: {exc})") from None
    if "name" not in df.columns:
        raise ScoringInputError(f"{path}: missing column 'name'; found {list(df.columns)}")
    label_col = next((c for c in LABEL_KEYS[::-1] if c in df.columns), None)
    if label_col is None:
        raise ScoringInputError(f"{path}: missing column 'openset' (or 'labels'); found {list(df.columns)}")
    out: dict[str, Any] = {}
    first_row: dict[str, int] = {}
    for i, (name, cell) in enumerate(zip(df["name"], df[label_col])):
        row = i + 2
        name = name.strip()
        if not name:
            raise ScoringInputError(f"{path}: row {row}, column 'name': empty name")
        if name in out:
            raise ScoringInputError(f"{path}: row {row}, column 'name': duplicated name {name!r} "
                                    f"(first at row {first_row[name]})")
        problem = check_list_string(cell)
        if problem:
            raise ScoringInputError(f"{path}: row {row}, column '{label_col}': {problem}: {cell[:80]!r}")
        out[name] = cell
        first_row[name] = row
    return out


def _read_jsonl(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ScoringInputError(f"{path}: line {lineno}: invalid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ScoringInputError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
        key = next((k for k in NAME_KEYS if k in obj), None)
        if key is None or not isinstance(obj[key], (str, int)) or str(obj[key]).strip() == "":
            raise ScoringInputError(f"{path}: line {lineno}, column 'name': missing or empty 'name'/'id'")
        name = str(obj[key]).strip()
        if name in out:
            raise ScoringInputError(f"{path}: line {lineno}, column '{key}': duplicated name {name!r} "
                                    f"(first at line {first_line[name]})")
        lab_key = next((k for k in LABEL_KEYS if k in obj), None)
        if lab_key is not None:
            value = obj[lab_key]
            if isinstance(value, str):
                problem = check_list_string(value) if value.strip().startswith("[") else None
                if problem:
                    raise ScoringInputError(f"{path}: line {lineno}, column '{lab_key}': {problem}: {value[:80]!r}")
                if not value.strip().startswith("["):
                    value = [v for v in (p.strip() for p in value.split(",")) if v]
            elif value is None:
                value = []
            elif not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ScoringInputError(f"{path}: line {lineno}, column '{lab_key}': expected a list of strings")
        else:
            text_key = next((k for k in TEXT_KEYS if k in obj), None)
            if text_key is None:
                raise ScoringInputError(f"{path}: line {lineno}, column 'labels': missing 'labels'/'openset' "
                                        f"(or raw model text in one of {TEXT_KEYS})")
            from .parser import parse

            value = parse(obj[text_key]).labels
        out[name] = value
        first_line[name] = lineno
    return out


def align(gold: Mapping[str, Any], pred: Mapping[str, Any], gold_src: str = "gold",
          pred_src: str = "pred") -> tuple[list[str], list[Any], list[Any]]:
    """Pair gold and pred by name (gold order). Any name present on one side only is an error."""
    missing = [n for n in gold if n not in pred]
    extra = [n for n in pred if n not in gold]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} gold name(s) missing from {pred_src} (column 'name'), e.g. {missing[:5]}")
        if extra:
            parts.append(f"{len(extra)} name(s) in {pred_src} not in {gold_src} (column 'name'), e.g. {extra[:5]}")
        raise ScoringInputError("; ".join(parts))
    names = list(gold)
    return names, [gold[n] for n in names], [pred[n] for n in names]


def parse_groups(text: str) -> list[list[str]]:
    """The MER2024 stored grouping string ``"[['a', 'b'], ['c']]"`` -> [['a', 'b'], ['c']]: split on square
    brackets, then on quote characters; items are not stripped (as in the official code)."""
    import re

    groups = []
    for chunk in re.split(r"[\[\]]", text):
        if chunk.strip() in ("", ","):
            continue
        groups.append([p for p in re.split(r"['\"]", chunk) if p.strip() not in ("", ",")])
    return groups


def read_synonym_zip(path: str | Path) -> dict[str, list[list[str]]]:
    """openset-synonym.zip -> sample name -> synonym groups (first item of a group is its head), read
    straight from the zip (one ``<name>.npy`` string array per sample)."""
    path = Path(path)
    if not path.is_file():
        raise ScoringInputError(f"{path}: file not found")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ScoringInputError(f"{path}: not a zip file ({exc})") from None
    out: dict[str, list[list[str]]] = {}
    with zf:
        for member in zf.namelist():
            if not member.endswith(".npy"):
                continue
            name = member.rsplit("/", 1)[-1][: -len(".npy")]
            try:
                value = np.load(io.BytesIO(zf.read(member)), allow_pickle=False).tolist()
            except Exception as exc:
                raise ScoringInputError(f"{path}: member {member!r}: unreadable .npy ({exc})") from None
            if isinstance(value, list):
                value = str(value)
            if not isinstance(value, str):
                raise ScoringInputError(f"{path}: member {member!r}: expected a string array, got {type(value).__name__}")
            if name in out:
                raise ScoringInputError(f"{path}: member {member!r}: duplicated sample name {name!r}")
            out[name] = parse_groups(value)
    return out


def prepare(gold: Mapping[str, Any] | Sequence[Any], pred: Mapping[str, Any] | Sequence[Any]
            ) -> tuple[list[str] | None, list[Any], list[Any]]:
    """(names, gold list, pred list) aligned by name, or by position for plain sequences."""
    if isinstance(gold, Mapping) != isinstance(pred, Mapping):
        raise ScoringInputError("gold and pred must both be dicts (name -> labels) or both sequences")
    if isinstance(gold, Mapping):
        return align(gold, pred)
    gold, pred = list(gold), list(pred)
    if len(gold) != len(pred):
        raise ScoringInputError(f"gold has {len(gold)} samples but pred has {len(pred)}")
    return None, gold, pred
