"""Trained artifacts that ship inside the package: `affectllm.load(NAME)`, `affectllm chat --model NAME` and
`affectllm serve NAME` use them like a preset.

Why: a user on a fresh machine should get a model that answers, without training one, and know it is the very
model that was measured. So a shipped model is an ordinary artifact (affectllm.artifact) reduced to what training
changed (the LLM-only LoRA, the projectors with the towers' normalisation statistics, the recipe), plus
`MANIFEST.json` with the sha256 and size of every file. Every load checks every file against it: a changed,
missing or extra file is refused with an error naming it, never run. The tokenizer and chat template come from
the base preset (Gemma's tokenizer alone is 32 MB), and `load_artifact` refuses an artifact whose LLM or towers
differ from its base.

    affectllm/shipped/<name>/
      MANIFEST.json            {"name", "base", "files": {path: {"sha256", "bytes"}}, "source": {...}}
      config.json  projectors.safetensors  adapter/adapter_config.json  adapter/adapter_model.safetensors
      affect_processor.json  recipe.yaml
      stages/1-<recipe>.yaml ...   earlier stages' recipes when the recipe continued another artifact (its
                                   model.base), earliest first, so the model card and a reproduction see the chain

    python -m affectllm.shipped runs/affect_mix/best --name mini-affect    # writes affectllm/shipped/mini-affect
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .errors import AffectError, ConfigError

MANIFEST = "MANIFEST.json"
SHIP_FILES = ("config.json", "projectors.safetensors", "adapter/adapter_config.json",
              "adapter/adapter_model.safetensors", "affect_processor.json", "recipe.yaml")
REQUIRED = ("config.json", "projectors.safetensors")
ENV_ROOT = "AFFECTLLM_SHIPPED_DIR"  # another folder of shipped models (tests; a site-wide copy)


DEFAULT_MODEL = "mini-affect"  # the trained default: what `affectllm.load()` and `affectllm chat` use
UNTUNED_MODEL = "mini"  # the untuned composed preset, used when the default is not shipped


def default_model() -> str:
    """The shipped trained default when this install has it, else the untuned `mini` preset."""
    return DEFAULT_MODEL if DEFAULT_MODEL in list_shipped() else UNTUNED_MODEL


def shipped_root() -> Path:
    return Path(os.environ.get(ENV_ROOT) or Path(__file__).resolve().parent / "shipped")


def list_shipped() -> list[str]:
    root = shipped_root()
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}")) if root.is_dir() else []


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest(name: str) -> dict:
    path = shipped_root() / name / MANIFEST
    if not path.is_file():
        from .registry import unknown_name_message

        raise ConfigError(unknown_name_message("shipped model", name, list_shipped()))
    return json.loads(path.read_text())


def verify(folder: Path) -> dict:
    """Every file the manifest lists exists with its size and sha256, and nothing else is there."""
    listed = json.loads((folder / MANIFEST).read_text())["files"]
    for rel, want in sorted(listed.items()):
        path = folder / rel
        if not path.is_file():
            raise AffectError(f"shipped model '{folder.name}': {rel} is missing (reinstall affectllm)")
        if path.stat().st_size != want["bytes"] or sha256_file(path) != want["sha256"]:
            raise AffectError(f"shipped model '{folder.name}': {rel} does not match its sha256 in {MANIFEST} "
                              f"(changed or corrupt); refusing to load it (reinstall affectllm)")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    extra = sorted(present - set(listed) - {MANIFEST})
    if extra:
        raise AffectError(f"shipped model '{folder.name}': {extra[0]} is not in {MANIFEST}; refusing to load a "
                          f"shipped model with files it was not measured with")
    return listed


def shipped_path(name: str) -> Path:
    """The verified folder of a shipped model (sha256 of every file checked on each call)."""
    manifest(name)
    folder = shipped_root() / name
    verify(folder)
    return folder


def prior_recipes(artifact: Path) -> list[Path]:
    """The recipes of the artifacts this one continued (recipe.yaml's model.base, followed while it names an
    artifact folder with a recipe), earliest first."""
    import yaml

    from .artifact import is_artifact

    chain, seen, here = [], {artifact.resolve()}, artifact
    while (here / "recipe.yaml").is_file():
        base = ((yaml.safe_load((here / "recipe.yaml").read_text()) or {}).get("model") or {}).get("base")
        prior = Path(str(base)) if base else None
        if prior is None or not is_artifact(prior) or prior.resolve() in seen or not (prior / "recipe.yaml").is_file():
            break
        seen.add(prior.resolve())
        chain.append(prior / "recipe.yaml")
        here = prior
    return chain[::-1]


def ship(artifact: str | Path, name: str, root: str | Path | None = None, source: dict | None = None) -> Path:
    """Copy the artifact's own files into `<root>/<name>/` with a manifest; atomic (temp folder, then rename)."""
    import yaml

    from .artifact import BASE_KEY, is_artifact

    artifact = Path(artifact)
    if not is_artifact(artifact):
        raise ConfigError(f"'{artifact}' is not a trained artifact (no projectors.safetensors)")
    if (artifact / "llm").is_dir():
        raise ConfigError(f"'{artifact}' carries a fully trained LLM (llm/): too big to ship in the package")
    missing = [f for f in REQUIRED if not (artifact / f).is_file()]
    if missing:
        raise ConfigError(f"'{artifact}' lacks {missing[0]}")
    base = json.loads((artifact / "config.json").read_text()).get(BASE_KEY)
    root = Path(root) if root is not None else shipped_root()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        files = {}
        for rel in SHIP_FILES:
            src = artifact / rel
            if src.is_file():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, tmp / rel)
                files[rel] = {"sha256": sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
        for i, src in enumerate(prior_recipes(artifact), 1):
            rel = f"stages/{i}-{(yaml.safe_load(src.read_text()) or {}).get('name', 'recipe')}.yaml"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / rel)
            files[rel] = {"sha256": sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
        (tmp / MANIFEST).write_text(json.dumps({"name": name, "base": base, "files": files,
                                                "source": source or {}}, indent=1, sort_keys=True) + "\n")
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Package a trained artifact as a shipped model (affectllm/shipped/).")
    ap.add_argument("artifact", help="a trained artifact folder (e.g. runs/affect_mix/best)")
    ap.add_argument("--name", required=True, help="the name users load it by (e.g. mini-affect)")
    ap.add_argument("--root", help=f"destination folder (default: the package's shipped/ or ${ENV_ROOT})")
    args = ap.parse_args(argv)
    sel = Path(args.artifact) / "selection.json"
    source = {"artifact": Path(args.artifact).name,
              "selection": json.loads(sel.read_text()) if sel.is_file() else None}
    out = ship(args.artifact, args.name, args.root, source)
    total = sum(f["bytes"] for f in json.loads((out / MANIFEST).read_text())["files"].values())
    print(f"shipped {args.name}: {out} ({total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
