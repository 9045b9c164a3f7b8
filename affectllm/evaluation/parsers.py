"""Answer parsers beyond emotion answers (those go through `affectllm.scoring.parse`), and the documented keyword
rules the hallucination suite uses. Every rule is a plain regular expression, tested on positive and negative
examples (tests/test_eval_metrics.py), so a reader can check what was counted.

Parsers (task YAML `parser:`):
* ``emotion``: `scoring.parse` (labels, explanation, confidence, valence/arousal).
* ``letter``: a multiple-choice letter: JSON ``{"answer": "B"}`` / ``{"labels": ["B"]}``, a leading ``B``,
  ``(B)`` or ``B.``, ``answer: B`` / ``answer is B``, a lone capital ``B`` (``A`` and ``I`` only with punctuation after
  them: "A person ...", "I think ..."), else the single choice whose text appears in the answer.
* ``yesno``: the first standalone ``yes`` or ``no`` (also ``true``/``false``); None when neither appears.
* ``text``: the raw text, stripped.

Absent-modality rule (`states_missing`): an answer "states that the modality is missing" when it matches any of
  (1) a negated perception or access verb: "can't / cannot / unable to / not able to / no way to / don't"
      + hear, listen, see, watch, view, access, observe, assess, determine, analyse, tell, judge, know;
  (2) "no" + a media noun: "no audio", "no voice recording", "no video", "no image", "no facial information";
  (3) a media noun followed within the sentence by "not / isn't / wasn't / aren't / weren't"
      + provided, given, available, included, present, shared, attached, supplied;
  (4) "without / lacking / missing / absent" followed within 30 characters by a media noun;
  (5) "only (the) text / transcript / written words", "text only", "text-only", "based solely on the text".
  Media nouns: audio, sound, voice, recording, video, image, picture, photo, visual(s), footage, face, facial.

Modality-word rule (`cited_modalities`): an explanation cites
  audio  when it contains voice, vocal(ly), tone, pitch(ed), intonation, prosody/prosodic, loud(ness), volume,
         audio, acoustic, timbre, hear/heard, speech rate, speaking rate;
  visual when it contains face, facial, expression(s), smile/smiling, frown(ing), eyes, eyebrow(s), brow(s),
         gaze, video, image, picture, visual(ly), footage, posture, gesture(s), body language;
  text   when it contains text(s), transcript, subtitle(s), caption, utterance, written, wording, "the words",
         "the sentence", "the statement" (an image-only answer that quotes "the text" invents an input).
  Whole words, case-insensitive. Sentences that `states_missing` flags are ignored (saying "no audio was given"
  is not a hallucinated cue). Known false positives, accepted for a transparent rule: "tone" of a text and
  "expression" as in "an expression of anger".
"""
from __future__ import annotations

import json
import re
import string
from typing import Any

_MEDIA = r"(?:audio|sound|voice|vocal|recording|video|image|picture|photo|visuals?|footage|face|facial)"
_MISSING_PATTERNS = [
    re.compile(r"\b(?:can ?not|can't|cannot|unable to|not able to|no way to|don't|do not|couldn't|could not)\s+"
               r"(?:actually\s+|directly\s+)?(?:hear|listen|see|watch|view|access|observe|assess|determine|analy[sz]e|"
               r"tell|judge|know)\b", re.I),
    re.compile(r"\bno\s+(?:actual\s+|accompanying\s+)?" + _MEDIA + r"\b", re.I),
    re.compile(r"\b" + _MEDIA + r"s?\b[^.!?\n]{0,60}?\b(?:not|isn't|wasn't|aren't|weren't|never)\b[^.!?\n]{0,20}?"
               r"\b(?:provided|given|available|included|present|shared|attached|supplied)\b", re.I),
    re.compile(r"\b(?:without|lacking|missing|absent)\b[^.!?\n]{0,30}?\b" + _MEDIA + r"\b", re.I),
    re.compile(r"\b(?:only\s+(?:the\s+|a\s+)?(?:text|transcript|written\s+words?)|text[- ]only|"
               r"(?:based\s+)?solely\s+on\s+the\s+(?:text|transcript|words))\b", re.I),
]
MODALITY_WORDS = {
    "audio": r"voice|voices|vocal|vocally|tone|tones|pitch|pitched|intonation|prosody|prosodic|loud|louder|loudness|"
             r"volume|audio|acoustic|timbre|hear|heard|speech rate|speaking rate",
    "visual": r"face|faces|facial|expression|expressions|smile|smiles|smiling|frown|frowns|frowning|eyes|eyebrow|"
              r"eyebrows|brow|brows|gaze|video|image|picture|visual|visually|footage|posture|gesture|gestures|"
              r"body language",
    "text": r"text|texts|transcript|subtitle|subtitles|caption|utterance|written|wording|the words|the sentence|"
            r"the statement",
}
_WORD_RES = {k: re.compile(r"\b(?:" + v + r")\b", re.I) for k, v in MODALITY_WORDS.items()}
_SENTENCES = re.compile(r"[^.!?\n]+[.!?]?")
# A quoted span is the input's own words (or a cut-off quote running to the end): "all I could hear was ..." in a
# MELD line is what the speaker said, not a claim about audio the model was given.
_QUOTED = re.compile(r'"[^"\n]*(?:"|$)|“[^”\n]*(?:”|$)')
VISUAL_INPUTS = ("image", "video")


