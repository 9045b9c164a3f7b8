"""Emotion lexicons behind one small interface: word -> lemma -> head -> group (-> family).

Two sources:
* the project-owned default (`default_lexicon.json`, shipped in the package): lemmas with their word forms
  and close synonyms (angry/mad/furious -> anger), each lemma in a group, groups under top-level families,
  plus the categorical label sets of common datasets (Ekman, Plutchik, GoEmotions, RAVDESS, CK+, MELD, ISEAR,
  SemEval E-c). Used by the free-text parser and for closed-set label mapping.
* the official MER emotion wheel (`MerWheel.to_lexicon()`), read from the user's folder.

`extract(text)` finds emotion words in free text (longest phrase first, skipping negated ones such as
"not happy") for outputs that ignored the requested format.
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Iterable

DEFAULT_LEXICON_PATH = Path(__file__).with_name("default_lexicon.json")
_TOKEN = re.compile(r"[a-z]+(?:[-'’][a-z]+)*")
_NEGATORS = frozenset(
    "not no never nor without hardly barely isn't isnt aren't wasn't weren't don't doesn't didn't dont doesnt "
    "didnt can't cannot won't wouldn't neither".split()
)


def norm_word(word: str) -> str:
    """Lower-case, collapse inner whitespace, unify the typographic apostrophe."""
    return " ".join(str(word).lower().replace("’", "'").split())


class Lexicon:
    """form -> lemma, lemma -> synonym head, and a group per form (or per lemma).

    >>> lex = Lexicon.default()
    >>> lex.normalise("Furious"), lex.group("annoyed"), lex.family("disdain")
    ('anger', 'anger', 'disgust')
    >>> lex.extract("She is not happy, rather frustrated and a little scared.")
    ['frustrated', 'scared']
    """

    def __init__(self, form_to_lemma: dict[str, str], lemma_to_head: dict[str, str] | None = None,
                 form_to_group: dict[str, str] | None = None, lemma_to_group: dict[str, str] | None = None,
                 group_parent: dict[str, str | None] | None = None, label_sets: dict[str, list[str]] | None = None,
                 no_extract: Iterable[str] = (), name: str = "lexicon"):
        self.name = name
        self._lemma = {norm_word(k): v for k, v in form_to_lemma.items()}
        self._head = dict(lemma_to_head or {})
        self._form_group = {norm_word(k): v for k, v in (form_to_group or {}).items()}
        self._lemma_group = dict(lemma_to_group or {})
        self._parent = dict(group_parent or {})
        self.label_sets = {k: list(v) for k, v in (label_sets or {}).items()}
        skip = {norm_word(w) for w in no_extract}
        self._phrases = {tuple(f.split()): f for f in self._lemma if f not in skip}
        self._max_len = max((len(p) for p in self._phrases), default=1)

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, path: str | Path) -> "Lexicon":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        forms = {f: lem for lem, entry in data["lemmas"].items() for f in [lem, *entry["forms"]]}
        return cls(form_to_lemma=forms, lemma_to_group={lem: e["group"] for lem, e in data["lemmas"].items()},
                   group_parent=data.get("groups", {}), label_sets=data.get("label_sets", {}),
                   no_extract=data.get("no_extract", ()), name=str(path))

    @classmethod
    def default(cls) -> "Lexicon":
        """The shipped project lexicon (loaded once)."""
        return _default()

    # -- look-ups -------------------------------------------------------------------------------------
    @property
    def words(self) -> frozenset[str]:
        return frozenset(self._lemma)

    def normalise(self, word: str) -> str | None:
        """Canonical lemma of a word form, or None if it is not an emotion word here."""
        return self._lemma.get(norm_word(word))

    def is_emotion(self, word: str) -> bool:
        return norm_word(word) in self._lemma

    def head(self, word: str) -> str | None:
        """Synonym-cluster head (the lemma itself when the lexicon has no separate synonym level)."""
        lem = self.normalise(word)
        return None if lem is None else self._head.get(lem, lem)

    def group(self, word: str) -> str | None:
        w = norm_word(word)
        if w in self._form_group:
            return self._form_group[w]
        lem = self._lemma.get(w)
        return None if lem is None else self._lemma_group.get(lem)

    def family(self, word: str) -> str | None:
        """Top-level family of the word's group (the group itself when it has no parent)."""
        g = self.group(word)
        return None if g is None else (self._parent.get(g) or g)

    def synonyms(self, word: str) -> list[str]:
        """All forms sharing the word's synonym head, sorted."""
        h = self.head(word)
        return [] if h is None else sorted(self.clusters().get(h, []))

    @functools.cached_property
    def _clusters(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for form, lem in self._lemma.items():
            out.setdefault(self._head.get(lem, lem), []).append(form)
        return out

    def clusters(self) -> dict[str, list[str]]:
        """head -> forms mapping (the synonym clusters)."""
        return self._clusters

    def extract(self, text: str, lemmas: bool = False) -> list[str]:
        """Emotion words in free text, in order of appearance, without duplicates.

        Longest phrase wins; a word right after a negator ("not", "never", "isn't", ... within two tokens,
        e.g. "not very happy") is skipped. Returns surface forms (or lemmas with `lemmas=True`)."""
        toks = _TOKEN.findall(str(text).lower().replace("’", "'"))
        out: list[str] = []
        seen: set[str] = set()
        i = 0
        while i < len(toks):
            hit = None
            for n in range(min(self._max_len, len(toks) - i), 0, -1):
                phrase = self._phrases.get(tuple(toks[i:i + n]))
                if phrase is not None:
                    hit = (phrase, n)
                    break
            if hit is None:
                i += 1
                continue
            phrase, n = hit
            negated = any(t in _NEGATORS for t in toks[max(0, i - 2):i])
            value = self._lemma[phrase] if lemmas else phrase
            if not negated and value not in seen:
                seen.add(value)
                out.append(value)
            i += n
        return out

    def __repr__(self) -> str:
        return f"Lexicon({self.name!r}, {len(self._lemma)} forms)"


@functools.lru_cache(maxsize=1)
def _default() -> Lexicon:
    lex = Lexicon.from_json(DEFAULT_LEXICON_PATH)
    lex.name = "default"
    return lex
