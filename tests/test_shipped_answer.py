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
    "adapter/adapter_model.safetensors": "cabc84f721db0e55a8c984cb0d2fe1012bd21d584005d769306a7f393c8e3924",
    "projectors.safetensors": "915202bdaf153dd7f4a15333c95da7ae54eeb22f34977128eb431dc236c918a5",
}
PINNED_LOGLIKS = [-2.551, -3.395, -1.232, -2.75, -1.928, -2.227, -1.768]  # fp32, the candidates of scripts/shipped_known_answer.py in order
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
