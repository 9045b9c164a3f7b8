"""Print the known answer of a shipped model on the fixed input of tests/test_shipped_answer.py (fp32), to pin it
in that test after a deliberate re-ship: sha256 of the weight files, the scored-candidate log-likelihoods and the
greedy answer."""
from __future__ import annotations

import json
import sys

from affectllm.api import load
from affectllm.evaluation.scored import LABEL_END, candidate_answer
from affectllm.shipped import shipped_path

TEXT = "I can't believe you did this to me, get out of my house right now!"
CANDIDATES = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]


def known_answer(name: str) -> dict:
    folder = shipped_path(name)
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    pipe = load(name, dtype="float32")
    messages, _ = pipe.build_messages(text=TEXT, prompt="emotion_closed", candidates=CANDIDATES)
    lls = pipe.score_candidates(messages, [candidate_answer(c) for c in CANDIDATES], end=LABEL_END)
    answer = pipe.chat(text=TEXT, prompt="emotion_closed", candidates=CANDIDATES, max_new_tokens=16)
    return {"sha256": {k: v["sha256"] for k, v in manifest["files"].items() if k.endswith(".safetensors")},
            "logliks": [round(x, 3) for x in lls], "labels": answer.prediction.labels, "raw": answer.raw}


if __name__ == "__main__":
    print(json.dumps(known_answer(sys.argv[1] if len(sys.argv) > 1 else "mini-affect"), indent=1))
