"""Greedy decoding that checks several drafted tokens per forward pass; the drafts are n-grams copied from the
prompt, the answer so far and phrases the model was trained to write (`affectllm.data.targets.template_phrases`).

Why: on a CPU a small LLM decodes at the speed of its weight reads (see decode_half), and a forward pass over a few
positions reads the weights once, like one position. The answers are template-heavy ("Evidence: audio (prosody).
Measured prosody: pitch averages ... Hz with a spread of ..."; the quoted input text), so the tokens that followed
the last few tokens where they occurred before are often the next ones. One pass over [last token, draft] scores
every position; the longest prefix of the draft that equals the model's own argmax is kept, plus the model's token
after it, and the cache drops the rest. The text is greedy decoding's: drafts change the speed, never the choice
(up to float rounding between products of one and of several rows).

A template's numbers are placeholders ("pitch averages 225 Hz"): the phrases keep a NUMBER_SLOT where a number
stood, and the answer's digits (a run of digit tokens, points between them) match it, so the wording after a
number is drafted as soon as the word after the number is written (46 -> 41 passes for a RAVDESS answer). A digit
itself is never drafted from the phrases.

`AffectForConditionalGeneration.generate` uses it when the caller passes `draft_phrases` (AffectPipeline, i.e.
`affectllm chat`) and the call is plain greedy decoding of one sequence that fits the LLM's sliding window; any
other call (sampling, batches, logits processors, scores) goes to transformers' `generate` unchanged."""
from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

DRAFT_TOKENS = 5  # drafted tokens per pass: 1.38x vs 1.31x with 3 on 9 eval answers (bench_draft_decoding.py)
NGRAM = (3, 2)  # longest then shortest context that must match before a draft is copied
SEPARATOR = -1  # between phrases in the draft source: a draft never runs across it
NUMBER_SLOT = -2  # where a template phrase had a number: matches any number in the answer, never drafted
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# Keys a plain greedy call may carry; anything else (streamer, logits_processor, output_scores ...) falls back.
PLAIN_KEYS = {"max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "pad_token_id", "eos_token_id",
              "num_beams", "num_return_sequences"}
# Generation-config fields that change which token greedy decoding picks, with their neutral values.
NEUTRAL = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
           "min_length": (None, 0), "min_new_tokens": (None, 0), "forced_bos_token_id": (None,),
           "forced_eos_token_id": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
           "sequence_bias": (None,), "exponential_decay_length_penalty": (None,), "stop_strings": (None,),
           "guidance_scale": (None, 1.0), "max_time": (None,), "do_sample": (None, False), "num_beams": (None, 1),
           "num_return_sequences": (None, 1)}


def applicable(lm: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
               kwargs: dict[str, Any]) -> bool:
    """Whether `draft_greedy` gives exactly what `lm.generate(inputs_embeds=..., **kwargs)` would: one unpadded
    sequence, greedy, no processor that changes the argmax, and a length the cache can crop (inside the window)."""
    if inputs_embeds.shape[0] != 1 or set(kwargs) - PLAIN_KEYS or "max_new_tokens" not in kwargs:
        return False
    if attention_mask is not None and not bool(attention_mask.all()):
        return False
    cfg = copy.deepcopy(lm.generation_config)
    cfg.update(**{k: v for k, v in kwargs.items() if k not in ("pad_token_id",)})
    if any(getattr(cfg, key, None) not in neutral for key, neutral in NEUTRAL.items()):
        return False
    window = getattr(lm.config.get_text_config(), "sliding_window", None)
    return window is None or inputs_embeds.shape[1] + int(kwargs["max_new_tokens"]) < window


def draft(source: Sequence[int], history: Sequence[int], k: int) -> list[int]:
    """Up to k tokens that followed the latest earlier occurrence of history's last n tokens in `source` (n from
    NGRAM[0] down to NGRAM[1]); [] when none matches."""
    for n in range(NGRAM[0], NGRAM[1] - 1, -1):
        if len(history) < n:
            continue
        tail = list(history[-n:])
        for start in range(len(source) - n - 1, -1, -1):
            if list(source[start:start + n]) == tail:
                follow = list(source[start + n:start + n + k])
                if SEPARATOR in follow:
                    follow = follow[:follow.index(SEPARATOR)]
                if follow:
                    return follow
    return []


