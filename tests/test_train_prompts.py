"""The training prompt family prompts/train/: each template renders with exactly the variables its header declares
(strict undefined), asks before it shows the input, documents a target answer that the eval parsers and scorers
accept, and shares no sentence with any eval prompt (prompts/*.jinja, prompts/paraphrase/*.jinja) — otherwise the
prompt-sensitivity evaluation would measure wordings the model was trained on."""
from __future__ import annotations

import itertools
import re
from types import SimpleNamespace

import pytest

from affectllm.errors import ConfigError
from affectllm.evaluation.parsers import cited_modalities, parse_letter, parse_yesno, states_missing
from affectllm.evaluation.suites.emobench import question as emobench_question
from affectllm.evaluation.suites.hallucination import ASK, SUBJECT
from affectllm.prompts import get_prompt, list_prompts, prompt_dir
from affectllm.scoring import parse

TEXT = "zq sentinel words of the input"
SAMPLE = {"modalities": ["audio", "text"], "text": TEXT, "candidates": ["anger", "joy", "neutral", "sadness"],
          "options": ["anger", "joy", "neutral", "sadness"], "label": "joy", "absent": "video",
          "question": "How is Sam most likely feeling?", "choices": ["Anger", "Joy & Gratitude", "Neutral", "Sadness"]}
FLAGS = [{"with_confidence": c, "with_dimensions": d} for c, d in itertools.product([False, True], repeat=2)]
TRAIN = list_prompts("train/")
FAMILIES = {"ov": 4, "closed": 4, "mcq": 3, "yesno": 3, "modality": 2, "absent": 2, "va": 2, "scenario": 3}
MIN_SENTENCE = 20


def header(name: str) -> str:
    return (prompt_dir() / f"{name}.jinja").read_text(encoding="utf-8").split("#}", 1)[0]


def declared_vars(name: str) -> set[str]:
    head = header(name)
    block = re.search(r"vars:(.*?)\n\s{4}\w+:", head, re.S)
    assert block, f"{name}: header has no vars: line"
    return set(re.findall(r"(\w+) \(", block.group(1)))


def sample_vars(names: set[str], **over) -> dict:
    out = {k: SAMPLE[k] for k in names if k in SAMPLE}
    out.update({k: False for k in names if k.startswith("with_")})
    out.update({k: v for k, v in over.items() if k in names})
    return out


def renders(name: str) -> list[str]:
    """Every wording the template can produce with the sample input (all flag combinations, with and without
    text, each absent modality)."""
    names = declared_vars(name)
    flags = FLAGS if "with_confidence" in names else [{}]
    absents = ["audio", "image", "video"] if "absent" in names else [None]
    out = []
    for f, absent, text in itertools.product(flags, absents, [TEXT, None]):
        over = {**f, "text": text, **({"absent": absent} if absent else {})}
        out.append(get_prompt(name).render(**sample_vars(names, **over)))
    return out


def eval_renders() -> list[str]:
    """The eval prompts as the suites render them: every flag combination, and the probes with the questions the
    hallucination and emobench suites actually ask."""
    base = {**SAMPLE, "choices": ["Anger", "Delight", "Guilt"]}
    yesno = [f"Is {s} '{lab}'?" for s in [*SUBJECT.values(), "the emotion expressed"] for lab in ("joy", "anger")]
    yesno += ["Is the emotion expressed with strong intensity?",
              "Is the emotion expressed with normal, mild intensity?"]
    metas = ({"task": "EU", "subject": "Sam"}, {"task": "EA", "question": "action"},
             {"task": "EA", "question": "response"})
    mcq = [emobench_question(SimpleNamespace(meta=m)) for m in metas]
    questions = {"probe_absent_modality": list(ASK.values()), "probe_yesno": yesno, "probe_mcq": mcq}
    out = []
    for name in [n for n in list_prompts() if not n.startswith("train/")]:
        for f, q, mods in itertools.product(FLAGS, questions.get(name, [""]), (["audio", "text"], ["text"], [])):
            out.append(get_prompt(name).render(**{**base, **f, "question": q, "modalities": mods}))
    return out


def norm(s: str) -> str:
    return " ".join(s.lower().split())


def sentences(text: str) -> set[str]:
    return {n for n in (norm(s) for s in re.split(r"[.?!\n]+", text)) if len(n) > MIN_SENTENCE}


def test_family_is_complete():
    for fam, n in FAMILIES.items():
        assert list_prompts(f"train/{fam}_") == [f"train/{fam}_{i}" for i in range(1, n + 1)], fam
    assert len(TRAIN) == sum(FAMILIES.values())


@pytest.mark.parametrize("name", TRAIN)
def test_header_and_strict_rendering(name):
    p = get_prompt(name)
    head = header(name)
    assert p.version == "1" and p.id == f"{name}@1"
    for key in ("vars:", "task:", "why:", "target:"):
        assert f"\n    {key}" in head, f"{name}: header lacks '{key}'"
    names = declared_vars(name)
    assert p.variables <= names, f"{name} uses undeclared {sorted(p.variables - names)}"
    for unused in names - p.variables:                # declared but not shown: the header must say why
        assert re.search(rf"{unused} \([^)]*not rendered", head), f"{name}: '{unused}' declared, never rendered"
    assert {"modalities", "text"} <= names
    assert renders(name)                              # every declared variable combination renders
    missing = sorted(p.variables)[0]
    with pytest.raises(ConfigError, match="undefined"):  # strict: a missing variable is an error, not ""
        p.render(**{k: v for k, v in sample_vars(names).items() if k != missing})


