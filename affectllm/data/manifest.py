"""One sample schema for every corpus, stored as JSONL (one JSON object per line).

Why one flat schema: training, evaluation and the CLI read any corpus the same way, and a manifest is a
plain file a person can grep. Conventions:

* media paths (`audio`, `image`, `video`, `reference_audio`) are absolute in memory; on disk they are written
  relative to a `root` (the data root for built-in corpora) so a manifest survives moving the data;
* `labels` is the open-vocabulary answer (most salient first); `label` + `label_set` the closed-set class when
  the corpus has one; `multi_labels` the full gold set of multi-label corpora (GoEmotions, SemEval E-c);
* `valence`/`arousal`/`dominance` are normalised to -1..1 as in `affectllm.schema`:
  ``2 * (native - lo) / (hi - lo) - 1`` with ``(lo, hi) = vad_scale``; the corpus' own numbers stay in
  `vad_native` so nothing is lost (EmoBank: 1..5 SAM ratings, 3 = neutral);
* `reference_audio` lists recordings of the same speaker in a neutral state, the baseline that grounded prosody
  explanations compare against (RAVDESS: the actor's neutral utterances);
* `meta` holds corpus specifics (RAVDESS intensity/statement, MELD dialogue ids, EmoBench question/choices/answer).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

from ..errors import AffectError
from .paths import default_data_root

MEDIA_FIELDS = ("audio", "image", "video")
MODALITIES = ("text", "audio", "image", "video")
_PATH_FIELDS = MEDIA_FIELDS + ("reference_audio",)


@dataclass
class Sample:
    id: str
    corpus: str
    split: str
    audio: str | None = None
    image: str | None = None
    video: str | None = None
    text: str | None = None
    labels: list[str] = field(default_factory=list)
    label: str | None = None
    label_set: str | None = None
    multi_labels: list[str] = field(default_factory=list)
    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None
    vad_native: dict[str, float] | None = None
    vad_scale: list[float] | None = None
    explanation: str | None = None
    speaker: str | None = None
    subject: str | None = None
    gender: str | None = None
    language: str | None = None
    reference_audio: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @property
    def person(self) -> str | None:
        """Speaker or face subject: the unit that disjoint splits are made over."""
        return self.speaker or self.subject

    def modalities(self) -> list[str]:
        """Modalities this sample carries, in MODALITIES order."""
        return [m for m in MODALITIES if getattr(self, m)]

    def media(self) -> dict[str, str]:
        return {m: getattr(self, m) for m in MEDIA_FIELDS if getattr(self, m)}

    def to_dict(self, root: str | Path | None = None) -> dict:
        """JSON-ready dict; empty/None fields are omitted; media paths made relative to `root` when under it."""
        d = asdict(self)
        if root is not None:
            for k in MEDIA_FIELDS:
                if d[k]:
                    d[k] = _relative(d[k], root)
            d["reference_audio"] = [_relative(p, root) for p in d["reference_audio"]]
        return {k: v for k, v in d.items() if v is not None and v != [] and v != {}}

    @classmethod
    def from_dict(cls, d: dict, root: str | Path | None = None) -> "Sample":
        """Validate and build; raises AffectError naming the bad field (the reader adds file and line)."""
        if not isinstance(d, dict):
            raise AffectError(f"expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AffectError(f"unknown field(s) {unknown}; put corpus specifics in 'meta'")
        for k in ("id", "corpus", "split"):
            if not isinstance(d.get(k), str) or not d[k]:
                raise AffectError(f"field '{k}' must be a non-empty string")
        for k in MEDIA_FIELDS + ("text", "label", "label_set", "explanation", "speaker", "subject", "gender",
                                 "language"):
            if d.get(k) is not None and not isinstance(d[k], str):
                raise AffectError(f"field '{k}' must be a string or null")
        for k in ("labels", "multi_labels", "reference_audio"):
            v = d.get(k, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise AffectError(f"field '{k}' must be a list of strings")
        for k in ("valence", "arousal", "dominance"):
            v = d.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise AffectError(f"field '{k}' must be a finite number or null")
            if v is not None and not -1.0 <= v <= 1.0:
                raise AffectError(f"field '{k}' = {v} is outside the normalised range -1..1")
        scale, native = d.get("vad_scale"), d.get("vad_native")
        if scale is not None and (not isinstance(scale, list) or len(scale) != 2
                                  or not all(isinstance(x, (int, float)) for x in scale) or scale[0] >= scale[1]):
            raise AffectError("field 'vad_scale' must be [low, high] with low < high")
        if native is not None and (not isinstance(native, dict)
                                   or not all(isinstance(x, (int, float)) for x in native.values())):
            raise AffectError("field 'vad_native' must map dimension names to numbers")
        if not isinstance(d.get("meta", {}), dict):
            raise AffectError("field 'meta' must be an object")
        s = cls(**d)
        if root is not None:
            for k in MEDIA_FIELDS:
                if getattr(s, k):
                    setattr(s, k, _absolute(getattr(s, k), root))
            s.reference_audio = [_absolute(p, root) for p in s.reference_audio]
        return s


def normalise(value: float, lo: float, hi: float) -> float:
    """Map a native rating on [lo, hi] to -1..1 (the scale of affectllm.schema)."""
    return round(2.0 * (value - lo) / (hi - lo) - 1.0, 6)


class SampleList(list):
    """A list of samples that remembers how many rows were skipped for missing media, and which."""

    def __init__(self, items: Iterable[Sample] = (), skipped_ids: list[str] | None = None):
        super().__init__(items)
        self.skipped_ids = list(skipped_ids or [])

    @property
    def skipped(self) -> int:
        return len(self.skipped_ids)


def write_manifest(path: str | Path, samples: Iterable[Sample], root: str | Path | None = None) -> Path:
    """Write samples as JSONL (atomically); media under `root` are stored relative to it. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_dict(root), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(path: str | Path, root: str | Path | None = None, on_missing: str = "skip") -> SampleList:
    """Read a JSONL manifest. Relative media paths resolve against `root` (default: the data root, where every
    built-in manifest points). A row whose media file is absent is skipped and counted (one warning with the
    count; `result.skipped`, `result.skipped_ids`) or, with on_missing="error", raises AffectError. Malformed
    rows always raise AffectError naming file and line."""
    if on_missing not in ("skip", "error"):
        raise AffectError(f"on_missing must be 'skip' or 'error', got {on_missing!r}")
    path = Path(path)
    if not path.is_file():
        raise AffectError(f"manifest not found: {path}")
    root = Path(root) if root is not None else default_data_root()
    out, skipped = SampleList(), []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                s = Sample.from_dict(json.loads(line), root)
            except json.JSONDecodeError as e:
                raise AffectError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
            except (AffectError, TypeError) as e:
                raise AffectError(f"{path}:{lineno}: {e}") from None
            missing = [p for p in s.media().values() if not os.path.exists(p)]
            if missing:
                if on_missing == "error":
                    raise AffectError(f"{path}:{lineno}: sample '{s.id}' media file not found: {missing[0]}")
                skipped.append(s.id)
                continue
            out.append(s)
    out.skipped_ids = skipped
    if skipped:
        warnings.warn(f"{path}: skipped {len(skipped)} row(s) whose media file is missing "
                      f"(first: {skipped[0]}); pass on_missing='error' to fail instead", stacklevel=2)
    return out


def _relative(p: str, root: str | Path) -> str:
    try:
        return Path(p).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(p)


def _absolute(p: str, root: str | Path) -> str:
    return p if os.path.isabs(p) else str(Path(root) / p)
