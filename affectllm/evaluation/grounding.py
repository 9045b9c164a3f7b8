"""Grounding beyond modality words (issue 12).

Absent-modality answers are classified, in this order, as
  ``refusal``   the model declines emotion recognition as such ("I can't identify emotions", "as an AI ...");
  ``missing``   it says the asked-about modality is not there (`parsers.states_missing`, but a negated
                knowledge verb ("can't tell / determine / know") counts only with a media noun in its sentence);
  ``dont_know`` it says it does not know / cannot tell, without saying why: not credited as acknowledging;
  ``other``     anything else (usually a description of the absent modality).

Value-level grounding checks every number or direction an explanation states about the speech it was given
against cues measured on that clip by the prosody tower the model listens through
(`ProsodyAudioEncoder.summary_cues`, via `data.targets.tower_speech_cues`):
  pitch "N Hz"                        vs pitch_mean_hz       within max(15%, 20 Hz)
  energy/loudness "N dB(FS)"          vs energy_db_mean      within 3 dB
  "N syllables|syllable peaks per second" vs speaking_rate_hz within max(25%, 1.0 /s)
  "N% ... voiced"                      vs voiced_ratio        within 10 points
  high/low pitch, loud/quiet, fast/slow (and -er forms) vs the task's median clip: the direction must match.
A claim is verifiable when its cue was measured (and, for directions, a reference exists); reported: claims per
explanation, share verifiable, and of those the share wrong.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .parsers import _MEDIA, _MISSING_PATTERNS

_REFUSAL = re.compile(
    r"\b(?:can ?not|can't|cannot|unable to|not able to|won't|will not)\s+(?:reliably\s+)?(?:identify|recogni[sz]e|"
    r"detect|infer|read|guess|determine|classify)\s+(?:\w+\s+){0,3}?(?:emotions?|feelings?|emotional states?)\b|"
    r"\bas an ai\b|\bi(?:'m| am) (?:just )?an? (?:ai|language model)\b", re.I)
_DONT_KNOW = re.compile(r"\b(?:don't|do not|cannot|can't)\s+(?:really\s+)?(?:know|tell|say|determine|judge|assess)\b|"
                        r"\bnot sure\b|\bunsure\b|\bhard to (?:say|tell)\b|\bno idea\b|\bunclear\b", re.I)
_MEDIA_RE = re.compile(r"\b" + _MEDIA + r"s?\b", re.I)
_SENT = re.compile(r"[^.!?\n]+[.!?]?")
_KNOW_VERB = re.compile(r"\b(?:tell|judge|know|determine|assess|analy[sz]e)\b", re.I)


def classify_absent(text: str) -> str:
    """refusal | missing | dont_know | other (rules in the module docstring)."""
    if _REFUSAL.search(text):
        return "refusal"
    for sent in _SENT.findall(text):
        for i, pat in enumerate(_MISSING_PATTERNS):
            hit = pat.search(sent)
            if not hit:
                continue
            if i == 0 and _KNOW_VERB.search(hit.group(0)) and not _MEDIA_RE.search(sent):
                continue                     # "I can't tell" alone is not "there is no audio"
            return "missing"
    return "dont_know" if _DONT_KNOW.search(text) else "other"


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


# ---- value-level claims about speech ------------------------------------------------------------------------------
NUM = r"(-?\d+(?:\.\d+)?)"
_VALUE_RULES = [
    ("pitch_mean_hz", re.compile(r"\b(?:pitch|f0|fundamental)\b[^.;\n]{0,40}?" + NUM + r"\s*hz\b", re.I)),
    ("energy_db_mean", re.compile(r"\b(?:energy|loudness|level|volume|intensity)\b[^.;\n]{0,40}?" + NUM +
                                  r"\s*db(?:fs)?\b", re.I)),
    ("speaking_rate_hz", re.compile(NUM + r"\s*(?:syllables?|syllable peaks?|peaks?)\s*(?:per second|/\s*s)\b", re.I)),
    ("voiced_ratio", re.compile(NUM + r"\s*%[^.;\n]{0,40}?\bvoiced\b", re.I)),
]
_DIRECTION_RULES = [
    ("pitch_mean_hz", +1, re.compile(r"\b(?:high|higher|raised|elevated)[- ]pitch(?:ed)?\b|\bpitch\s+(?:is|was|"
                                     r"sounds?)\s+(?:very\s+)?(?:high|higher|raised|elevated)\b", re.I)),
    ("pitch_mean_hz", -1, re.compile(r"\b(?:low|lower|deep)[- ]pitch(?:ed)?\b|\bpitch\s+(?:is|was|sounds?)\s+"
                                     r"(?:very\s+)?(?:low|lower|deep)\b", re.I)),
    ("energy_db_mean", +1, re.compile(r"\b(?:loud|louder|shout(?:s|ing)?|raised voice)\b", re.I)),
    ("energy_db_mean", -1, re.compile(r"\b(?:quiet|quieter|soft(?:ly)?|whisper(?:s|ing|ed)?|hushed)\b", re.I)),
    ("speaking_rate_hz", +1, re.compile(r"\b(?:fast|faster|rapid(?:ly)?|quick(?:ly)?|hurried)\b", re.I)),
    ("speaking_rate_hz", -1, re.compile(r"\b(?:slow|slower|slowly|drawn[- ]out)\b", re.I)),
]
TOLERANCE = {"pitch_mean_hz": (0.15, 20.0), "energy_db_mean": (0.0, 3.0), "speaking_rate_hz": (0.25, 1.0),
             "voiced_ratio": (0.0, 0.10)}


@dataclass
class Claim:
    cue: str
    value: float | None = None      # a stated number
    direction: int = 0              # +1 higher / -1 lower than usual
    text: str = ""


def extract_claims(text: str) -> list[Claim]:
    """Numbers and directions an explanation states about pitch, energy, rate and voicing."""
    out = []
    for cue, pat in _VALUE_RULES:
        for m in pat.finditer(text):
            v = float(m.group(1))
            out.append(Claim(cue, v / 100 if cue == "voiced_ratio" else v, 0, m.group(0)))
    for cue, sign, pat in _DIRECTION_RULES:
        out += [Claim(cue, None, sign, m.group(0)) for m in pat.finditer(text)]
    return out


def check_claim(c: Claim, measured: dict, reference: dict | None = None) -> bool | None:
    """True = wrong, False = right, None = not verifiable (cue not measured, or no reference for a direction)."""
    got = measured.get(c.cue)
    if got is None:
        return None
    if c.value is not None:
        rel, absolute = TOLERANCE[c.cue]
        return abs(c.value - got) > max(rel * abs(got), absolute)
    ref = (reference or {}).get(c.cue)
    if ref is None:
        return None
    return (got - ref) * c.direction <= 0


def grounding_scores(text: str, measured: dict | None, reference: dict | None = None) -> dict[str, float]:
    """Per explanation: n_claims, n_verifiable, n_wrong (NaN-free counts)."""
    claims = extract_claims(text)
    verdicts = [check_claim(c, measured or {}, reference) for c in claims]
    return {"n_claims": float(len(claims)), "n_verifiable": float(sum(v is not None for v in verdicts)),
            "n_wrong": float(sum(v is True for v in verdicts))}
