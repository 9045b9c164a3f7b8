"""Scored candidates for closed-set tasks, the way lm-evaluation-harness scores multiple choice: the probability
of each candidate label is the softmax over candidates of the full-sequence log-likelihood of that candidate as
the answer (teacher-forced, no generation). It replaces reading the top-20 alternatives at the first generated
label token, which lost every label below the top 20 and every label sharing a first token.

A backend that cannot score (a server without prompt logprobs) is an error naming the task: a different metric
must never stand in silently.
"""
from __future__ import annotations

import json

import numpy as np

from ..errors import ConfigError
from .backends import Request, ScoringUnsupported


class ScoredTaskError(ConfigError):
    """A scored-candidate task met a model that cannot score: the task fails by name, the run goes on."""


LABEL_END = '"'  # a scored label must end where the next token starts with the closing quote


def candidate_answer(label: str) -> str:
    """The answer prefix a candidate is scored as: the structured answer up to the end of the label's text; the
    scorer adds the probability that the label's string closes there (`LABEL_END`), so "sad" vs "sadness" differ.
    Cutting the text at the closing bracket instead (`{"labels": ["sad"]`) scores the token `"]`, which a model
    that writes `"]}` or `"],` as one token never produces: on the trained text model that cost ~17 nats per
    candidate and decided the argmax."""
    return json.dumps({"labels": [label]})[: -len('"]}')]


def candidate_probs(logliks) -> np.ndarray:
    """Softmax over candidates of their sequence log-likelihoods."""
    ll = np.asarray(logliks, float)
    ll = ll - ll.max()
    p = np.exp(ll)
    return p / p.sum()


def score_requests(task, suite, built) -> list[Request]:
    out = []
    for item, req, _prompt_id, _inp in built:
        labels = list(item.variables.get("candidates") or suite.candidates(task, item.sample) or [])
        out.append(Request(key=req.key, messages=req.messages, max_new_tokens=1, oracle={**req.oracle,
                           "candidates": labels}, candidates=[candidate_answer(c) for c in labels],
                           candidate_end=LABEL_END))
    return out


def attach_scores(task, suite, backend, built, responses) -> None:
    """Score every built item's candidates and attach `logliks` to its generation response (in place)."""
    try:
        scored = backend.score(score_requests(task, suite, built))
    except ScoringUnsupported as e:
        raise ScoredTaskError(f"task '{task.name}' scores candidate answers by log-likelihood, which needs prompt "
                          f"logprobs: {e}. Serve the model with vLLM's OpenAI server or evaluate it with "
                          "--backend hf") from None
    for resp, sc in zip(responses, scored):
        resp.logliks = sc.logliks
        if sc.error and not resp.error:
            resp.error = f"scoring: {sc.error}"
