"""What makes a one-shot `affectllm chat` faster must not change what it computes: the embedded LLMs' tokenizer read
straight from tokenizer.json equals AutoTokenizer's, and decoding from float16 copies (head and body) stays within
float16 rounding of float32, falls back to float32 where float16 overflows, is used only inside `generate`, never where
gradients flow, and follows weight changes."""
from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from affectllm import decode_half
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
    from affectllm.presets import TEXT_MERGES_FILE

    assert (folder / TEXT_MERGES_FILE).exists()  # what was compared is the copy with text merges


def test_text_merges_copy_only_where_lossless(tmp_path):
    from tokenizers import Tokenizer, models

    from affectllm.presets import TEXT_MERGES_FILE, _text_merges_file

    vocab = {"a": 0, "b": 1, "ab": 2, "abab": 3, " ": 4, "a ": 5}
    plain = tmp_path / "plain"
    plain.mkdir()
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("ab", "ab")]))
    tok.save(str(plain / "tokenizer.json"))
    fast = _text_merges_file(plain)
    assert fast == plain / TEXT_MERGES_FILE and _text_merges_file(plain) == fast  # written once, then reused
    for text in ("abab", "ab a b", "ba"):
        assert Tokenizer.from_file(str(fast)).encode(text).ids == tok.encode(text).ids
    spaced = tmp_path / "spaced"  # a merge holding a space would split wrongly as text: the original is kept
    spaced.mkdir()
    Tokenizer(models.BPE(vocab=vocab, merges=[("a", " ")])).save(str(spaced / "tokenizer.json"))
    assert _text_merges_file(spaced) == spaced / "tokenizer.json" and not (spaced / TEXT_MERGES_FILE).exists()


# ---- decoding from float16 copies ------------------------------------------------------------------------------
class TinyLM(nn.Module):
    """Just enough of a causal LM for `decoding_in_half`: two body projections, a small LoRA-sized matrix and an
    output embedding."""

    def __init__(self, vocab: int = 4096, hidden: int = 64, inner: int = 128):
        super().__init__()
        self.up, self.down = nn.Linear(hidden, inner, bias=True), nn.Linear(inner, hidden, bias=False)
        self.lora_a = nn.Linear(hidden, 4, bias=False)  # under MIN_BODY_WEIGHTS: never copied
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        with torch.no_grad():  # bf16-representable weights, as Gemma ships them
            for m in (self.up, self.down, self.lora_a, self.lm_head):
                m.weight.copy_((torch.randn_like(m.weight) * 0.05).bfloat16().float())

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, x):
        return self.lm_head(self.down(torch.relu(self.up(x))) + self.lora_a(x).sum(-1, keepdim=True))


@pytest.fixture
def small_model(monkeypatch, tmp_path):
    monkeypatch.setattr(decode_half, "MIN_VOCAB", 1024)
    monkeypatch.setattr(decode_half, "MIN_BODY_WEIGHTS", 4096)
    monkeypatch.setattr(decode_half, "_memo", {})
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_forced_half_is_close_to_float32_and_restored_after(small_model, monkeypatch):
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "all")
    lm, x = TinyLM(), torch.randn(3, 64)
    assert decode_half.body_of(lm) == [lm.up, lm.down]  # the head and the small matrix are not body
    with torch.no_grad():
        ref = lm(x)
        with decode_half.decoding_in_half(lm) as used:
            half, half_up = lm(x), lm.up(x)
        after = lm(x)
    assert used == ("head", "body") and half.dtype == torch.float32
    assert not torch.equal(half, ref) and not torch.equal(half_up, lm.up(x))  # really the float16 path ...
    torch.testing.assert_close(half, ref, atol=3e-3, rtol=3e-3)  # ... within float16 rounding
    assert torch.equal(after, ref) and all("forward" not in m.__dict__ for m in (lm.up, lm.down, lm.lm_head))
    many = torch.randn(decode_half.MAX_ROWS + 1, 64)  # a prefill-sized product stays in float32
    with torch.no_grad(), decode_half.decoding_in_half(lm):
        assert torch.equal(lm.lm_head(many), many @ lm.lm_head.weight.T)
        assert torch.equal(lm.up(many), torch.nn.functional.linear(many, lm.up.weight, lm.up.bias))
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "head")
    with torch.no_grad(), decode_half.decoding_in_half(lm) as used:
        assert used == ("head",) and torch.equal(lm.up(x), torch.nn.functional.linear(x, lm.up.weight, lm.up.bias))


