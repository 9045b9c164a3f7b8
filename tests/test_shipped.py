"""Shipped models (affectllm.shipped): a trained artifact packaged with a sha256 manifest loads by name exactly like
the artifact it came from; a changed, missing or extra file, or an artifact for another base, is refused."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from affectllm.errors import AffectError, ConfigError
from serve_helpers import make_lora_artifact


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    from affectllm.shipped import ENV_ROOT, ship

    artifact = make_lora_artifact(tmp_path / "artifact")
    root = tmp_path / "shipped"
    monkeypatch.setenv(ENV_ROOT, str(root))
    return {"artifact": artifact, "folder": ship(artifact, "tiny-affect", root), "root": root}


def _flip_last_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _logits(pipe) -> torch.Tensor:
    batch = pipe.processor([[{"role": "user", "content": [{"type": "text", "text": "I won the match!"}]}]])
    with torch.inference_mode():
        return pipe.model(**batch).logits[0, -1].float()


def test_a_shipped_model_loads_by_name_like_its_artifact(shipped):
    from affectllm.api import load
    from affectllm.artifact import load_artifact
    from affectllm.shipped import MANIFEST, list_shipped

    assert list_shipped() == ["tiny-affect"]
    files = json.loads((shipped["folder"] / MANIFEST).read_text())["files"]
    assert "adapter/adapter_model.safetensors" in files and "tokenizer.json" not in files
    pipe = load("tiny-affect")
    assert pipe.name == "tiny-affect"
    assert torch.equal(_logits(pipe), _logits(load_artifact(shipped["artifact"])))


@pytest.mark.parametrize("damage, needle", [
    (lambda f: _flip_last_byte(f / "projectors.safetensors"), "projectors.safetensors does not match"),
    (lambda f: f.joinpath("adapter", "adapter_model.safetensors").unlink(), "adapter_model.safetensors is missing"),
    (lambda f: f.joinpath("adapter", "extra.bin").write_bytes(b"x"), "adapter/extra.bin is not in"),
])
def test_a_changed_missing_or_extra_file_is_refused_by_name(shipped, damage, needle):
    from affectllm.api import load

    damage(shipped["folder"])
    with pytest.raises(AffectError, match=needle):
        load("tiny-affect")


def test_an_artifact_for_another_base_is_refused(shipped):
    from affectllm.api import load
    from affectllm.shipped import ship

    config = json.loads((shipped["artifact"] / "config.json").read_text())
    config["text_config"]["hidden_size"] = 2 * config["text_config"]["hidden_size"]
    (shipped["artifact"] / "config.json").write_text(json.dumps(config))
    ship(shipped["artifact"], "other-llm", shipped["root"])
    with pytest.raises(ConfigError, match="trained on another LLM"):
        load("other-llm")


def test_ship_refuses_what_is_not_an_artifact(tmp_path):
    from affectllm.shipped import ship

    with pytest.raises(ConfigError, match="not a trained artifact"):
        ship(tmp_path, "x", tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown shipped model 'does-not-exist'"):
        from affectllm.shipped import manifest

        manifest("does-not-exist")


def test_serve_resolves_a_shipped_name(shipped):
    from affectllm.serve.models import resolve_source

    name, base, artifact = resolve_source("tiny-affect")
    assert (name, base) == ("tiny", "tiny") and artifact == shipped["folder"].resolve()
    shutil.rmtree(shipped["folder"] / "adapter")
    with pytest.raises(AffectError, match="missing"):
        resolve_source("tiny-affect")


def test_the_default_model_is_the_shipped_one_when_installed(tmp_path, monkeypatch):
    from affectllm.api import load
    from affectllm.shipped import DEFAULT_MODEL, ENV_ROOT, default_model, ship

    monkeypatch.setenv(ENV_ROOT, str(tmp_path / "empty"))
    assert default_model() == "mini"  # not shipped in this install: the untuned preset
    root = tmp_path / "shipped"
    monkeypatch.setenv(ENV_ROOT, str(root))
    ship(make_lora_artifact(tmp_path / "artifact"), DEFAULT_MODEL, root)
    assert default_model() == DEFAULT_MODEL
    assert load().name == DEFAULT_MODEL