def states_missing(text: str) -> bool:
    """True when the answer says the asked-about modality was not given (rule in the module docstring).

    >>> states_missing("I can't hear the voice: only the transcript was provided.")
    True
    >>> states_missing("The voice sounds tense and high-pitched.")
    False
    """
    return any(p.search(text or "") for p in _MISSING_PATTERNS)


def cited_modalities(text: str) -> set[str]:
    """{"audio", "visual", "text"} subsets that an explanation cites (rule in the module docstring).

    >>> sorted(cited_modalities("Her voice trembles and her face shows fear."))
    ['audio', 'visual']
    >>> cited_modalities("No audio was provided; the words say she is scared.")
    set()
    >>> cited_modalities('Evidence: "all I could hear was this squeaky sound" reads as fear.')
    set()
    """
    out: set[str] = set()
    for sentence in _SENTENCES.findall(_QUOTED.sub('""', text or "")):
        if states_missing(sentence):
            continue
        out |= {k for k, rx in _WORD_RES.items() if rx.search(sentence)}
    return out


def ungrounded_modalities(explanation: str, given: list[str]) -> set[str]:
    """Cited modality families that were not in the input: audio when no audio (or video with sound) was given,
    visual when neither an image nor a video was given, text when no text or transcript was given."""
    cited = cited_modalities(explanation)
    have = {"audio"} if ("audio" in given or "video" in given) else set()
    if any(m in given for m in VISUAL_INPUTS):
        have.add("visual")
    if "text" in given:
        have.add("text")
    return cited - have


# ---- answer parsers --------------------------------------------------------------------------------------------
_YESNO = re.compile(r"\b(yes|no|true|false)\b", re.I)
_ANSWER_IS = re.compile(r"\b(?i:answer)\s*(?:is|:)?\s*[:\-]?\s*\(?([A-Z])\)?(?![A-Za-z])")
_LEADING = re.compile(r"^\s*[\"'*(\[]*([A-Z])(?:[\])\"'*.:,]|\s*$|\s+[-–:)])", re.I)
_PAREN = re.compile(r"\(([A-Z])\)", re.I)
_LONE = re.compile(r"(?<![A-Za-z'’])([B-HJ-Z])(?![A-Za-z'’])|(?<![A-Za-z'’])([AI])(?=[.):,]|\s*$)")


def letters(n: int) -> list[str]:
    return list(string.ascii_uppercase[:n])


def parse_yesno(text: str) -> str | None:
    """'yes', 'no' or None.

    >>> parse_yesno("No, the speaker does not sound angry."), parse_yesno("maybe"), parse_yesno('{"answer": "Yes"}')
    ('no', None, 'yes')
    """
    m = _YESNO.search(text or "")
    if not m:
        return None
    return "yes" if m.group(1).lower() in ("yes", "true") else "no"


def parse_letter(text: str, choices: list[str] | None = None) -> str | None:
    """The chosen letter (upper case) among the first len(choices) letters, or None.

    >>> parse_letter("B"), parse_letter("(c) Delight"), parse_letter('{"answer": "D"}'), parse_letter("A person feels")
    ('B', 'C', 'D', None)
    >>> parse_letter("She would feel delight.", ["Anger", "Delight"])
    'B'
    """
    text = (text or "").strip()
    valid = letters(len(choices)) if choices else list(string.ascii_uppercase)
    obj = _json_obj(text)
    if isinstance(obj, dict):
        for key in ("answer", "choice", "letter", "labels", "label"):
            v = obj.get(key)
            v = v[0] if isinstance(v, list) and v else v
            if isinstance(v, str) and v.strip().strip("()").upper() in valid:
                return v.strip().strip("()").upper()
    for rx in (_LEADING, _ANSWER_IS, _PAREN):
        m = rx.search(text)
        if m and m.group(1).upper() in valid:
            return m.group(1).upper()
    for m in _LONE.finditer(text):
        letter = m.group(1) or m.group(2)
        if letter in valid:
            return letter
    if choices:
        low = text.lower()
        hits = [i for i, c in enumerate(choices) if c.strip() and c.lower() in low]
        if len(hits) == 1:
            return valid[hits[0]]
    return None


def _json_obj(text: str) -> Any:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return json.loads(text[start : end + 1])
    except ValueError:
        return None
