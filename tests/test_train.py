"""Recipes on `tiny` with a small synthetic manifest (tones, images, text): every stage runs, loss decreases,
resume reproduces the uninterrupted curve, NaN stops cleanly, the feature cache hits, multi-process runs."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image

from affectllm.data import Sample, write_manifest
from affectllm.errors import AffectError, ConfigError
from affectllm.train import list_recipes, load_recipe
from affectllm.train.loop import TrainingDiverged, train

from conftest import REPO, picture, tone

LABELS = ["happy", "sad", "angry", "calm"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    samples = []
    for i in range(12):
        lab = LABELS[i % 4]
        wav = root / f"a{i}.wav"
        sf.write(wav, tone(0.8 + 0.1 * (i % 3), 150 + 40 * (i % 4)), 16000)
        png = root / f"f{i}.png"
        Image.fromarray(picture(40, 40, seed=i)).save(png)
        samples.append(Sample(id=f"s{i}", corpus="synthetic", split="train", audio=str(wav), image=str(png),
                              text=f"I feel {lab} right now", labels=[lab], label=lab, label_set="ravdess",
                              explanation=f"Evidence: text (words). The text says 'I feel {lab}'."))
    return write_manifest(root / "train.jsonl", samples, root=root)


def tiny_recipe(tmp_path: Path, manifest: Path, stage: str = "sft", **over) -> object:
    tree = {"name": f"test_{stage}", "stage": stage,
            "model": {"base": "tiny", "dtype": "float32"},
            "data": {"corpora": [str(manifest)], "split": "train", "data_root": str(manifest.parent),
                     "modalities": ["text", "audio", "image"]},
            "lora": {"enabled": stage != "align", "r": 4, "alpha": 8,
                     "target_modules": ["q_proj", "v_proj"]},
            "optim": {"lr": 5e-3, "projector_lr": 5e-3, "warmup_steps": 0, "max_steps": 2, "batch_size": 2},
            "grpo": {"num_generations": 2, "max_new_tokens": 8, "beta": 0.04},
            "run": {"output_dir": str(tmp_path / "run"), "save_every": 1000, "tensorboard": False}}
    for dotted, value in over.items():
        section, key = dotted.split("__")
        tree[section][key] = value
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return load_recipe(path)


def losses(run_dir: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_every_shipped_recipe_parses():
    names = list_recipes()
    assert {"align", "sft_lora", "sft_qlora", "grpo"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.stage in ("align", "sft", "grpo", "interpolate")
    for cfg in (REPO / "recipes" / "accelerate").glob("*.yaml"):
        assert "distributed_type" in yaml.safe_load(cfg.read_text())


def test_unknown_recipe_keys_and_overrides():
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_recipe("sft_lora", ["optim.lrr=1e-3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_recipe("sft_lora", ["optim.lr"])
    with pytest.raises(ConfigError, match="did you mean 'sft_lora'"):
        load_recipe("sft_lorra")
    assert load_recipe("sft_lora", ["optim.lr=1e-4", "data.limit=7"]).optim.lr == 1e-4


@pytest.mark.parametrize("stage", ["align", "sft", "grpo"])
def test_each_stage_runs_two_steps_and_writes_an_artifact(tmp_path, manifest, stage):
    final = train(tiny_recipe(tmp_path, manifest, stage), progress=False)
    assert (final / "projectors.safetensors").exists()
    assert (final / "adapter").exists() == (stage != "align")
    records = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in records)
    if stage == "grpo":
        assert "reward" in records[0] and "reward_format" in records[0]
    from affectllm.api import load

    pipe = load(final)
    assert pipe.chat(text="hello", max_new_tokens=4).raw is not None


def test_qlora_runs_two_steps(tmp_path, manifest):
    pytest.importorskip("bitsandbytes")
    final = train(tiny_recipe(tmp_path, manifest, "sft", lora__quantize_4bit=True, model__dtype="bfloat16"),
                  progress=False)
    assert (final / "adapter" / "adapter_config.json").exists()
    assert len(losses(tmp_path / "run")) == 2


def test_qlora_keeps_the_frozen_base_small(tmp_path, manifest):
    """No fp32 upcast of the frozen base (peft's prepare_model_for_kbit_training did that): QLoRA's LLM must take
    fewer bytes than bf16 LoRA's, and only LoRA weights train."""
    pytest.importorskip("bitsandbytes")
    from affectllm.train.setup import prepare_model

    sizes = {}
    for quant in (False, True):
        pipe, _ = prepare_model(tiny_recipe(tmp_path, manifest, "sft", lora__quantize_4bit=quant,
                                            model__dtype="bfloat16"))
        lm = pipe.model.language_model
        frozen = [p for p in lm.parameters() if not p.requires_grad]
        assert all(p.dtype != torch.float32 for p in frozen)
        assert all("lora_" in n for n, p in lm.named_parameters() if p.requires_grad)
        sizes[quant] = sum(p.numel() * p.element_size() for p in lm.parameters())
    assert sizes[True] < 0.9 * sizes[False]


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_loss_decreases_on_a_fixed_batch(tmp_path, manifest, lora):
    recipe = tiny_recipe(tmp_path, manifest, "sft", optim__max_steps=20, optim__batch_size=12, data__limit=12,
                         optim__lr=2e-2 if lora else 3e-3, optim__projector_lr=2e-2 if lora else 3e-3,
                         lora__enabled=lora, lora__target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                   "gate_proj", "up_proj", "down_proj"])
    train(recipe, progress=False)
    curve = losses(tmp_path / "run")
    assert len(curve) == 20
    # A frozen random tiny LM bounds its logits (frozen tied embeddings + norm), so LoRA alone moves the loss
    # less than full fine-tuning does; both must go down steadily.
    assert np.mean(curve[-3:]) < (np.mean(curve[:3]) - 0.15 if lora else 0.7 * np.mean(curve[:3]))
    assert sum(b < a for a, b in zip(curve, curve[1:])) >= 15


