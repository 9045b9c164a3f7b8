"""Render prompts/*.jinja by name: strict undefined (a missing variable is an error, not an empty string) and a
version read from each file's header, so every output can record which prompt text produced it."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
import jinja2.meta

from .errors import ConfigError
from .registry import unknown_name_message

_VERSION = re.compile(r"version:\s*([\w.\-]+)")


def prompt_dir() -> Path:
    """$AFFECTLLM_PROMPTS, else the repository's prompts/ folder."""
    env = os.environ.get("AFFECTLLM_PROMPTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "prompts"


def list_prompts(prefix: str = "") -> list[str]:
    """Prompt names (posix paths under prompt_dir() without .jinja, e.g. "emotion_ov", "train/ov_1") that start with
    `prefix`: list_prompts("train/") is the training paraphrase family, list_prompts("train/mcq_") one format of it."""
    names = (p.relative_to(prompt_dir()).with_suffix("").as_posix() for p in prompt_dir().rglob("*.jinja"))
    return sorted(n for n in names if n.startswith(prefix))


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    template: jinja2.Template
    variables: frozenset[str]

    def render(self, **variables) -> str:
        try:
            return self.template.render(**variables).strip()
        except jinja2.UndefinedError as e:
            raise ConfigError(f"prompt '{self.name}' v{self.version}: {e.message}") from e

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


@lru_cache(maxsize=None)
def _load(directory: str, name: str) -> Prompt:
    path = Path(directory) / f"{name}.jinja"
    if not path.is_file():
        raise ConfigError(unknown_name_message("prompt", name, list_prompts()))
    source = path.read_text(encoding="utf-8")
    match = _VERSION.search(source.split("#}", 1)[0]) if source.startswith("{#") else None
    if match is None:
        raise ConfigError(f"prompt '{name}' ({path}) has no '{{# version: N ... #}}' header")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
    variables = frozenset(jinja2.meta.find_undeclared_variables(env.parse(source)))
    return Prompt(name, match.group(1), env.from_string(source), variables)


def get_prompt(name: str) -> Prompt:
    return _load(str(prompt_dir()), name)


def render_prompt(name: str, **variables) -> str:
    return get_prompt(name).render(**variables)
