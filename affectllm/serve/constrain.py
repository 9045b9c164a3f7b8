"""JSON-constrained decoding for the in-process transformers backend, with lm-format-enforcer's token enforcer
(the vLLM backend uses vLLM's own structured outputs). Only the library's core is used: its transformers
integration imports modules transformers 5 no longer has. The per-tokenizer vocabulary table is built once
(seconds for a 262k-token vocabulary) and cached."""
from __future__ import annotations

import threading
from collections.abc import Callable

_CACHE: dict[int, object] = {}
_LOCK = threading.Lock()


def available() -> bool:
    try:
        import lmformatenforcer  # noqa: F401
    except ImportError:
        return False
    return True


def _tokenizer_data(tokenizer, eos_ids: list[int], vocab_size: int):
    from lmformatenforcer import TokenEnforcerTokenizerData

    with _LOCK:
        key = id(tokenizer)
        if key not in _CACHE:
            special = set(tokenizer.all_special_ids)
            zero = tokenizer.encode("0", add_special_tokens=False)[-1]
            regular = []
            for i in range(min(vocab_size, len(tokenizer))):
                if i in special:
                    continue
                after_zero = tokenizer.decode([zero, i])[1:]
                alone = tokenizer.decode([i])
                regular.append((i, after_zero, len(after_zero) > len(alone)))

            def decode(ids: list[int]) -> str:
                return tokenizer.decode(ids).rstrip("\ufffd")

            _CACHE[key] = TokenEnforcerTokenizerData(regular, decode, eos_ids, False, vocab_size)
        return _CACHE[key]


def prefix_allowed_tokens_fn(tokenizer, response_format: dict, eos_ids: list[int],
                             vocab_size: int) -> Callable[[int, object], list[int]]:
    """For `generate(prefix_allowed_tokens_fn=...)` when the prompt is passed as inputs_embeds (so `sent` holds only
    the generated tokens)."""
    from lmformatenforcer import JsonSchemaParser, TokenEnforcer

    schema = (response_format.get("json_schema") or {}).get("schema") if response_format["type"] == "json_schema" \
        else {"type": "object"}  # json_object: any JSON object
    enforcer = TokenEnforcer(_tokenizer_data(tokenizer, eos_ids, vocab_size), JsonSchemaParser(schema))

    def allowed(batch_id: int, sent) -> list[int]:
        return enforcer.get_allowed_tokens(sent.tolist()).allowed_tokens

    return allowed
