"""Every shipped prompt puts its fixed instruction and answer format before the variable text, so requests share a
prefix that vLLM's prefix cache can reuse; prompts in subfolders load and list by prefix."""
from __future__ import annotations

import re

import pytest

from affectllm.prompts import get_prompt, list_prompts

SENTINEL = "zq sentinel words of the input"
VARS = {"modalities": ["audio", "text"], "text": SENTINEL, "with_confidence": True, "with_dimensions": True,
        "candidates": ["anger", "joy", "sadness"], "question": "Is the emotion in the speaker's voice 'anger'?",
        "choices": ["Anger", "Delight"], "options": ["anger", "joy"], "label": "joy", "absent": "video"}
_SENTENCE_END = re.compile(r"[.?!](?=\s|$)")


@pytest.mark.parametrize("name", list_prompts())
def test_text_comes_last_after_the_instruction(name):
    rendered = get_prompt(name).render(**VARS)
    at = rendered.find(SENTINEL)
    first_end = _SENTENCE_END.search(rendered)
    assert at > 0 and first_end and first_end.end() <= at, rendered
    assert SENTINEL in rendered.splitlines()[-1] and rendered.count(SENTINEL) == 1, rendered
    without = get_prompt(name).render(**{**VARS, "text": None}) if name != "probe_mcq" else None
    assert without is None or "None" not in without


def test_list_prompts_by_prefix_and_subfolder_names():
    train = list_prompts("train/")
    assert train and all(n.startswith("train/") for n in train) and "train/ov_1" in train
    assert list_prompts("train/mcq_") == ["train/mcq_1", "train/mcq_2", "train/mcq_3"]
    assert set(train) < set(list_prompts()) and "emotion_ov" in list_prompts()
    assert get_prompt("train/ov_1").id == "train/ov_1@1" and get_prompt("paraphrase/closed_1").version == "2"
