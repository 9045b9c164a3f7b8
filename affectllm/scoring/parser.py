"""Read a model's emotion answer into a `Prediction`, whatever the model actually wrote.

Accepted, in this order of precedence:
1. tagged: ``<think>...</think><answer>...</answer>`` (R1 style); the answer may hold JSON or a comma list;
   the think text becomes the explanation when the answer has none.
2. JSON per `affectllm.schema` (also inside ```json fences, amid chatter, with trailing commas, single quotes,
   Python literals, or ``labels`` given as one comma string); truncated JSON is salvaged for its labels.
3. free text: a ``labels:``/``emotions:`` line, else emotion words found by the lexicon (format_ok False).

`parse` never raises: anything unreadable gives an empty record whose `reason` says why. Out-of-range
confidence/valence/arousal become None with a reason. `format_ok` means "followed the requested format":
a structured answer with at least one label and no invalid field (JSON also needs `explanation`, as the
schema requires); lenient repairs are noted in `reason` but do not clear it.
"""
from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..schema import AROUSAL_RANGE, CONFIDENCE_RANGE, VALENCE_RANGE

MAX_CHARS = 200_000          # longer outputs are cut (model outputs are far shorter; keeps parsing linear)
MAX_LABEL_WORDS = 6          # a "label" longer than this is prose, not an emotion word
MAX_LABEL_CHARS = 60
LABEL_KEYS = ("labels", "emotions", "emotion", "label", "openset", "emotion_labels")
EXPLANATION_KEYS = ("explanation", "reason", "reasoning", "rationale", "explain")
FORMATS = ("json", "tagged", "free", "none")

_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_ANSWER_OPEN = re.compile(r"<\s*answer\s*>", re.I)
_ANSWER_CLOSE = re.compile(r"<\s*/\s*answer\s*>", re.I)
_THINK = re.compile(r"<\s*think\s*>(.*?)(?:<\s*/\s*think\s*>|(?=<\s*answer\s*>)|\Z)", re.I | re.S)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js|python)?[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_LABEL_LINE = re.compile(r"^[ \t>*#-]*(?:final\s+)?(?:labels?|emotions?|answer)[ \t*]*[:：][ \t]*(.+)$", re.I | re.M)
_LIST_SPLIT = re.compile(r"[,;|/\n\uff0c\u3001]|\band\b")
_SPECIAL = re.compile(r"[\"'{}\[\]\\]")
_NUM_PREFIX = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")
_STRIP = " \t\r\n'\"`.,;:!?*_()[]{}<>"


@dataclass
class Prediction:
    """One parsed answer. labels: lower-cased, whitespace-collapsed, ordered, deduplicated."""

    labels: list[str] = field(default_factory=list)
    explanation: str = ""
    confidence: float | None = None
    valence: float | None = None
    arousal: float | None = None
    format_ok: bool = False
    format: str = "none"
    reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def parse(text: Any, lexicon=None) -> Prediction:
    """Parse one model output; never raises.

    >>> p = parse('```json\\n{"labels": ["Happy", "excited",], "explanation": "smiles", "confidence": 0.8}\\n```')
    >>> p.labels, p.format, p.format_ok, p.confidence
    (['happy', 'excited'], 'json', True, 0.8)
    >>> parse("<think>raised voice</think><answer>angry, frustrated</answer>").labels
    ['angry', 'frustrated']
    >>> p = parse("I think the speaker sounds sad and tired.")
    >>> p.labels, p.format, p.format_ok
    (['sad'], 'free', False)
    """
    try:
        return _parse(text, lexicon)
    except Exception as exc:  # pragma: no cover - last-resort guard; every known path is handled below
        return Prediction(reason=f"parser error: {type(exc).__name__}")


# -- entry ------------------------------------------------------------------------------------------------
def _parse(text: Any, lexicon) -> Prediction:
    notes: list[str] = []
    if text is None:
        return Prediction(reason="no output (None)")
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="replace")
        notes.append("decoded bytes as UTF-8")
    elif not isinstance(text, str):
        text = str(text)
        notes.append(f"input was {type(text).__name__}, not str")
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        notes.append(f"input cut to {MAX_CHARS} characters")
    text = _CTRL.sub("", text)
    if not text.strip():
        return Prediction(reason=_join(notes + ["empty output"]))

    if _ANSWER_OPEN.search(text):
        return _parse_tagged(text, notes, lexicon)
    pred = _parse_json_anywhere(text, notes)
    if pred is not None:
        return pred
    return _parse_free(text, notes, lexicon)


