"""Every docstring example in the scoring package runs (examples needing the real MER files are marked
+SKIP there and covered by the real-data tests)."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["api", "bootstrap", "closed", "dimensional", "labels", "lexicon", "ov_metric", "parser", "wheel_metric"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"affectllm.scoring.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_tagged_object_answer_keeps_its_own_verdict():
    from affectllm.scoring import parse

    p = parse('<answer>{"labels": "happy, excited"}</answer>')
    assert p.labels == ["happy", "excited"] and p.format == "tagged" and p.format_ok
    assert "one string" in p.reason
