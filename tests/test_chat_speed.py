"""What makes a one-shot `affectllm chat` faster must not change what it computes: the embedded LLMs' tokenizer read
straight from tokenizer.json equals AutoTokenizer's, and the float16 decoding head stays within float16 rounding of
the float32 one, is used only inside `generate`, never where gradients flow, and is rebuilt when the weights change."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from affectllm import decode_head
from affectllm.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = ["Hello <start_of_turn>user\nI waited two hours 😀 naïve<end_of_turn>\n", "  leading spaces\n\n\ttabs  ",
         "<bos>already there<eos>", "中文 测试, ünïcödé", "<|im_start|>user\nhi<|im_end|>", ""]


def _folder(ref: str):
    from affectllm.errors import WeightsNotFoundError
    from affectllm.presets import _local_dir

    try:
        return _local_dir(ref, "tokenizer")
    except WeightsNotFoundError as e:  # SmolLM2 is an optional install (--no-deps), like tests/test_smollm2.py
        pytest.skip(f"{ref}: {e}")


@pytest.mark.parametrize("ref", ["weights:gemma-3-270m", "weights:smollm2-135m"])
def test_embedded_tokenizer_from_json_equals_autotokenizer(ref):
    from transformers import AutoTokenizer

    from affectllm.presets import load_tokenizer

    folder = _folder(ref)
    fast, auto = load_tokenizer({"tokenizer": ref}), AutoTokenizer.from_pretrained(folder)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "padding_side", "truncation_side",
                 "model_max_length", "all_special_ids", "chat_template", "added_tokens_encoder"):
        assert getattr(fast, attr) == getattr(auto, attr), attr
    assert len(fast) == len(auto)
    for text in TEXTS:
        ids = auto(text)["input_ids"]
        assert fast(text)["input_ids"] == ids, text
        assert fast.decode(ids) == auto.decode(ids)
        assert fast.decode(ids, skip_special_tokens=True) == auto.decode(ids, skip_special_tokens=True)
    conv = [{"role": "user", "content": "How do you feel?"}, {"role": "assistant", "content": "Fine."}]
    assert fast.apply_chat_template(conv, tokenize=False) == auto.apply_chat_template(conv, tokenize=False)


# ---- the float16 decoding head ---------------------------------------------------------------------------------
class TinyLM(nn.Module):
    """Just enough of a causal LM for `decoding_head`: an output embedding to read."""

    def __init__(self, vocab: int = 4096, hidden: int = 64):
        super().__init__()
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        with torch.no_grad():  # bf16-representable weights, as Gemma ships them
            self.lm_head.weight.copy_((torch.randn(vocab, hidden) * 0.05).bfloat16().float())

    def get_output_embeddings(self):
        return self.lm_head


@pytest.fixture
def small_vocab(monkeypatch, tmp_path):
    monkeypatch.setattr(decode_head, "MIN_VOCAB", 1024)
    monkeypatch.setattr(decode_head, "_memo", {})
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_forced_float16_head_is_close_to_float32_and_restored_after(small_vocab, monkeypatch):
    monkeypatch.setenv(decode_head.ENV_OVERRIDE, "float16")
    lm, x = TinyLM(), torch.randn(3, 64)
    with torch.no_grad():
        ref = lm.lm_head(x)
        with decode_head.decoding_head(lm) as used:
            half = lm.lm_head(x)
        after = lm.lm_head(x)
    assert used == "float16" and half.dtype == torch.float32
    assert not torch.equal(half, ref)  # it really took the float16 path ...
    torch.testing.assert_close(half, ref, atol=2e-3, rtol=2e-3)  # ... within float16 rounding
    assert torch.equal(after, ref) and "forward" not in lm.lm_head.__dict__
    many = torch.randn(decode_head.MAX_ROWS + 1, 64)  # a prefill-sized product stays in float32
    with torch.no_grad(), decode_head.decoding_head(lm):
        assert torch.equal(lm.lm_head(many), many @ lm.lm_head.weight.T)


def test_gradients_and_float32_choice_pass_through(small_vocab, monkeypatch):
    lm, x = TinyLM(), torch.randn(2, 64)
    monkeypatch.setenv(decode_head.ENV_OVERRIDE, "float16")
    with decode_head.decoding_head(lm):
        out = lm.lm_head(x)  # grad enabled: the float32 weight, so training and losses are untouched
    assert torch.equal(out, lm.lm_head(x)) and out.requires_grad
    monkeypatch.setenv(decode_head.ENV_OVERRIDE, "float32")
    with torch.no_grad(), decode_head.decoding_head(lm) as used:
        assert used == "float32" and torch.equal(lm.lm_head(x), x @ lm.lm_head.weight.T)
    monkeypatch.setenv(decode_head.ENV_OVERRIDE, "half")
    with pytest.raises(ConfigError, match="float32, float16"):
        decode_head.choose(lm.lm_head)


def test_small_heads_and_bf16_models_never_copy(monkeypatch, tmp_path):
    monkeypatch.setenv(decode_head.ENV_OVERRIDE, "float16")
    small = TinyLM(vocab=512)  # under MIN_VOCAB
    bf16 = TinyLM().to(torch.bfloat16)
    for lm in (small, bf16):
        with torch.no_grad(), decode_head.decoding_head(lm) as used:
            assert used == "float32"
        assert "_affect_fp16" not in lm.lm_head.__dict__


def test_copy_follows_weight_changes(small_vocab, monkeypatch):
    monkeypatch.setenv(decode_head.ENV_OVERRIDE, "float16")
    lm, x = TinyLM(), torch.randn(1, 64)
    with torch.no_grad():
        with decode_head.decoding_head(lm):
            before = lm.lm_head(x)
        lm.lm_head.weight.mul_(2.0)  # e.g. a LoRA merge or an optimizer step in place
        with decode_head.decoding_head(lm):
            after = lm.lm_head(x)
    torch.testing.assert_close(after, 2 * before, atol=2e-3, rtol=2e-3)


def test_choice_is_measured_once_and_cached(small_vocab, monkeypatch):
    monkeypatch.delenv(decode_head.ENV_OVERRIDE, raising=False)
    calls = []
    real = decode_head._time_head

    def timed(head, w16, rounds=3):
        calls.append(1)
        return real(head, w16, rounds)

    monkeypatch.setattr(decode_head, "_time_head", timed)
    lm = TinyLM()
    first = decode_head.choose(lm.lm_head)
    records = {k: v for k, v in json.loads((small_vocab / "dtype_auto.json").read_text()).items()
               if k.startswith("decode_head|")}
    assert len(records) == 1 and next(iter(records.values()))["choice"] == first
    monkeypatch.setattr(decode_head, "_memo", {})  # a new process: read from the cache, no timing
    assert decode_head.choose(lm.lm_head) == first and len(calls) == 1