@dataclass(frozen=True)
class PhraseSource:
    """The fixed part of the draft source: template phrases as token ids, joined by SEPARATOR, a NUMBER_SLOT where
    each number stood; `digits`/`points`: the token ids that write a number (what matches a slot)."""

    tokens: tuple[int, ...]
    digits: frozenset[int] = frozenset()
    points: frozenset[int] = frozenset()

    def normalise(self, tokens: Sequence[int]) -> list[int]:
        """`tokens` with each number (digit tokens, a point between two digits) as one NUMBER_SLOT."""
        out: list[int] = []
        for i, t in enumerate(tokens):
            inside = t in self.digits or (t in self.points and out[-1:] == [NUMBER_SLOT] and i + 1 < len(tokens)
                                          and tokens[i + 1] in self.digits)
            if not inside:
                out.append(t)
            elif out[-1:] != [NUMBER_SLOT]:
                out.append(NUMBER_SLOT)
        return out

    def draft(self, history: Sequence[int], k: int) -> list[int]:
        """What followed `history`'s last words in a phrase, numbers matched as slots, up to the next slot; none
        while `history` ends in a digit or a point (the number may go on: drafting the word after it there saved
        no pass on RAVDESS answers and widened the passes, 1.26x instead of 1.27-1.32x in bench_draft_decoding.py)."""
        if not history or history[-1] in self.digits or history[-1] in self.points:
            return []
        follow = draft(self.tokens, self.normalise(history[-(4 * NGRAM[0] + 8):]), k)
        return follow[:follow.index(NUMBER_SLOT)] if NUMBER_SLOT in follow else follow


def phrase_source(phrases: Sequence[str], encode: Callable[[str], list[int]]) -> PhraseSource:
    """`phrases` tokenised by `encode` as a PhraseSource: a number becomes a NUMBER_SLOT (its digits are
    placeholders: a drafted digit is almost always wrong, and each wrong draft costs a wider pass)."""
    out: list[int] = []
    for phrase in phrases:
        pieces = NUMBER.split(phrase)
        for i, piece in enumerate(pieces):
            out += list(encode(piece)) if piece else []
            if i < len(pieces) - 1:
                out.append(NUMBER_SLOT)
        out.append(SEPARATOR)
    digits = {ids[0] for d in "0123456789" for ids in (encode(d), encode(" " + d)) if len(ids) == 1}
    points = {ids[0] for p in (".", ",") for ids in [encode(p)] if len(ids) == 1}
    return PhraseSource(tuple(out), frozenset(digits), frozenset(points) - digits)


def output_cache(out: Any) -> Any:
    """The KV cache a forward pass returned: `cache` from transformers 5.2x on, `past_key_values` before."""
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def cache_argument(lm: nn.Module) -> str:
    """The forward argument that takes a KV cache: `cache` from transformers 5.2x on (`past_key_values` still works
    there, with a deprecation warning), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _eos_ids(lm: nn.Module, kwargs: dict[str, Any]) -> set[int]:
    eos = kwargs.get("eos_token_id", lm.generation_config.eos_token_id)
    return set() if eos is None else {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


@torch.no_grad()
def draft_greedy(lm: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                 prompt_ids: torch.Tensor, phrases: PhraseSource, stats: dict | None = None,
                 **kwargs: Any) -> torch.Tensor:
    """Greedy continuation of one prompt ([1, new] token ids, the end-of-sequence token included when reached), as
    `lm.generate` would return it; `phrases` from `phrase_source`. Drafts come from the answer so far and the prompt
    first (digits included: a quoted number is copied), then from the phrases. `stats`, when given, receives the
    number of forward passes and of drafted and accepted tokens."""
    max_new, eos = int(kwargs["max_new_tokens"]), _eos_ids(lm, kwargs)
    out = lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=True, logits_to_keep=1)
    cache, cache_arg = output_cache(out), cache_argument(lm)
    new = [int(out.logits[0, -1].argmax())]
    prompt, passes, drafted, accepted = [int(t) for t in prompt_ids[0]], 1, 0, 0
    fixed = prompt + [SEPARATOR]  # the draft source before the answer: built once
    while new[-1] not in eos and len(new) < max_new:
        k, history = min(DRAFT_TOKENS, max_new - len(new) - 1), prompt + new
        guess = draft(fixed + new, history, k) or phrases.draft(history, k)
        chunk = torch.tensor([[new[-1]] + guess], device=inputs_embeds.device)
        logits = lm(input_ids=chunk, use_cache=True, **{cache_arg: cache}).logits[0]
        choice = logits.argmax(-1).tolist()
        keep = 0
        while keep < len(guess) and choice[keep] == guess[keep] and guess[keep] not in eos:
            keep += 1
        if keep < len(guess) and guess[keep] in eos and choice[keep] == guess[keep]:
            keep += 1  # the drafted end-of-sequence token is the model's own choice: keep it and stop
            new += guess[:keep]
        else:
            new += guess[:keep] + [choice[keep]]
        if len(guess) - keep:
            cache.crop(-(len(guess) - keep))
        passes, drafted, accepted = passes + 1, drafted + len(guess), accepted + keep
        stop = next((i for i, t in enumerate(new) if t in eos), None)
        if stop is not None:
            new = new[:stop + 1]
    if stats is not None:
        stats.update(passes=passes, drafted=drafted, accepted=accepted, tokens=len(new))
    return torch.tensor([new[:max_new]], device=inputs_embeds.device)
