"""Drafted greedy decoding (affectllm/draft_decoding.py) must return exactly what transformers' greedy `generate`
returns, whatever the drafts: right drafts are kept, wrong ones cost a pass and are dropped from the cache, an
end-of-sequence token stops it, and anything but plain greedy decoding of one sequence goes to `generate`."""
from __future__ import annotations

import pytest
import torch

from affectllm import draft_decoding as dd
from conftest import build_tiny

GEMMA = {"model_type": "gemma3_text", "vocab_size": 266, "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 2, "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 64,
         "max_position_embeddings": 2048, "sliding_window": 512, "layer_types": ["sliding_attention", "full_attention"],
         "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
TEXTS = ["I waited two hours and nobody called.", "What a lovely surprise!", "ok"]


def test_draft_copies_what_followed_the_longest_earlier_match():
    source = [5, 6, 7, 8, 9, dd.SEPARATOR, 1, 2, 6, 7, 3, 4]
    assert dd.draft(source, [0, 6, 7], 3) == [3, 4]  # the latest occurrence of (6, 7) wins
    assert dd.draft(source, [5, 6, 7], 3) == [8, 9]  # a 3-token match beats it; the separator ends the draft
    assert dd.draft(source, [0, 0, 9], 3) == []  # one matching token is not enough context
    assert dd.draft(source, [6, 7], 0) == []


def test_phrase_numbers_are_slots_that_any_number_in_the_answer_matches():
    chars = lambda text: [ord(c) for c in text]  # noqa: E731  (a one-id-per-character tokenizer)
    slot, sep = dd.NUMBER_SLOT, dd.SEPARATOR
    src = dd.phrase_source(["pitch 200 Hz wide", "-40.5 dB"], chars)
    assert src.tokens == tuple(chars("pitch ") + [slot] + chars(" Hz wide") + [sep] + [slot] + chars(" dB") + [sep])
    assert src.digits == frozenset(chars("0123456789")) and src.points == frozenset(chars(".,"))
    assert src.normalise(chars("a 12.5. b3")) == chars("a ") + [slot] + chars(". b") + [slot]
    assert src.draft(chars("pitch 3"), 5) == src.draft(chars("pitch 31."), 5) == []  # the number may go on
    assert src.draft(chars("tch 31 H"), 5) == chars("z wid")  # after the number: the phrase goes on
    assert src.draft(chars("h 31.75 H"), 5) == chars("z wid")  # any number matches the slot
    assert src.draft(chars("e Hz wi"), 5) == chars("de")  # a phrase's end stops a draft
    assert dd.phrase_source(["tone 440 ok"], chars).draft(chars("tone"), 5) == chars(" ")  # a slot ends a draft
    text = "pitch 225 Hz wide"
    answer = chars(text)
    drafted = sum(len(src.draft(answer[:i], 5)) > 0 for i in range(1, len(answer)))
    assert drafted >= len(" Hz wide") - 2  # the words after the number offered, digits never
    assert all(t not in src.digits for i in range(1, len(answer)) for t in src.draft(answer[:i], 5))


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def pipe(request):
    torch.manual_seed(0)
    p = build_tiny(text_config=GEMMA) if request.param == "gemma3" else build_tiny()
    if request.param == "llama":  # larger random weights: answers that wander instead of repeating one token
        with torch.no_grad():  # (the tiny Gemma repeats one token whatever the scale; it checks the sliding cache)
            for w in p.model.language_model.parameters():
                if w.dim() == 2:
                    w.normal_(0.0, 0.3)
    p.model.eval()
    return p


def _source(runs):
    """A draft source straight from token-id runs (phrase_source takes text)."""
    return dd.PhraseSource(tuple(t for run in runs for t in list(run) + [dd.SEPARATOR]))


def _batch(pipe, text):
    messages, _ = pipe.build_messages(text=text)
    return pipe.processor([messages])


def _plain(pipe, batch, **kw):
    return pipe.model.generate(**batch, max_new_tokens=kw.pop("max_new_tokens", 40), **kw)[0].tolist()


@pytest.mark.parametrize("text", TEXTS)
def test_same_tokens_as_generate_whatever_the_drafts(pipe, text):
    batch = _batch(pipe, text)
    want = _plain(pipe, batch)
    lm = pipe.model.language_model
    embeds = pipe.model.build_inputs_embeds(batch["input_ids"])
    good = _source([want[3:20]])  # the answer itself: long runs of right drafts
    bad = _source([[t + 1 for t in want], list(range(3, 60))])  # contexts that match, continuations that don't
    slotted = dd.PhraseSource(tuple(want[3:8]) + (dd.NUMBER_SLOT,) + tuple(want[9:20]) + (dd.SEPARATOR,),
                              digits=frozenset({want[8]}))  # the answer's 9th token plays a number
    for phrases in (good, bad, slotted, dd.PhraseSource(())):
        stats: dict = {}
        got = dd.draft_greedy(lm, embeds, batch["attention_mask"], batch["input_ids"], phrases, stats,
                              max_new_tokens=40)
        assert got[0].tolist() == want
        assert stats["tokens"] == len(want) and stats["passes"] <= len(want)
    stats = {}
    dd.draft_greedy(lm, embeds, batch["attention_mask"], batch["input_ids"], good, stats, max_new_tokens=40)
    assert stats["accepted"] >= 10 and stats["passes"] < len(want) - 8  # the right drafts saved passes


def test_stops_at_an_end_token_drafted_or_not(pipe):
    batch = _batch(pipe, TEXTS[0])
    free = _plain(pipe, batch)
    stop_at = max(set(free), key=free.index)  # the token the answer reaches last for the first time
    assert free.index(stop_at) >= 1
    want = _plain(pipe, batch, eos_token_id=stop_at)
    assert want[-1] == stop_at and len(want) < len(free)
    lm, embeds = pipe.model.language_model, pipe.model.build_inputs_embeds(batch["input_ids"])
    for phrases in (_source([free]), dd.PhraseSource(())):  # the end token drafted as part of a run, or never drafted
        got = dd.draft_greedy(lm, embeds, batch["attention_mask"], batch["input_ids"], phrases,
                              max_new_tokens=40, eos_token_id=stop_at)
        assert got[0].tolist() == want
    short = dd.draft_greedy(lm, embeds, batch["attention_mask"], batch["input_ids"], _source([free]),
                            max_new_tokens=7)
    assert short[0].tolist() == free[:7]


def test_model_generate_uses_drafts_only_for_plain_greedy_calls(pipe, monkeypatch):
    batch = _batch(pipe, TEXTS[1])
    calls = []
    real = dd.draft_greedy
    monkeypatch.setattr(dd, "draft_greedy", lambda *a, **k: calls.append(1) or real(*a, **k))
    phrases = _source([[5, 6, 7]])
    assert _plain(pipe, batch, draft_phrases=phrases) == _plain(pipe, batch) and len(calls) == 1
    _plain(pipe, batch, draft_phrases=phrases, do_sample=True, temperature=0.7)  # sampling
    _plain(pipe, batch, draft_phrases=phrases, repetition_penalty=1.3)  # changes the argmax
    _plain(pipe, batch, draft_phrases=phrases, max_new_tokens=240)  # past the gemma window (llama: no window)
    two = pipe.processor([pipe.build_messages(text=t)[0] for t in TEXTS[:2]])
    pipe.model.generate(**two, max_new_tokens=4, draft_phrases=phrases)  # a padded batch of two
    window = getattr(pipe.model.language_model.config, "sliding_window", None)
    assert len(calls) == (2 if window is None else 1)
    lm, embeds = pipe.model.language_model, pipe.model.build_inputs_embeds(batch["input_ids"])
    assert not dd.applicable(lm, embeds, None, {"max_new_tokens": 8, "output_scores": True})
    assert not dd.applicable(lm, embeds, None, {"max_new_tokens": 8, "num_beams": 2})
    assert dd.applicable(lm, embeds, None, {"max_new_tokens": 8, "do_sample": False, "temperature": None})


def test_pipeline_chat_drafts_from_the_training_templates(pipe):
    from affectllm.data.targets import template_phrases

    phrases = pipe.draft_phrases()
    assert pipe.draft_phrases() is phrases and phrases.tokens.count(dd.SEPARATOR) == len(template_phrases())
    assert phrases.tokens.count(dd.NUMBER_SLOT) > 5  # the prosody numbers, one slot each
    text = pipe.processor.tokenizer.decode([t for t in phrases.tokens if t >= 0])
    assert "Measured prosody: pitch averages" in text and not any(ch.isdigit() for ch in text)
    plain = pipe.generate([pipe.build_messages(text=TEXTS[0])[0]], max_new_tokens=24, draft_phrases=None)
    assert pipe.generate([pipe.build_messages(text=TEXTS[0])[0]], max_new_tokens=24) == plain
