"""The shipped default on real weights: its files match the sha256 pinned here (not only its own manifest, which a
re-ship rewrites), and one fixed input gives the pinned answer, so an accidental change to the weights, the prompt
or the scoring path fails CI. After a deliberate re-ship, pin the new values with
`python scripts/shipped_known_answer.py mini-affect`."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from affectllm.shipped import shipped_path

REPO = Path(__file__).resolve().parents[1]
PINNED_SHA256 = {
    "adapter/adapter_model.safetensors": "3cb7ea3b6145a0e70db2b2a86e9f0ddf0c74a32e38d501bc3ac289c7d53ca7aa",
    "projectors.safetensors": "ae0bbb6ab73ce9bc7ef22d71bb1b88733b8c10ea482728f719341be546efbdcd",
}
PINNED_LOGLIKS = [-4.758, -2.139, -0.809, -1.187, -3.285, -3.495, -3.005]  # fp32, the candidates of scripts/shipped_known_answer.py in order
PINNED_LABELS = ["surprise"]


def _script():
    spec = importlib.util.spec_from_file_location("shipped_known_answer", REPO / "scripts" / "shipped_known_answer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_shipped_weights_are_the_pinned_ones():
    import json

    manifest = json.loads((shipped_path("mini-affect") / "MANIFEST.json").read_text())  # verifies every sha256
    assert {k: manifest["files"][k]["sha256"] for k in PINNED_SHA256} == PINNED_SHA256


def test_shipped_model_gives_its_known_answer_on_a_fixed_input():
    got = _script().known_answer("mini-affect")
    assert got["sha256"] == PINNED_SHA256
    assert got["logliks"] == pytest.approx(PINNED_LOGLIKS, abs=0.05)
    assert max(range(len(PINNED_LOGLIKS)), key=got["logliks"].__getitem__) == \
        max(range(len(PINNED_LOGLIKS)), key=PINNED_LOGLIKS.__getitem__)
    assert got["labels"] == PINNED_LABELS
