"""Label sets as data: a user's closed label space declared in YAML, which closed-set mapping and scoring use
exactly like a built-in one (`LabelMapper` accepts a `LabelSet` or the path of its YAML)::

    name: my_clips                          # optional; default: the file stem
    labels:
      - angry                               # a bare name
      - {name: happy, synonyms: [glad, joyful], lexicon: joy}
      - {name: calm, lexicon: neutral}       # where the label sits in the emotion lexicon (and so in its families)

Why a mapping: an open-vocabulary answer ("furious") reaches a user's label ("angry") through the lexicon; a label
that is not itself a lexicon word ("pos", "hi-arousal") needs to be told where it sits, or it is reached only by
exact name or synonym. Names and synonyms are compared after `norm_label` (lower case, ``_``/``-`` as spaces,
whitespace collapsed); two entries that collide after it are refused, naming both, because a collision would make
mapping ambiguous. Label names are stored lower-cased (the form manifests and reports use)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from .lexicon import Lexicon, norm_word

ENTRY_KEYS = {"name", "synonyms", "lexicon", "description"}
TOP_KEYS = {"name", "labels", "description"}
_SEP = re.compile(r"[_\-]+")


def norm_label(word: Any) -> str:
    """The form labels are compared in: lower case, ``_``/``-`` read as spaces, whitespace collapsed."""
    return " ".join(_SEP.sub(" ", norm_word(str(word))).split())


def is_label_set_path(spec: Any) -> bool:
    return isinstance(spec, (str, Path)) and str(spec).lower().endswith((".yaml", ".yml"))


@dataclass
class LabelSet:
    name: str
    labels: list[str]                                     # canonical names, lower-cased, in file order
    synonyms: dict[str, str] = field(default_factory=dict)  # norm_label(word) -> label (names included)
    lexicon: dict[str, str] = field(default_factory=dict)   # label -> lexicon word (declared mappings only)
    path: str | None = None

    def resolve(self, word: Any) -> str | None:
        """The label a name or synonym stands for, or None."""
        return self.synonyms.get(norm_label(word))

    def lexicon_word(self, label: str, lexicon: Lexicon | None = None) -> str | None:
        """Where a label sits in the lexicon: its declared mapping, else itself, else its first synonym that is a
        lexicon word; None when none of these is."""
        lx = lexicon or Lexicon.default()
        if label in self.lexicon:
            return self.lexicon[label]
        words = [label] + [w for w, lab in self.synonyms.items() if lab == label and w != norm_label(label)]
        return next((w for w in words if lx.normalise(w)), None)

    def coverage(self, lexicon: Lexicon | None = None, wheel=None) -> dict:
        """How many labels map into the lexicon (and the MER emotion wheel, when given), and which do not."""
        lx = lexicon or Lexicon.default()
        mapped = {}
        for lab in self.labels:
            w = self.lexicon_word(lab, lx)
            if w:
                mapped[lab] = {"word": w, "lemma": lx.normalise(w), "family": lx.family(w)}
        out = {"labels": len(self.labels), "lexicon_mapped": len(mapped), "mapped": mapped,
               "unmapped": [lab for lab in self.labels if lab not in mapped]}
        if wheel is not None:
            def in_wheel(lab: str) -> bool:
                words = {lab, *(w for w, t in self.synonyms.items() if t == lab)}
                words |= {mapped[lab]["word"]} if lab in mapped else set()
                return any(any(wheel.table.get(w, [None] * 12)[2:7]) for w in words)

            hits = [lab for lab in self.labels if in_wheel(lab)]
            out.update(wheel_mapped=len(hits), wheel_unmapped=[lab for lab in self.labels if lab not in hits])
        return out

    def to_dict(self) -> dict:
        """The YAML form (what `load_label_set` reads back)."""
        entries = []
        for lab in self.labels:
            syn = [w for w, t in self.synonyms.items() if t == lab and w != norm_label(lab)]
            e: dict = {"name": lab}
            if syn:
                e["synonyms"] = syn
            if lab in self.lexicon:
                e["lexicon"] = self.lexicon[lab]
            entries.append(e if len(e) > 1 else lab)
        return {"name": self.name, "labels": entries}


def build_label_set(data: Any, where: str, default_name: str = "labels") -> LabelSet:
    """Validate the YAML mapping of a label set (every problem names `where` and the entry)."""
    if isinstance(data, list):
        data = {"labels": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a label set is a mapping with 'labels' (a list), got {type(data).__name__}")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {', '.join(sorted(TOP_KEYS))}")
    entries = data.get("labels")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: 'labels' must be a non-empty list of names or {{name, synonyms, lexicon}}")
    ls = LabelSet(name=str(data.get("name") or default_name), labels=[])
    owner: dict[str, str] = {}                           # normalised word -> "label 'x' (name|synonym 'y')"
    lx = Lexicon.default()
    for i, e in enumerate(entries):
        e = {"name": e} if isinstance(e, str) else e
        at = f"{where}: labels[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{at}: expected a name or a mapping, got {type(e).__name__}")
        bad = sorted(set(e) - ENTRY_KEYS)
        if bad:
            raise ConfigError(f"{at}: unknown key(s) {bad}; known: {', '.join(sorted(ENTRY_KEYS))}")
        if not isinstance(e.get("name"), str) or not norm_label(e["name"]):
            raise ConfigError(f"{at}: 'name' must be a non-empty string")
        name = norm_word(e["name"])
        syns = e.get("synonyms") or []
        if not isinstance(syns, list) or not all(isinstance(s, str) and norm_label(s) for s in syns):
            raise ConfigError(f"{at} ('{name}'): 'synonyms' must be a list of non-empty strings")
        for word, role in [(e["name"], "name")] + [(s, "synonym") for s in syns]:
            key = norm_label(word)
            this = f"label '{name}' ({role} '{word}')"
            if ls.synonyms.get(key) == name and role == "synonym":
                continue                                 # a synonym spelling its own label's name: harmless
            if key in owner:
                raise ConfigError(f"{where}: {this} collides with {owner[key]} after normalisation to '{key}'; "
                                  f"every name and synonym must stay distinct")
            owner[key] = this
            ls.synonyms[key] = name
        ls.labels.append(name)
        target = e.get("lexicon")
        if target is not None:
            if not isinstance(target, str) or lx.normalise(target) is None:
                raise ConfigError(f"{at} ('{name}'): lexicon word {target!r} is not in the emotion lexicon "
                                  f"(affectllm/scoring/default_lexicon.json); use one of its words, e.g. anger, joy, "
                                  f"sadness, fear, surprise, disgust, neutral")
            ls.lexicon[name] = norm_word(target)
    return ls


@functools.lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> LabelSet:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start})") from None
    ls = build_label_set(data, str(p), default_name=p.stem)
    ls.path = path
    return ls


def load_label_set(spec: Any) -> LabelSet:
    """A LabelSet from a LabelSet, a YAML path, a built-in label-set name (meld, ravdess, ...) or a list of names."""
    if isinstance(spec, LabelSet):
        return spec
    if is_label_set_path(spec):
        p = Path(spec).expanduser().resolve()
        if not p.is_file():
            raise ConfigError(f"label set not found: {p}")
        return _load_cached(str(p), p.stat().st_mtime_ns)
    if isinstance(spec, str):
        sets = Lexicon.default().label_sets
        if spec not in sets:
            from ..registry import unknown_name_message

            raise ConfigError(unknown_name_message("label set", spec, sets) + " (or give the path of a YAML file)")
        return build_label_set({"name": spec, "labels": list(sets[spec])}, f"label set '{spec}'")
    if isinstance(spec, Sequence):
        return build_label_set({"labels": list(spec)}, "label list")
    raise ConfigError(f"a label set is a name, a YAML path or a list of labels, got {type(spec).__name__}")


def write_label_set(ls: LabelSet, path: str | Path) -> Path:
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(ls.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