@pytest.mark.parametrize("name", TRAIN)
def test_instruction_comes_before_the_text(name):
    for rendered in renders(name):
        if TEXT not in rendered:
            continue
        first_end = re.search(r"[.?!](?=\s|$)", rendered)
        assert first_end and first_end.end() <= rendered.index(TEXT), rendered
        assert TEXT in rendered.splitlines()[-1], rendered


def test_no_train_sentence_occurs_in_an_eval_prompt():
    rendered = eval_renders()
    evals = [norm(t) for t in rendered]
    eval_sentences = set().union(*(sentences(t) for t in rendered))
    train = {name: [norm(t) for t in renders(name)] for name in TRAIN}
    for name, texts in train.items():
        for s in set().union(*(sentences(t) for t in texts)):
            hit = next((e for e in evals if s in e), None)
            assert hit is None, f"{name}: sentence {s!r} occurs in eval prompt {hit!r}"
        for s in eval_sentences:
            assert not any(s in t for t in texts), f"{name}: contains eval sentence {s!r}"


# ---- the documented target answers are what the eval parsers and scorers count -------------------------------
def _join(words: list[str], last: str) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" {last} " + words[-1]


def absent_target(absent: str, modalities: list[str]) -> str:
    verb = "hear the voice" if absent == "audio" else "see the face"
    return f"No {absent} was provided, so I cannot {verb}; I only have the {' and '.join(modalities)}."


def modality_target(modalities: list[str]) -> str:
    have = set(modalities) | ({"audio"} if "video" in modalities else set())
    missing = [m for m in ("audio", "image", "video", "text") if m not in have]
    tail = f"no {_join(missing, 'or')} was provided" if missing else "nothing is missing"
    return f"I was given the {_join(modalities, 'and')}; {tail}."


def _example(name: str) -> str:
    m = re.search(r'E\.g\. "(.+?)"\n', header(name), re.S)
    assert m, f"{name}: header target has no example"
    return " ".join(m.group(1).split())


GIVEN = [["text"], ["audio"], ["image"], ["video"], ["audio", "text"], ["image", "text"], ["video", "text"]]
ASKABLE = [(a, g) for a in ("audio", "image", "video") for g in GIVEN   # the headers' rule for `absent`
           if a not in g and not (a in ("audio", "image") and "video" in g) and not (a == "video" and "image" in g)]


@pytest.mark.parametrize("name", list_prompts("train/absent_"))
def test_absent_target_counts_as_acknowledged(name):
    assert _example(name) in {absent_target(a, g) for a, g in ASKABLE}
    for target in [absent_target(a, g) for a, g in ASKABLE]:
        asked = "audio" if target.startswith("No audio") else "visual"
        assert states_missing(target), target                       # absent_ack_rate counts it
        assert asked not in cited_modalities(target), target         # describes_absent_rate does not


@pytest.mark.parametrize("name", list_prompts("train/modality_"))
def test_modality_target_names_what_is_missing(name):
    assert _example(name) == modality_target(["audio", "text"])
    for given in GIVEN:
        target = modality_target(given)
        media_missing = {"audio", "image", "video"} - set(given) - ({"audio"} if "video" in given else set())
        assert states_missing(target) == bool(media_missing), target
    assert modality_target(["video", "image", "text"]).endswith("nothing is missing.")


def test_answer_formats_parse_like_the_eval_expects():
    options = SAMPLE["options"]
    for name in list_prompts("train/mcq_"):
        assert '{"answer": "<letter>"}' in get_prompt(name).render(**sample_vars(declared_vars(name)))
    assert parse_letter('{"answer": "B"}', options) == "B" and parse_letter('{"answer": "D"}', options) == "D"
    for name in list_prompts("train/scenario_"):  # bare-letter answers, as EmoBench's probe_mcq asks
        text = get_prompt(name).render(**sample_vars(declared_vars(name)))
        assert "letter" in text and all(c in text for c in SAMPLE["choices"]), name
    assert all(parse_letter(x, SAMPLE["choices"]) == x for x in "ABCD")
    for name in list_prompts("train/yesno_"):
        assert re.search(r"\byes or no\b", get_prompt(name).render(**sample_vars(declared_vars(name))))
    assert parse_yesno("yes") == "yes" and parse_yesno("no") == "no"
    va = parse('{"labels": ["joy"], "explanation": "the words say she is delighted (text)", "valence": 0.7, '
               '"arousal": 0.4}')
    assert va.format_ok and va.labels == ["joy"] and (va.valence, va.arousal) == (0.7, 0.4)
    for name in list_prompts("train/va_"):
        text = get_prompt(name).render(**sample_vars(declared_vars(name)))
        assert all(f'"{k}"' in text for k in ("labels", "explanation", "valence", "arousal"))
    for name in list_prompts("train/ov_") + list_prompts("train/closed_"):
        text = get_prompt(name).render(**sample_vars(declared_vars(name), with_confidence=True, with_dimensions=True))
        assert all(f'"{k}"' in text for k in ("labels", "explanation", "confidence", "valence", "arousal")), name
