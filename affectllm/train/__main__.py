"""`python -m affectllm.train RECIPE [key=value ...]` (the entry point `accelerate launch -m` uses)."""
from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from ..errors import AffectError
    from . import run_recipe

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m affectllm.train RECIPE [key=value ...]", file=sys.stderr)
        return 2
    try:
        print(run_recipe(argv[0], argv[1:]))
    except AffectError as e:
        print(f"affectllm train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
