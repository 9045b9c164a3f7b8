"""Module structure (issue 12): no import cycles inside `affectllm.scoring` (counting imports inside functions),
and evaluation never imports training."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "affectllm"


def _imports(path: Path, package: str) -> set[str]:
    """Absolute module names a file imports anywhere in it (relative imports resolved)."""
    mod_parts = package.split(".")
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(mod_parts[: len(mod_parts) - node.level] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _graph(sub: str) -> dict[str, set[str]]:
    files = {f"affectllm.{sub}.{p.stem}": p for p in (PKG / sub).glob("*.py") if p.stem != "__init__"}
    return {m: _imports(p, m) & set(files) for m, p in files.items()}


def test_scoring_has_no_import_cycles():
    g = _graph("scoring")
    cycles = []

    def visit(node, stack):
        for nxt in g[node]:
            if nxt in stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif len(stack) < 12:
                visit(nxt, stack + [nxt])

    for m in g:
        visit(m, [m])
    assert not cycles, cycles[:3]


def test_evaluation_does_not_import_training():
    def name(p: Path) -> str:
        return ".".join(("affectllm",) + p.relative_to(PKG).with_suffix("").parts)

    bad = {name(p): sorted(i for i in _imports(p, name(p)) if i.startswith("affectllm.train"))
           for p in (PKG / "evaluation").rglob("*.py")}
    assert not {k: v for k, v in bad.items() if v}