def test_resume_reproduces_the_uninterrupted_curve(tmp_path, manifest):
    full = tiny_recipe(tmp_path / "a", manifest, "sft", optim__max_steps=6, run__save_every=2)
    train(full, progress=False)
    reference = losses(tmp_path / "a" / "run")
    part = tiny_recipe(tmp_path / "b", manifest, "sft", optim__max_steps=6, run__save_every=2)
    train(part, stop_after=3, progress=False)  # killed after step 3; last checkpoint is step 2
    assert (tmp_path / "b" / "run" / "latest").read_text() == "step-000002"
    train(part, progress=False)
    resumed = losses(tmp_path / "b" / "run")
    assert len(resumed) == 6
    np.testing.assert_allclose(resumed, reference, atol=1e-5, rtol=0)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, manifest, monkeypatch):
    from affectllm.train import loop

    real = loop._sft_step
    calls = {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        loss, info = real(*args)
        return (loss * float("nan") if calls["n"] == 4 else loss), info

    monkeypatch.setattr(loop, "_sft_step", poisoned)
    recipe = tiny_recipe(tmp_path, manifest, "sft", optim__max_steps=6, run__save_every=2)
    with pytest.raises(TrainingDiverged, match="step 4"):
        train(recipe, progress=False)
    run = tmp_path / "run"
    assert (run / "latest").read_text() == "step-000002"
    assert not (run / "final").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002"]


def test_feature_cache_hits_after_first_epoch_and_depends_on_towers(tmp_path, manifest, monkeypatch):
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path / "cache"))
    recipe = tiny_recipe(tmp_path, manifest, "sft", optim__max_steps=12, optim__batch_size=2)
    train(recipe, progress=False)
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["cache_misses"] == 12 and last["cache_hits"] == 12
    from affectllm.train.encoding import tower_fingerprint
    from conftest import build_tiny

    a = tower_fingerprint(build_tiny().model)
    b = tower_fingerprint(build_tiny(affect={"audio_layer": -2}).model)
    assert a != b and len(list((tmp_path / "cache" / "features").iterdir())) == 1
    # the cached input ids hold one placeholder per media token: another token budget must not read them
    budget = tower_fingerprint(build_tiny(affect={"audio_projector": "global_mlp", "audio_num_queries": 4}).model)
    assert budget != a