def _parse_tagged(text: str, notes: list[str], lexicon) -> Prediction:
    opens = list(_ANSWER_OPEN.finditer(text))
    start = opens[-1].end()                      # the final answer wins when a model repeats the tag
    close = _ANSWER_CLOSE.search(text, start)
    problems: list[str] = []
    if close is None:
        body = text[start:]
        problems.append("unclosed <answer> tag")
    else:
        body = text[start:close.start()]
    think = _THINK.search(text)
    think_text = think.group(1).strip() if think else ""
    found = _find_json(body, [], require_explanation=False) if ("{" in body or "[" in body) else None
    inner_notes: list[str] = []
    if found is not None and found[0].labels:
        pred, kind = found
        if kind == "list":          # a JSON/Python list is a fine answer inside <answer>
            ok = True
        else:                       # an object: its own verdict (schema problems) carries over
            ok = pred.format_ok
            inner_notes = [pred.reason] if pred.reason else []
        if not pred.explanation:
            pred.explanation = think_text
    else:
        labels, dropped = clean_labels(_split_list(_strip_label_prefix(body)))
        if dropped:
            problems.append(dropped)
        pred = Prediction(labels=labels, explanation=think_text)
        ok = True
    if not pred.labels:
        problems.append("empty <answer>")
    pred.format = "tagged"
    pred.format_ok = bool(pred.labels) and ok and not problems
    pred.reason = _join(notes + inner_notes + problems)
    return pred


def _parse_free(text: str, notes: list[str], lexicon) -> Prediction:
    explanation = text.strip()
    m = list(_LABEL_LINE.finditer(text))
    if m:
        labels, dropped = clean_labels(_split_list(m[-1].group(1)))
        if labels:
            return Prediction(labels=labels, explanation=explanation, format="free", format_ok=False,
                              reason=_join(notes + ["no structured answer; labels read from a 'labels:' line"]
                                           + ([dropped] if dropped else [])))
    if lexicon is None:
        from .lexicon import Lexicon

        lexicon = Lexicon.default()
    labels, _ = clean_labels(lexicon.extract(text))
    if labels:
        return Prediction(labels=labels, explanation=explanation, format="free", format_ok=False,
                          reason=_join(notes + ["no structured answer; emotion words extracted from free text"]))
    return Prediction(explanation=explanation, format="none",
                      reason=_join(notes + ["no structured answer and no emotion words found"]))


# -- JSON -------------------------------------------------------------------------------------------------
def _parse_json_anywhere(text: str, notes: list[str], require_explanation: bool = True) -> Prediction | None:
    found = _find_json(text, notes, require_explanation)
    return None if found is None else found[0]


