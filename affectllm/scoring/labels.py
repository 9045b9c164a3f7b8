"""Turning a label cell into a list of label strings, exactly as each official metric does.

The official scripts read label lists from csv cells with ad-hoc string splitting, not a list parser; the
differences change scores, so each metric gets its own splitter (see OV_METRIC.md):

* `split_mer2024`: text between the first ``[`` and the next ``]``, split on quote characters only, pieces
  kept unstripped (``[happy, sad]`` is ONE label ``"happy, sad"``; ``don't`` splits at the apostrophe).
* `split_mer2025`: one leading ``[`` and one trailing ``]`` removed, split on ``'``, ``"`` and ``,``, pieces
  stripped, empties dropped. ``;``, ``|``, spaces and newlines are not separators.

Both accept an already-split list (returned unchanged, as the official code does) and treat None/NaN/"" as
an empty list.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

_MER2024_SPLIT = re.compile(r"['\"]")
_MER2025_SPLIT = re.compile(r"['\",]")


def is_missing(value: Any) -> bool:
    """None, NaN or the empty string: a cell with no labels at all."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value == ""


def _as_list(value: Any) -> list | None:
    """Lists (and numpy arrays / tuples) pass through; strings return None (to be split)."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None


def split_mer2024(value: Any) -> list[str]:
    """MER2024 `main-ov.py` splitting. Raises ValueError when a non-empty string has no ``[``
    (the official code crashes there).

    >>> split_mer2024("['happy', 'sad']")
    ['happy', 'sad']
    >>> split_mer2024("[happy, sad]")
    ['happy, sad']
    >>> split_mer2024('["don\\'t believe"]')
    ['don', 't believe']
    """
    if is_missing(value):
        return []
    as_list = _as_list(value)
    if as_list is not None:
        return as_list
    text = str(value)
    if "[" not in text:
        raise ValueError("label list has no '['")
    text = text.split("[")[1].split("]")[0]
    return [p for p in _MER2024_SPLIT.split(text) if p.strip() not in ("", ",")]


def split_mer2025(value: Any) -> list[str]:
    """MER2025/2026 `string_to_list` splitting (pieces stripped, case kept).

    >>> split_mer2025("['Happy', ' sad ']")
    ['Happy', 'sad']
    >>> split_mer2025("happy; sad, calm")
    ['happy; sad', 'calm']
    """
    if is_missing(value):
        return []
    as_list = _as_list(value)
    if as_list is not None:
        return as_list
    text = str(value)
    if text[:1] == "[":
        text = text[1:]
    if text[-1:] == "]":
        text = text[:-1]
    return [p.strip() for p in _MER2025_SPLIT.split(text) if p.strip() not in ("", ",")]


def mer2025_gold(value: Any) -> list[str]:
    """Gold lists in MER2025 are split, joined with ", " and split again (this can change labels that
    carry stray brackets, e.g. ``"[a]]"``)."""
    return split_mer2025(", ".join(split_mer2025(value)))


def label_list(value: Any) -> list[str]:
    """A lenient list of label strings for our own (non-official) uses: lists pass through, strings are
    split with the MER2025 rules; each label lower-cased with whitespace collapsed; order kept, no dups."""
    out: list[str] = []
    seen: set[str] = set()
    for item in split_mer2025(value):
        lab = " ".join(str(item).lower().split())
        if lab and lab not in seen:
            seen.add(lab)
            out.append(lab)
    return out


def labels_of(obj: Any) -> Any:
    """Accept a Prediction-like object (with `.labels`) wherever a label cell is expected."""
    labels = getattr(obj, "labels", None)
    return labels if isinstance(labels, (list, tuple)) else obj


def as_label_cells(values: Sequence[Any]) -> list[Any]:
    return [labels_of(v) for v in values]
