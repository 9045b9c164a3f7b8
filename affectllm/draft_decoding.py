"""Greedy decoding that checks several drafted tokens per forward pass; the drafts are n-grams copied from the
prompt, the answer so far and phrases the model was trained to write (`affectllm.data.targets.template_phrases`).

Why: on a CPU a small LLM decodes at the speed of its weight reads (see decode_half), and a forward pass over a few
positions reads the weights once, like one position. The answers are template-heavy ("Evidence: audio (prosody).
Measured prosody: pitch averages ... Hz with a spread of ..."; the quoted input text), so the tokens that followed
the last few tokens where they occurred before are often the next ones. One pass over [last token, draft] scores
every position; the longest prefix of the draft that equals the model's own argmax is kept, plus the model's token
after it, and the cache drops the rest. The text is greedy decoding's: drafts change the speed, never the choice
(up to float rounding between products of one and of several rows).

`AffectForConditionalGeneration.generate` uses it when the caller passes `draft_phrases` (AffectPipeline, i.e.
`affectllm chat`) and the call is plain greedy decoding of one sequence that fits the LLM's sliding window; any
other call (sampling, batches, logits processors, scores) goes to transformers' `generate` unchanged."""
from __future__ import annotations

import copy
import inspect
import re
from typing import Any, Callable, Sequence

import torch
from torch import nn

DRAFT_TOKENS = 5  # drafted tokens per pass: 1.38x vs 1.31x with 3 on 9 eval answers (bench_draft_decoding.py)
NGRAM = (3, 2)  # longest then shortest context that must match before a draft is copied
SEPARATOR = -1  # between phrases in the draft source: a draft never runs across it
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


def phrase_source(phrases: Sequence[str], encode: Callable[[str], list[int]]) -> list[int]:
    """The fixed part of the draft source: `phrases` tokenised by `encode`, joined by SEPARATOR, and cut at every
    number (a template's numbers are placeholders: a drafted digit is almost always wrong, and each wrong draft
    costs a wider pass)."""
    out: list[int] = []
    for phrase in phrases:
        for piece in NUMBER.split(phrase):
            if piece.strip():
                out += list(encode(piece)) + [SEPARATOR]
    return out


def _eos_ids(lm: nn.Module, kwargs: dict[str, Any]) -> set[int]:
    eos = kwargs.get("eos_token_id", lm.generation_config.eos_token_id)
    return set() if eos is None else {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


@torch.no_grad()
def draft_greedy(lm: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                 prompt_ids: torch.Tensor, phrases: Sequence[int], stats: dict | None = None,
                 **kwargs: Any) -> torch.Tensor:
    """Greedy continuation of one prompt ([1, new] token ids, the end-of-sequence token included when reached), as
    `lm.generate` would return it; `phrases` from `phrase_source`. `stats`, when given, receives the number of
    forward passes and of drafted and accepted tokens."""
    max_new, eos = int(kwargs["max_new_tokens"]), _eos_ids(lm, kwargs)
    out = lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=True, logits_to_keep=1)
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    # transformers >= 5.2x names the argument `cache` (`past_key_values` still works there, with a warning)
    cache_arg = "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"
    new = [int(out.logits[0, -1].argmax())]
    prompt, passes, drafted, accepted = [int(t) for t in prompt_ids[0]], 1, 0, 0
    fixed = list(phrases) + prompt + [SEPARATOR]  # the draft source before the answer: built once
    while new[-1] not in eos and len(new) < max_new:
        guess = draft(fixed + new, prompt + new, min(DRAFT_TOKENS, max_new - len(new) - 1))
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