def _find_json(text: str, notes: list[str], require_explanation: bool = True) -> tuple[Prediction, str] | None:
    """First JSON object (fenced block first, then any '{'), else a bare list of strings, else salvaged
    labels of broken JSON; returns (prediction, kind) with kind in object|list|salvage."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] if "```" in text else []
    candidates.append(text)
    bare_list = None
    for chunk in candidates:
        obj, repair = _first_json_value(chunk)
        if isinstance(obj, dict):
            return _from_dict(obj, notes + ([repair] if repair else []), require_explanation), "object"
        if isinstance(obj, list) and bare_list is None:
            bare_list = (obj, repair)
    if bare_list is not None:
        labels, dropped = clean_labels(bare_list[0])
        if labels:
            reason = ["top-level JSON list instead of an object"] + ([bare_list[1]] if bare_list[1] else [])
            return Prediction(labels=labels, format="json", format_ok=False,
                              reason=_join(notes + reason + ([dropped] if dropped else []))), "list"
    salvaged = _salvage(text, notes)
    return None if salvaged is None else (salvaged, "salvage")


def _first_json_value(text: str, max_tries: int = 12) -> tuple[Any, str | None]:
    """First decodable {...} (or [...] if no object) in text; returns (value, repair note)."""
    decoder = json.JSONDecoder()
    found_list = (None, None)
    tries = 0
    first_brace = text.find("{")
    for m in re.finditer(r"[{\[]", text):
        if tries >= max_tries:
            break
        i = m.start()
        # a list counts only when no object starts before it (else it is an object's broken insides)
        if text[i] == "[" and (found_list[0] is not None or 0 <= first_brace < i):
            continue
        tries += 1
        try:
            value, _ = decoder.raw_decode(text, i)
            note = None
        except (ValueError, RecursionError):
            end = _balanced_end(text, i)
            if end is None:
                continue
            value, note = _lenient_loads(text[i:end])
            if value is None:
                continue
        if isinstance(value, dict):
            return value, note
        if isinstance(value, list) and found_list[0] is None and all(isinstance(v, str) for v in value) and value:
            found_list = (value, note)
    return found_list


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket closing text[start], honouring quoted strings; None if unbalanced."""
    depth, quote, escape = 0, None, False
    for m in _SPECIAL.finditer(text, start):
        ch = m.group()
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = None
            continue
        if ch == "\\":
            continue
        if ch in "\"'":
            # an apostrophe inside a bare word (don't) does not open a string
            prev = text[m.start() - 1] if m.start() > 0 else " "
            if ch == "'" and prev.isalnum():
                continue
            quote = ch
        elif ch in "{[":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return m.end()
    return None