def test_missing_media_row_is_skipped_and_counted_or_fails(tmp_path, manifest):
    rows = manifest.read_text().splitlines()
    broken = json.loads(rows[0])
    broken["audio"] = "does_not_exist.wav"
    bad = manifest.parent / "broken.jsonl"
    bad.write_text("\n".join([json.dumps(broken)] + rows[1:]) + "\n")
    with pytest.warns(UserWarning, match="1"):
        train(tiny_recipe(tmp_path / "skip", bad, "sft"), progress=False)
    with pytest.raises(AffectError, match="does_not_exist.wav"):
        train(tiny_recipe(tmp_path / "fail", bad, "sft", data__on_missing="error"), progress=False)


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_accelerate_two_processes(tmp_path, manifest, stage):
    """The shipped cpu2.yaml really starts two ranks (`--cpu --num_processes 2` ran one): the checkpoint records
    world size 2 and the global batch of both ranks."""
    recipe_path = tmp_path / "recipe.yaml"
    tiny_recipe(tmp_path, manifest, stage)  # writes recipe.yaml
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "recipes" / "accelerate" / "cpu2.yaml"), "--main_process_port", str(free_port()),
           "-m", "affectllm.train", str(recipe_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(losses(tmp_path / "run")) == 2
    assert (tmp_path / "run" / "final" / "adapter").exists()
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-000002" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rewards_use_the_scorer():
    from affectllm.rewards import REWARDS, combined_rewards

    good = '{"labels": ["happy"], "explanation": "smiling voice"}'
    spam = '{"labels": ["happy", "joy", "glad", "cheerful", "elated", "merry"], "explanation": "x"}'
    free = "I think the person is happy"
    assert REWARDS.get("format")(None, [good, free]) == [1.0, 0.0]
    assert REWARDS.get("label_count")(None, [good, spam], max_labels=3) == [0.0, -0.75]
    assert REWARDS.get("closed_acc")(None, [good, free, '{"labels": ["sad"], "explanation": ""}'],
                                     label=["happy", "happy", "happy"], label_set=["ravdess"] * 3) == [1.0, 1.0, 0.0]
    ov = REWARDS.get("ov_wheel")(None, [good, '{"labels": ["furious"], "explanation": ""}'],
                                 gold_labels=[["happy"], ["happy"]])
    assert ov[0] == pytest.approx(1.0) and ov[1] == pytest.approx(0.0)
    total, parts = combined_rewards({"format": 0.5, "label_count": 1.0}, None, [good, spam])
    assert total == [0.5, -0.25] and parts == {"format": 1.0, "label_count": -0.375}


def test_grpo_kl_reference_is_the_model_the_run_started_from(tmp_path, manifest):
    """GRPO after SFT: the KL reference is the SFT model (LoRA + projectors as loaded), so before the first update
    policy and reference are equal (KL 0) while the adapter itself is far from zero; later steps move away."""
    sft = train(tiny_recipe(tmp_path / "sft", manifest, "sft", optim__max_steps=3), progress=False)
    recipe = tiny_recipe(tmp_path / "grpo", manifest, "grpo", model__base=str(sft), optim__max_steps=3,
                         optim__lr=5e-2, optim__weight_decay=1.0, grpo__beta=0.5)  # decay moves it off the start
    train(recipe, progress=False)
    rows = [json.loads(ln) for ln in (tmp_path / "grpo" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert max(r["kl"] for r in rows[1:]) > 1e-5
    from safetensors.torch import load_file

    lora_b = [v for k, v in load_file(str(sft / "adapter" / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert max(float(v.abs().max()) for v in lora_b) > 1e-3  # the SFT adapter is not the base model
