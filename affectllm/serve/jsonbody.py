"""Request bodies -> JSON values a handler can trust, or a 400.

Two things `json.loads` lets through crash code further on: nesting (deep enough, the C decoder itself raises
RecursionError; less deep, pydantic, the JSON encoder towards vLLM or a schema compiler do) and lone UTF-16
surrogates (`"\\ud800"` decodes to a str that cannot be encoded as UTF-8: the tokenizer raises TypeError, and an
error message quoting it cannot be sent). Depth is bounded here, iteratively, and every lone surrogate in a key or
a string is replaced by U+FFFD, as a UTF-8 decoder does with a broken byte sequence."""
from __future__ import annotations

import json
import re
from typing import Any

from .protocol import APIError

_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins valid pairs, so any left here is a lone one


def _clean(s: str) -> str:
    return _SURROGATE.sub("\ufffd", s) if _SURROGATE.search(s) else s


def _too_deep(max_depth: int) -> APIError:
    return APIError(400, f"the JSON body nests deeper than this server's limit ({max_depth} levels)",
                    code="json_too_deep")


def sanitize(value: Any, max_depth: int) -> Any:
    """`value` with lone surrogates replaced; APIError(400) when containers nest deeper than `max_depth`."""
    if isinstance(value, str):
        return _clean(value)
    if not isinstance(value, (dict, list)):
        return value
    root: list = [value]
    stack = [(root, 0, value, 1)]  # (parent, index or key in parent, container, its depth)
    while stack:
        parent, slot, node, depth = stack.pop()
        if depth > max_depth:
            raise _too_deep(max_depth)
        if isinstance(node, dict):
            if any(_SURROGATE.search(k) for k in node):
                node = {_clean(k): v for k, v in node.items()}
                parent[slot] = node
            items = node.items()
        else:
            items = enumerate(node)
        for key, child in list(items):
            if isinstance(child, str):
                node[key] = _clean(child)
            elif isinstance(child, (dict, list)):
                stack.append((node, key, child, depth + 1))
    return root[0]


def loads(raw: bytes, max_depth: int) -> Any:
    """Parse a request body: malformed, too deep or not UTF-8 -> APIError(400)."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"malformed JSON body: {e}", code="invalid_json") from None
    except RecursionError:
        raise _too_deep(max_depth) from None
    return sanitize(value, max_depth)
