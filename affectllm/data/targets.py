"""Training targets: the structured answer of `affectllm.schema` ({"labels", "explanation", optional
"valence"/"arousal"}) for a sample, given the modalities the model is shown.

Why grounded: a model trained on invented rationales learns to hallucinate cues. So the explanation is either a
human-checked one from the corpus (EMER), used only when the model sees every modality it describes, or it is
built from facts that were measured or are in the data: prosodic cues of the actual audio measured by the same
prosody tower the model listens through (no comparison with recordings it never hears), the emotion words that occur in the text (`lexicon.py`), the
annotators' valence/arousal ratings, or the corpus' own description of a face image. It always opens with the
modalities the evidence came from ("Evidence: audio (prosody)."). Labels come from the corpus annotation."""
from __future__ import annotations

import json

from ..errors import AffectError
from .cues import speech_cues
from .lexicon import find_cue_words
from .manifest import MODALITIES, Sample

# What a face-expression description can honestly say without facial action unit detection: the modality and the
# kind of image, never the dataset's label a second time (that taught the model to copy labels, not to look).
IMAGE_SOURCES = {"ckplus": "A posed expression at its peak on a cropped grey face (CK+): the face's configuration is "
                           "the only cue."}
DEFAULT_IMAGE_SOURCE = "The facial expression in the image is the only cue."
# How the text of a sample is introduced, by meta["text_kind"] (set by the adapters).
TEXT_INTROS = {"text": "The text says", "utterance": "{speaker} says", "statement": "The spoken statement is",
               "scenario": "The scenario says", "subtitle": "The subtitle (English translation) says"}
QUOTE_CHARS = 200
# Thresholds for calling a cue higher/lower than the reference (below them: "similar").
PCT_PITCH, PCT_SPREAD, DB_ENERGY, PCT_RATE = 10, 20, 3.0, 15
MIN_SPREAD_HZ = 1.0  # reference pitch spread below this is not compared in %
DIM_THRESHOLD = 0.2  # |normalised valence/arousal| below this is described as neutral / moderate


def target_answer(sample: Sample, modalities_used: list[str] | tuple[str, ...] | None = None, *,
                  reference: dict | None = None, reference_name: str = "the reference recordings",
                  with_dimensions: bool | None = None, use_cache: bool = True) -> dict:
    """The answer dict a model shown `modalities_used` of `sample` should produce. `reference` (cues from
    `cues.baseline_cues`) is an explicit prosody baseline to compare with; without one, the tower's absolute cues.
    `with_dimensions=None` adds valence/arousal whenever the sample has both. Raises AffectError when the
    sample has nothing to learn from (no labels and no ratings, or no evidence in the given modalities)."""
    used = _check_modalities(sample, modalities_used)
    labels = list(sample.labels) or dimension_labels(sample.valence, sample.arousal)
    if not labels:
        raise AffectError(f"sample '{sample.id}' has no emotion labels or valence/arousal ratings to train towards")
    answer: dict = {"labels": labels, "explanation": explanation(sample, used, reference, reference_name, use_cache)}
    has_dims = sample.valence is not None and sample.arousal is not None
    if with_dimensions or (with_dimensions is None and has_dims):
        if not has_dims:
            raise AffectError(f"sample '{sample.id}' has no valence/arousal ratings")
        answer["valence"], answer["arousal"] = round(sample.valence, 3), round(sample.arousal, 3)
    return answer


def target_json(sample: Sample, modalities_used=None, **kw) -> str:
    """`target_answer` as the JSON text a model is trained to emit (keys in schema order, UTF-8 kept)."""
    return json.dumps(target_answer(sample, modalities_used, **kw), ensure_ascii=False)