def test_float16_overflow_is_recomputed_in_float32(small_model, monkeypatch):
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "all")
    lm = TinyLM()
    big = torch.full((1, 128), 20000.0)  # fits float16, but 128 x 20000 x 0.05 = 128000 is past its 65504
    with torch.no_grad():
        lm.down.weight.fill_(0.05)
        ref = lm.down(big)
        with decode_half.decoding_in_half(lm):
            out = lm.down(big)
    assert torch.isfinite(out).all() and torch.equal(out, ref)


def test_gradients_and_float32_choice_pass_through(small_model, monkeypatch):
    lm, x = TinyLM(), torch.randn(2, 64)
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "all")
    with decode_half.decoding_in_half(lm):
        out = lm(x)  # grad enabled: the float32 weights, so training and losses are untouched
    assert torch.equal(out, lm(x)) and out.requires_grad
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "none")
    with torch.no_grad(), decode_half.decoding_in_half(lm) as used:
        assert used == () and torch.equal(lm.lm_head(x), x @ lm.lm_head.weight.T)
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "float16")
    with pytest.raises(ConfigError, match="none, head, body, all"):
        decode_half.choose(lm)


def test_small_and_bf16_models_never_copy(monkeypatch, tmp_path):
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "all")
    small = TinyLM(vocab=512, inner=16)  # under MIN_VOCAB and MIN_BODY_WEIGHTS
    bf16 = TinyLM().to(torch.bfloat16)
    for lm in (small, bf16):
        with torch.no_grad(), decode_half.decoding_in_half(lm) as used:
            assert used == ()
        assert all("_affect_fp16" not in m.__dict__ for m in lm.modules())


def test_copy_follows_weight_changes(small_model, monkeypatch):
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "all")
    lm, x = TinyLM(), torch.randn(1, 64)
    with torch.no_grad():
        with decode_half.decoding_in_half(lm):
            before = lm.lm_head(x), lm.down(torch.relu(lm.up(x)))
        lm.lm_head.weight.mul_(2.0)  # e.g. a LoRA merge or an optimizer step in place
        lm.down.weight.mul_(2.0)
        with decode_half.decoding_in_half(lm):
            after = lm.lm_head(x), lm.down(torch.relu(lm.up(x)))
    for b, a in zip(before, after):
        torch.testing.assert_close(a, 2 * b, atol=2e-3, rtol=2e-3)


def test_choice_is_measured_once_per_part_and_cached(small_model, monkeypatch):
    monkeypatch.delenv(decode_half.ENV_OVERRIDE, raising=False)
    calls = []
    real = decode_half._time_pass

    def timed(modules, rounds=3):
        calls.append(len(modules))
        return real(modules, rounds)

    monkeypatch.setattr(decode_half, "_time_pass", timed)
    lm = TinyLM()
    first = decode_half.choose(lm)
    records = {k: v for k, v in json.loads((small_model / "dtype_auto.json").read_text()).items()
               if k.startswith("decode_")}
    assert sorted(calls) == [1, 2] and len(records) == 2  # the head, then the body's two matrices in one pass
    assert first == tuple(p for p in ("head", "body")
                          if next(v for k, v in records.items() if k.startswith(f"decode_{p}|"))["choice"] == "float16")
    monkeypatch.setattr(decode_half, "_memo", {})  # a new process: read from the cache, no timing
    assert decode_half.choose(lm) == first and len(calls) == 2


def test_a_few_rows_use_the_skinny_float32_product(small_model, monkeypatch):
    monkeypatch.setenv(decode_half.ENV_OVERRIDE, "all")
    lm, x = TinyLM(), torch.randn(2, 3, 64)  # 6 rows: more than HALF_ROWS, at most MAX_ROWS (drafts checked at once)
    calls = []
    real = decode_half._skinny_product
    monkeypatch.setattr(decode_half, "_skinny_product", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        ref = torch.nn.functional.linear(x, lm.up.weight, lm.up.bias)
        with decode_half.decoding_in_half(lm):
            out = lm.up(x)
    assert len(calls) == 1 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)  # float32 both ways: only the summation order differs
