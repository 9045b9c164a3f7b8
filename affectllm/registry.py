"""One small lazy registry: name -> object, or name -> "module:attr" imported on first use.
Unknown names raise ConfigError with a did-you-mean suggestion."""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Iterator

from .errors import ConfigError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Callable[[Any], Any] | Any:
        """Use as ``@reg.register("name")`` or ``reg.register("name", obj_or_"module:attr")``."""
        if obj is not None:
            self._items[name] = obj
            return obj

        def deco(fn: Any) -> Any:
            self._items[name] = fn
            return fn

        return deco

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise ConfigError(unknown_name_message(self.kind, name, self._items))
        obj = self._items[name]
        if isinstance(obj, str) and ":" in obj:
            module, attr = obj.split(":", 1)
            obj = getattr(importlib.import_module(module), attr)
            self._items[name] = obj
        return obj

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(kind: str, name: str, known) -> str:
    """'unknown projector 'mlp2x' (did you mean 'mlp2x_gelu'?); known: ...'"""
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}; known: {', '.join(known) or '(none)'}"