def explanation(sample: Sample, used: list[str], reference: dict | None = None,
                reference_name: str = "the reference recordings", use_cache: bool = True) -> str:
    given = sample.meta.get("explanation_modalities") or sample.modalities()
    if sample.explanation and set(given) <= set(used):
        source = sample.meta.get("explanation_source", "corpus")
        return f"Evidence: {', '.join(given)} ({source} human-checked description). {sample.explanation}"
    evidence, parts = [], []
    if "audio" in used and sample.audio:
        evidence.append("audio (prosody)")
        if reference is not None:  # an explicit baseline (callers that show the model that baseline too)
            parts.append(describe_speech(speech_cues(sample.audio, use_cache), reference, reference_name))
        else:
            parts.append(describe_tower_speech(tower_speech_cues(sample.audio)))
    if "image" in used and sample.image and sample.label:
        evidence.append("image (face)")
        template = IMAGE_SOURCES.get(sample.corpus, DEFAULT_IMAGE_SOURCE)
        parts.append(template.format(label=sample.label, corpus=sample.corpus))
    if "text" in used and sample.text:
        parts.append(describe_text(sample))
        if sample.vad_native and sample.vad_scale:
            evidence.append("text (words, annotated valence/arousal)")
            parts.append(describe_ratings(sample))
        else:
            evidence.append("text (words)")
    if not parts:
        raise AffectError(f"sample '{sample.id}': no grounded evidence available from modalities {used}")
    return f"Evidence: {', '.join(evidence)}. " + " ".join(parts)


_PROSODY_TOWER = None


def tower_speech_cues(path: str) -> dict:
    """Clip-level cues measured by the prosody tower the model itself listens through (its YIN pitch tracker and
    energy frames; `ProsodyAudioEncoder.summary_cues`), so an explanation cites only what the model is shown."""
    global _PROSODY_TOWER
    if _PROSODY_TOWER is None:
        from ..towers.prosody import ProsodyAudioEncoder, ProsodyConfig

        _PROSODY_TOWER = ProsodyAudioEncoder(ProsodyConfig()).eval()
    from .cues import load_audio

    return _PROSODY_TOWER.summary_cues(load_audio(path, _PROSODY_TOWER.config.sampling_rate))


def template_phrases() -> list[str]:
    """The fixed wording of the answers this module writes (JSON scaffold, evidence openings, prosody and face
    sentences, the no-cue-word ending), rendered with example values: what a model trained on these targets
    writes over and over, for drafting tokens (affectllm.draft_decoding). Numbers in it are placeholders."""
    example = {"pitch_mean_hz": 200.0, "pitch_std_hz": 20.0, "pitch_range_semitones": 10.0, "energy_db_mean": -40.0,
               "speaking_rate_hz": 4.0, "voiced_ratio": 0.5, "active_s": 1.5}
    evidence = ["audio (prosody)", "image (face)", "video (face)", "text (words)"]
    cut = "<end>"  # the answer's opening up to the evidence, as target_json writes it, without the closing quote
    return ([json.dumps({"labels": ["x"], "explanation": f"Evidence: {e}.{cut}"}).split(cut)[0] for e in evidence]
            + [describe_tower_speech(example), *IMAGE_SOURCES.values(), DEFAULT_IMAGE_SOURCE,
               *(intro.format(speaker="The speaker") + ' "' for intro in TEXT_INTROS.values()),
               '"; it contains none of the listed emotion cue words."}'])


def describe_tower_speech(cues: dict) -> str:
    """Absolute measured values only (no comparison with recordings the model never hears)."""
    f0, spread, semis = cues.get("pitch_mean_hz"), cues.get("pitch_std_hz"), cues.get("pitch_range_semitones")
    if f0 is None:
        pitch = "no voiced pitch was detected"
    else:
        pitch = f"pitch averages {round(f0)} Hz with a spread of {round(spread)} Hz"
        if semis is not None:
            pitch += f" over a range of {semis:.0f} semitones"
    energy = cues.get("energy_db_mean")
    loud = f"energy averages {energy:.1f} dBFS" if energy is not None else "the clip is silent"
    return (f"Measured prosody: {pitch}; {loud} and about {cues.get('speaking_rate_hz', 0.0):.1f} syllable peaks per "
            f"second; {round(100 * cues.get('voiced_ratio', 0.0))}% of {cues.get('active_s', 0.0):.1f} s of active "
            "sound is voiced.")