def _lenient_loads(chunk: str) -> tuple[Any, str | None]:
    fixed = chunk.replace("\u201c", '"').replace("\u201d", '"')
    fixed = _TRAILING_COMMA.sub(r"\1", fixed)
    try:
        return json.loads(fixed), "lenient JSON (trailing comma or smart quotes)"
    except (ValueError, RecursionError):
        pass
    if len(chunk) <= 50_000:
        for candidate in (fixed, re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", fixed)))):
            try:
                return ast.literal_eval(candidate), "lenient JSON (Python literal / single quotes)"
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
    return None, None


def _salvage(text: str, notes: list[str]) -> Prediction | None:
    """Truncated or broken JSON: pull quoted strings after a labels key."""
    key = re.search(r"[\"']?(?:%s)[\"']?\s*:\s*" % "|".join(LABEL_KEYS), text, re.I)
    if key is None or "{" not in text[: key.start() + 1]:
        return None
    rest = text[key.end():]
    if rest.startswith("["):
        end = rest.find("]")
        body = rest[1:] if end < 0 else rest[1:end]
        items = re.findall(r"\"([^\"\\]*)\"|'([^'\\]*)'", body)
        raw = [a or b for a, b in items]
    else:
        m = re.match(r"[\"']([^\"']*)", rest)
        raw = _split_list(m.group(1)) if m else []
    labels, dropped = clean_labels(raw)
    exp = re.search(r"[\"'](?:%s)[\"']\s*:\s*\"((?:[^\"\\]|\\.)*)" % "|".join(EXPLANATION_KEYS), text, re.I)
    explanation = exp.group(1).replace('\\"', '"') if exp else ""
    return Prediction(labels=labels, explanation=explanation, format="json", format_ok=False,
                      reason=_join(notes + ["truncated or malformed JSON; labels salvaged"]
                                   + ([] if labels else ["no labels recovered"]) + ([dropped] if dropped else [])))


def _from_dict(obj: dict, notes: list[str], require_explanation: bool) -> Prediction:
    lower = {str(k).strip().lower(): v for k, v in obj.items()}
    problems: list[str] = []
    label_key = next((k for k in LABEL_KEYS if k in lower), None)
    if label_key is None:
        labels = []
        problems.append("no 'labels' field")
    else:
        value = lower[label_key]
        if isinstance(value, str):
            raw = _split_list(value)
            if "," in value or ";" in value:
                notes = notes + ["labels given as one string"]
        elif isinstance(value, (list, tuple)):
            raw = list(value)
        else:
            raw = []
            problems.append(f"'labels' is {type(value).__name__}, not a list")
        labels, dropped = clean_labels(raw)
        if dropped:
            problems.append(dropped)
        if not labels and not problems:
            problems.append("empty 'labels'")
    exp_key = next((k for k in EXPLANATION_KEYS if k in lower), None)
    explanation = ""
    if exp_key is not None:
        ev = lower[exp_key]
        explanation = ev.strip() if isinstance(ev, str) else ("" if ev is None else json.dumps(ev, default=str))
    elif require_explanation:
        problems.append("no 'explanation' field")
    pred = Prediction(labels=labels, explanation=explanation, format="json")
    for name, bounds in (("confidence", CONFIDENCE_RANGE), ("valence", VALENCE_RANGE), ("arousal", AROUSAL_RANGE)):
        if name in lower and lower[name] is not None:
            value, problem = _number(lower[name], name, bounds)
            setattr(pred, name, value)
            if problem:
                problems.append(problem)
    pred.format_ok = bool(labels) and not problems
    pred.reason = _join(notes + problems)
    return pred


def _number(value: Any, name: str, bounds: tuple[float, float]) -> tuple[float | None, str | None]:
    if isinstance(value, bool):
        return None, f"{name} is a boolean"
    scale = 1.0
    if isinstance(value, str):
        s = value.strip()
        if s.endswith("%"):
            s, scale = s[:-1], 0.01
        try:
            value = float(s) * scale
        except ValueError:
            return None, f"{name} {value[:40]!r} is not a number"
    if not isinstance(value, (int, float)):
        return None, f"{name} is {type(value).__name__}, not a number"
    value = float(value)
    if not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        return None, f"{name} {value:g} out of range [{bounds[0]:g}, {bounds[1]:g}]"
    return value, None


# -- labels -----------------------------------------------------------------------------------------------
def _strip_label_prefix(text: str) -> str:
    m = _LABEL_LINE.search(text)
    return m.group(1) if m else text


def _split_list(text: str) -> list[str]:
    return _LIST_SPLIT.split(str(text))


def clean_labels(raw: list[Any]) -> tuple[list[str], str | None]:
    """Normalise label items (lower case, collapsed whitespace, stripped punctuation, no numbering);
    drop empties, non-strings and prose-length items; keep first-seen order without duplicates."""
    out: list[str] = []
    seen: set[str] = set()
    dropped = 0
    for item in raw:
        if not isinstance(item, str):
            dropped += 1
            continue
        lab = _NUM_PREFIX.sub("", " ".join(item.lower().split())).strip(_STRIP)
        lab = " ".join(lab.split())
        if not lab:
            continue
        if len(lab) > MAX_LABEL_CHARS or len(lab.split()) > MAX_LABEL_WORDS:
            dropped += 1
            continue
        if lab not in seen:
            seen.add(lab)
            out.append(lab)
    return out, (f"dropped {dropped} label item(s) that are not short strings" if dropped else None)


def _join(parts: list[str | None]) -> str | None:
    parts = [p for p in parts if p]
    return "; ".join(dict.fromkeys(parts)) if parts else None
