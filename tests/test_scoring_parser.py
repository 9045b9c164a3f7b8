"""The output parser against a hand-written corpus of model outputs, plus a fuzz loop: parse() must never
raise and must always return a well-typed record."""
from __future__ import annotations

import base64
import json
import math
import random
import string
import time
from pathlib import Path

import pytest

from affectllm.scoring import Prediction, parse
from affectllm.scoring.parser import FORMATS

CORPUS = Path(__file__).with_name("data") / "parser_corpus.jsonl"
CASES = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _input(case):
    return base64.b64decode(case["input_b64"]) if "input_b64" in case else case["input"]


def test_corpus_is_large_enough():
    assert len(CASES) >= 100
    assert len({c["id"] for c in CASES}) == len(CASES)
    kinds = {c["expected"]["format"] for c in CASES}
    assert kinds == set(FORMATS)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case(case):
    exp = case["expected"]
    p = parse(_input(case))
    assert p.labels == exp["labels"]
    assert p.format == exp["format"]
    assert p.format_ok is exp["format_ok"]
    for key in ("confidence", "valence", "arousal"):
        if exp[key] is None:
            assert getattr(p, key) is None, key
        else:
            assert getattr(p, key) == pytest.approx(exp[key]), key
    if "explanation" in exp:
        assert p.explanation == exp["explanation"]
    if "reason" in exp:
        assert p.reason == exp["reason"]
    if "reason_contains" in exp:
        assert p.reason and exp["reason_contains"] in p.reason, p.reason
    _check_record(p)


def _check_record(p: Prediction) -> None:
    assert isinstance(p, Prediction)
    assert isinstance(p.labels, list) and all(isinstance(x, str) and x for x in p.labels)
    assert len(set(p.labels)) == len(p.labels)
    assert all(x == " ".join(x.lower().split()) for x in p.labels)
    assert isinstance(p.explanation, str)
    assert p.format in FORMATS
    assert isinstance(p.format_ok, bool)
    assert p.reason is None or isinstance(p.reason, str)
    if p.format_ok:
        assert p.labels and p.format in ("json", "tagged")
    if not p.labels and p.format != "json":
        assert p.reason
    if p.confidence is not None:
        assert 0.0 <= p.confidence <= 1.0
    for v in (p.valence, p.arousal):
        assert v is None or (-1.0 <= v <= 1.0 and math.isfinite(v))


def test_non_string_inputs_never_raise():
    for value in (None, 0, 3.5, [], {}, ["happy"], {"labels": ["happy"]}, object(), b"", bytearray(b"\x00\xff"),
                  memoryview(b'{"labels": ["sad"], "explanation": "x"}')):
        _check_record(parse(value))
    assert parse(memoryview(b'{"labels": ["sad"], "explanation": "x"}')).labels == ["sad"]


def test_fuzz_random_strings_never_raise():
    rng = random.Random(1234)
    alphabet = string.printable + "{}[]<>\"'`,:;\\/" + "\u00e9\u4e2d\U0001F600\x00\x7f"
    pieces = ['{"labels": [', "]", "}", '"happy"', "'sad'", "<answer>", "</answer>", "<think>", "```json", "```",
              ",", ":", "confidence", "NaN", "1e309", "-", "\\u", "\\", "null", "true"]
    t0 = time.perf_counter()
    for _ in range(1500):
        if rng.random() < 0.5:
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        else:
            s = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        _check_record(parse(s))
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        _check_record(parse(raw))
    assert time.perf_counter() - t0 < 10


def test_huge_input_is_fast():
    t0 = time.perf_counter()
    p = parse('{"labels": ["happy"], "explanation": "' + "x" * 5_000_000 + '"}')
    _check_record(p)
    assert "cut to" in p.reason
    assert time.perf_counter() - t0 < 3


def test_free_text_uses_given_lexicon():
    from affectllm.scoring import Lexicon

    lex = Lexicon({"wistful": "wistfulness"})
    assert parse("A wistful look.", lexicon=lex).labels == ["wistful"]
    assert parse("A wistful look.").labels == []