def describe_speech(cues: dict, reference: dict | None = None, reference_name: str = "the reference") -> str:
    """One or two sentences citing only measured values (rounded: Hz and % to integers, dB and rates to 0.1)."""
    f0, spread = cues.get("f0_mean_hz"), cues.get("f0_std_hz")
    energy, rate = cues["rms_db"], cues["onset_rate"]
    tail = f"{round(100 * cues['voiced_ratio'])}% of {cues['active_s']:.1f} s of active sound is voiced."
    if reference is None:
        pitch = (f"pitch averages {round(f0)} Hz with a spread of {round(spread)} Hz" if f0 is not None
                 else "no voiced pitch was detected")
        return (f"Measured prosody: {pitch}, energy is {energy:.1f} dBFS and the onset rate (a tempo proxy) is "
                f"{rate:.1f} per second; {tail}")
    clauses = []
    if f0 is not None and reference.get("f0_mean_hz"):
        p = _pct(f0, reference["f0_mean_hz"])
        clause = f"pitch is {_word(p, PCT_PITCH, 'higher', 'lower')} (mean {round(f0)} Hz, {p:+d}%)"
        if (reference.get("f0_std_hz") or 0) < MIN_SPREAD_HZ:  # a flat reference: a ratio would be meaningless
            clause += f" with a spread of {round(spread)} Hz"
        else:
            s = _pct(spread, reference["f0_std_hz"])
            clause += (f" and {_word(s, PCT_SPREAD, 'more variable', 'less variable', 'similarly variable')} "
                       f"(spread {round(spread)} Hz, {s:+d}%)")
        clauses.append(clause)
    elif f0 is None:
        clauses.append("no voiced pitch was detected")
    d = round(energy - reference["rms_db"], 1)
    clauses.append(f"energy is {_word(d, DB_ENERGY, 'higher', 'lower')} ({energy:.1f} dBFS, {d:+.1f} dB)")
    if reference.get("onset_rate"):
        r = _pct(rate, reference["onset_rate"])
        clauses.append(f"the onset rate, a tempo proxy, is {_word(r, PCT_RATE, 'faster', 'slower')} "
                       f"({rate:.1f} per second, {r:+d}%)")
    return f"Compared with {reference_name}, " + _join(clauses) + f"; {tail}"


def describe_text(sample: Sample) -> str:
    text = " ".join(sample.text.split())
    quote = text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    intro = TEXT_INTROS.get(sample.meta.get("text_kind", "text"), TEXT_INTROS["text"])
    out = intro.format(speaker=sample.speaker or "The speaker") + f" \"{quote}\""
    if sample.language not in (None, "en") and sample.meta.get("text_language", sample.language) != "en":
        return out + "."
    cues = find_cue_words(text)
    if not cues:
        return out + "; it contains none of the listed emotion cue words."
    cited = [f"\"{c['word']}\" ({c['category']}" + (f", after \"{c['negated_by']}\")" if c["negated_by"] else ")")
             for c in cues]
    return out + f"; its emotion cue word{'s are' if len(cited) > 1 else ' is'} " + _join(cited) + "."


def describe_ratings(sample: Sample) -> str:
    lo, hi = sample.vad_scale
    v, a = sample.vad_native.get("valence"), sample.vad_native.get("arousal")
    return f"Annotators rated its valence {v:g} and arousal {a:g} on a {lo:g}-{hi:g} scale."


def dimension_labels(valence: float | None, arousal: float | None) -> list[str]:
    """Descriptive labels derived from normalised ratings alone (for corpora without categories, e.g. EmoBank)."""
    if valence is None:
        return []
    out = ["positive" if valence >= DIM_THRESHOLD else "negative" if valence <= -DIM_THRESHOLD else "neutral"]
    if arousal is not None and abs(arousal) >= DIM_THRESHOLD:
        out.append("high arousal" if arousal > 0 else "low arousal")
    return out


def _check_modalities(sample: Sample, used) -> list[str]:
    if used is None:
        return sample.modalities()
    used = list(used)
    bad = [m for m in used if m not in MODALITIES]
    if bad:
        raise AffectError(f"unknown modality {bad[0]!r}; known: {', '.join(MODALITIES)}")
    absent = [m for m in used if m not in sample.modalities()]
    if absent:
        raise AffectError(f"sample '{sample.id}' has no {absent[0]} (it has: {', '.join(sample.modalities())})")
    return used


def _pct(x: float, ref: float) -> int:
    return round(100 * (x - ref) / ref)


def _word(delta: float, threshold: float, up: str, down: str, same: str = "similar") -> str:
    return up if delta >= threshold else down if delta <= -threshold else same


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
