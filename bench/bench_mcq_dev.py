"""How to answer EmoBench-shaped multiple choice, chosen on dev data: MELD dev lines as scenarios (the previous
lines and the speaker's line, as the training `scenario` format builds them), EmoBench's EU question and the eval's
`probe_mcq` prompt, 4-6 of MELD's labels as choices (gold + distractors, shuffled). Two answering methods on the same
items, side by side: a generated letter (`emobench_eu`) and scored choices (each choice as the label of the model's
own answer to the scenario, `emobench_eu_scored`).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_mcq_dev.py [--model mini-affect] [--n 150]
        [--output docs/results/bench_mcq_dev.json]

EmoBench has only a test split, so the method is chosen here and EmoBench is run once with it."""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> dict:
    from affectllm.api import load
    from affectllm.data import LABEL_SETS
    from affectllm.evaluation.parsers import letters, parse_letter
    from affectllm.evaluation.scored import LABEL_END, candidate_answer
    from affectllm.evaluation.suites.emobench import question
    from affectllm.model_card import cpu_model
    from affectllm.train.examples import load_split
    from affectllm.train.mixture import MixtureBuilder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini-affect")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output")
    a = ap.parse_args(argv)
    pipe = load(a.model, merge_lora=True)
    samples = load_split("meld", "dev", None, "error")
    builder = MixtureBuilder(pipe, "labels", a.seed)
    builder.index_dialogues(samples)
    rng = random.Random(a.seed)
    pool = [s for s in samples if s.text and s.label]
    rng.shuffle(pool)
    space = LABEL_SETS[pool[0].label_set]
    hits, answers, chance, t0 = {"letter": 0, "scored": 0}, collections.Counter(), 0.0, time.time()
    for s in pool[:a.n]:
        subject, scene = builder._scene(s)
        n = rng.randint(4, 6)
        options = [s.label.capitalize()] + [c.capitalize() for c in rng.sample([c for c in space if c != s.label], n - 1)]
        rng.shuffle(options)
        gold = options.index(s.label.capitalize())
        asked = question(SimpleNamespace(meta={"task": "EU", "subject": subject}))  # EmoBench's EU wording
        msgs, _ = pipe.build_messages(text=scene, prompt="probe_mcq", variables={"question": asked, "choices": options})
        said = (parse_letter(pipe.generate([msgs], max_new_tokens=8)[0], options) or "").upper()
        answers[said or "none"] += 1
        hits["letter"] += said == letters(n)[gold]
        msgs, _ = pipe.build_messages(text=scene, prompt="emotion_ov")
        ll = pipe.score_candidates(msgs, [candidate_answer(o.lower()) for o in options], end=LABEL_END)
        hits["scored"] += max(range(n), key=lambda i: ll[i]) == gold
        chance += 1 / n
    out = {"model": a.model, "cpu": cpu_model(), "n": a.n, "seed": a.seed,
           "accuracy": {k: round(v / a.n, 3) for k, v in hits.items()}, "chance": round(chance / a.n, 3),
           "letters_answered": dict(answers), "seconds": round(time.time() - t0)}
    print(json.dumps(out))
    if a.output:
        Path(a.output).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
