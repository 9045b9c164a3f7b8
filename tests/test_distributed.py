"""Scale-out on CPU (gloo): FSDP2 through `accelerate launch` shards, saves a gathered artifact equal to a
single-process run with the same global batch and seed, resumes from sharded checkpoints (same and other world
size), runs as 2 simulated nodes; what FSDP2 cannot shard fails by name; DeepSpeed configs are GPU-only and parse.

Every example has the same token count (same-length labels, texts and clips), so the mean of per-rank losses equals
the single-process loss over the global batch and the weights must agree to float tolerance."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from affectllm.data import Sample, write_manifest
from affectllm.errors import ConfigError

from conftest import REPO, build_tiny, picture, tone

ACC = REPO / "recipes" / "accelerate"
LABELS = ["happy", "angry", "tired", "proud"]  # same length: equal token counts per example
FILES = ("projectors.safetensors", "adapter/adapter_model.safetensors")
TOL = 1e-5  # fp32 FSDP2 vs one process: measured max |diff| 5e-7 here


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    samples = []
    for i in range(8):
        lab = LABELS[i % 4]
        sf.write(root / f"a{i}.wav", tone(1.0, 150 + 40 * (i % 4)), 16000)
        Image.fromarray(picture(40, 40, seed=i)).save(root / f"f{i}.png")
        samples.append(Sample(id=f"s{i}", corpus="synthetic", split="train", audio=str(root / f"a{i}.wav"),
                              image=str(root / f"f{i}.png"), text=f"I feel {lab} right now", labels=[lab],
                              label=lab, explanation=f"Evidence: text (words). The text says 'I feel {lab}'."))
    manifest = write_manifest(root / "train.jsonl", samples, root=root)
    tree = {"name": "dist", "stage": "sft", "model": {"base": "tiny", "dtype": "float32"},
            "data": {"corpora": [str(manifest)], "split": "train", "data_root": str(root),
                     "modalities": ["text", "audio", "image"]},
            "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "optim": {"lr": 5e-3, "projector_lr": 5e-3, "warmup_steps": 0, "max_steps": 4, "batch_size": 2},
            "run": {"output_dir": str(root / "unused"), "save_every": 2, "tensorboard": False}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(tree))
    return root


def _env(root: Path) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "AFFECTLLM_CACHE": str(root / "cache"), "PYTHONPATH": str(REPO)}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_cmd(config: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *flags]


def _run(cmd: list[str], root: Path, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=_env(root), cwd=REPO)
    if ok:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def launch_train(root: Path, out: Path, config: Path = ACC / "fsdp2_cpu.yaml", *flags: str, overrides=(),
               stop_after: int | None = None, ok: bool = True):
    target = ([str(REPO / "tests" / "distributed_child.py"), str(root / "recipe.yaml"), str(stop_after)]
              if stop_after else ["-m", "affectllm.train", str(root / "recipe.yaml")])
    flags = flags if "--main_process_port" in flags else (*flags, "--main_process_port", str(_port()))
    return _run(_launch_cmd(config, *flags) + target + [f"run.output_dir={out}", *overrides], root, ok)


def train_single(root: Path, out: Path, *overrides: str, ok: bool = True) -> subprocess.CompletedProcess:
    """One process with grad_accum=2: the same global batch (4) as 2 processes x batch 2."""
    cmd = [sys.executable, "-m", "affectllm.train", str(root / "recipe.yaml"), "optim.grad_accum=2",
           f"run.output_dir={out}", *overrides]
    return _run(cmd, root, ok)


@pytest.fixture(scope="module")
def reference(data) -> Path:
    """The single-process run every distributed run is compared with."""
    out = data / "single"
    train_single(data, out)
    return out / "final"


def max_diff(a: Path, b: Path) -> float:
    worst = 0.0
    for name in FILES:
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert sorted(x) == sorted(y), name
        worst = max(worst, *((x[k].float() - y[k].float()).abs().max().item() for k in x))
    return worst


def assert_trained_like(final: Path, reference: Path, tol: float = TOL) -> None:
    import affectllm

    assert max_diff(final, reference) <= tol
    step2 = final.parent / "checkpoints" / "step-000002"
    if step2.is_dir():  # the weights really moved between steps (equality is not trivially of untouched weights)
        assert max_diff(final, step2) > 100 * TOL
    pipe = affectllm.load(str(final))  # the artifact `affectllm.load` (and serving) reads
    assert type(pipe.model.language_model).__name__.startswith("PeftModel")


def assert_sharded(ckpt: Path, world: int = 2) -> None:
    index = json.loads((ckpt / "shards" / "index.json").read_text())
    assert index["world_size"] == world
    assert sorted(p.name for p in (ckpt / "shards").glob("rank-*")) == \
        [f"rank-{r:05d}-of-{world:05d}.safetensors" for r in range(world)]
    sharded = [k for k, e in index["tensors"].items() if e["sharded"]]
    assert any(k.startswith("param/audio_projector.") for k in sharded)
    assert any("lora_A" in k for k in sharded) and all(e["placements"] == ["Shard(0)"]
                                                       for e in index["tensors"].values() if e["sharded"])
    assert not (ckpt / "trainable.safetensors").exists()


# ---- FSDP2 on 2 CPU processes (default) ---------------------------------------------------------------------
def test_fsdp2_cpu_shards_and_saves_the_single_process_weights(data, reference):
    out = data / "fsdp"
    launch_train(data, out)
    assert_sharded(out / "checkpoints" / "step-000004")
    assert_trained_like(out / "final", reference)
    # the checkpoint's own artifact is complete too (gathered on rank 0, like final/)
    assert max_diff(out / "checkpoints" / "step-000004", out / "final") == 0.0


# ---- resume (slow: 3-4 launches) -----------------------------------------------------------------------------
@pytest.mark.slow  # ~75 s on 2 busy cores
def test_sharded_checkpoint_resumes_at_same_and_other_world_size(data, reference, tmp_path):
    part = tmp_path / "part"
    launch_train(data, part, stop_after=3)  # killed after step 3: the last checkpoint is step 2 (sharded)
    assert (part / "latest").read_text() == "step-000002" and not (part / "final").exists()
    assert_sharded(part / "checkpoints" / "step-000002")
    other = tmp_path / "other"
    shutil.copytree(part, other)
    launch_train(data, part)  # same world size: each rank reads its own shard
    assert_trained_like(part / "final", reference)
    refused = train_single(data, other, "optim.grad_accum=1", ok=False)  # global batch 2 != 4
    assert refused.returncode == 2 and "global batch of 4 (2 processes)" in refused.stderr, refused.stderr[-2000:]
    train_single(data, other)  # one process: the shards are concatenated back into full tensors
    assert_trained_like(other / "final", reference)


@pytest.mark.slow  # ~45 s
def test_fsdp2_resumes_a_single_process_checkpoint(data, reference, tmp_path):
    out = tmp_path / "run"
    _run([sys.executable, str(REPO / "tests" / "distributed_child.py"), str(data / "recipe.yaml"), "3",
          "optim.grad_accum=2", f"run.output_dir={out}"], data)
    assert (out / "checkpoints" / "step-000002" / "trainable.safetensors").exists()
    launch_train(data, out)
    assert_trained_like(out / "final", reference)


# ---- shipped GPU configs, run on CPU -------------------------------------------------------------------------
@pytest.mark.slow  # ~40 s: two launchers
def test_multi_node_fsdp2_as_two_nodes_of_one_process(data, reference, tmp_path):
    out, port = tmp_path / "run", str(_port())
    procs = []
    for rank in (0, 1):
        cmd = _launch_cmd(ACC / "multi_node_fsdp2.yaml", "--machine_rank", str(rank), "--main_process_ip",
                          "127.0.0.1", "--main_process_port", port, "--num_machines", "2", "--num_processes", "2",
                          "--mixed_precision", "no", "-m", "affectllm.train", str(data / "recipe.yaml"),
                          f"run.output_dir={out}")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=_env(data), cwd=REPO))
    results = [p.communicate(timeout=1200) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-4000:]
    assert_sharded(out / "checkpoints" / "step-000004")
    assert_trained_like(out / "final", reference)


@pytest.mark.slow  # ~35 s
def test_shipped_fsdp2_yaml_bf16_on_two_processes(data, reference, tmp_path):
    """fsdp2.yaml as shipped (bf16 mixed precision, cpu_ram_efficient_loading), only 2 processes instead of 8."""
    out = tmp_path / "run"
    launch_train(data, out, ACC / "fsdp2.yaml", "--num_processes", "2")
    assert_sharded(out / "checkpoints" / "step-000004")
    assert_trained_like(out / "final", reference, tol=0.05)  # bf16 compute: measured max |diff| 0.012


@pytest.mark.slow  # ~25 s each
@pytest.mark.parametrize("config,flags,tol", [("cpu2.yaml", (), TOL), ("ddp.yaml", ("--num_processes", "2"), 0.05)])
def test_ddp_configs_train_like_one_process(data, reference, tmp_path, config, flags, tol):
    """Real 2-process DDP: cpu2.yaml as shipped; ddp.yaml as shipped (bf16) but 2 processes instead of 8. The
    metrics of a lone process would show a global batch of 2 and other weights (the old `--cpu` launch did)."""
    out = tmp_path / "run"
    launch_train(data, out, ACC / config, *flags)
    state = json.loads((out / "checkpoints" / "step-000004" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 4
    assert (out / "checkpoints" / "step-000004" / "trainable.safetensors").exists()  # replicated: not sharded
    assert_trained_like(out / "final", reference, tol)


@pytest.mark.slow  # ~30 s
def test_fsdp2_ranks_with_different_modalities(data, tmp_path):
    """Half the examples carry an image, half are text only, so in some steps one rank uses the vision projector
    and the other does not: FSDP2's collectives must stay aligned (gloo aborted before after_prepare)."""
    root = tmp_path / "mixed"
    root.mkdir()
    rows = [json.loads(ln) for ln in (data / "train.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row.pop("audio", None)
        if i % 2:
            row.pop("image", None)
        else:
            row["image"] = str(data / row["image"])
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tree = yaml.safe_load((data / "recipe.yaml").read_text())
    tree["data"].update(corpora=[str(root / "train.jsonl")], modalities=["text", "image"])
    (root / "recipe.yaml").write_text(yaml.safe_dump(tree))
    (root / "cache").mkdir()
    out = tmp_path / "run"
    launch_train(root, out)
    first, final = (load_file(str(p / "projectors.safetensors"))
                    for p in (out / "checkpoints" / "step-000002", out / "final"))
    assert (first["vision_projector.linear_1.weight"] - final["vision_projector.linear_1.weight"]).abs().max() > 1e-4


@pytest.mark.slow  # ~25 s
def test_grpo_under_fsdp_fails_with_a_clear_error(data, tmp_path):
    proc = launch_train(data, tmp_path / "run", overrides=["stage=grpo"], ok=False)
    assert proc.returncode != 0
    assert "affectllm train: error: stage grpo under FSDP" in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="train/setup.py _quantize_4bit round-trips the LLM through save_pretrained, which "
                   "transformers 5 skips on ranks != 0 (DDP too): rank 1 fails 'Unrecognized model'. With that "
                   "fixed, QLoRA + FSDP2 trained here and matched one process to 1.1e-5")
def test_qlora_under_fsdp2(data, tmp_path):
    out = tmp_path / "run"
    launch_train(data, out, overrides=["lora.quantize_4bit=true", "model.dtype=bfloat16"])
    assert (out / "final" / "adapter").is_dir()


# ---- what FSDP2 cannot shard: clear errors, in-process -----------------------------------------------------
def _fsdp_setup(monkeypatch, **recipe):
    from accelerate.utils import FullyShardedDataParallelPlugin

    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP")
    monkeypatch.delenv("FSDP_TRANSFORMER_CLS_TO_WRAP", raising=False)
    acc = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2)),
                          device=torch.device("cpu"))
    run = SimpleNamespace(eval_every=recipe.get("eval_every", 0), eval_task="rec_text_dev")
    return acc, SimpleNamespace(stage=recipe.get("stage", "sft"), run=run)


def test_fsdp_wraps_llm_layers_and_leaves_frozen_towers_replicated(monkeypatch):
    from affectllm.train.distributed import configure_fsdp

    pipe = build_tiny()
    acc, recipe = _fsdp_setup(monkeypatch)
    configure_fsdp(acc, pipe.model, recipe)
    plugin = acc.state.fsdp_plugin
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert plugin.ignored_modules == [pipe.model.audio_tower, pipe.model.vision_tower]


def test_fsdp_refuses_a_trainable_tower_it_cannot_wrap(monkeypatch):
    from affectllm.train.distributed import configure_fsdp

    pipe = build_tiny()
    pipe.model.vision_tower.requires_grad_(True)
    acc, recipe = _fsdp_setup(monkeypatch)
    configure_fsdp(acc, pipe.model, recipe)  # CLIP declares its layers: wrapped, not ignored
    assert "CLIPEncoderLayer" in acc.state.fsdp_plugin.transformer_cls_names_to_wrap
    monkeypatch.setattr(pipe.model.vision_tower, "_no_split_modules", [])  # e.g. a custom CNN tower
    acc, recipe = _fsdp_setup(monkeypatch)
    with pytest.raises(ConfigError, match=r"FSDP cannot wrap the trainable vision_tower \(CLIPVisionModel\)"):
        configure_fsdp(acc, pipe.model, recipe)


def test_fsdp_errors_name_the_module(monkeypatch):
    from affectllm.train.distributed import configure_fsdp

    pipe = build_tiny()
    acc, recipe = _fsdp_setup(monkeypatch)
    monkeypatch.setenv("FSDP_TRANSFORMER_CLS_TO_WRAP", "LlamaDecoderLayer,WhisperEncoderLayr")
    with pytest.raises(ConfigError, match="names \\['WhisperEncoderLayr'\\], which this model does not contain"):
        configure_fsdp(acc, pipe.model, recipe)
    monkeypatch.delenv("FSDP_TRANSFORMER_CLS_TO_WRAP")
    proj = pipe.model.audio_projector.linear_2
    proj.to(torch.bfloat16)  # trainable bf16 beside trainable fp32 in the root unit
    with pytest.raises(ConfigError, match="module '<root>'.*audio_projector.linear_2.weight"):
        configure_fsdp(acc, pipe.model, recipe)
    for stage, run, needle in (("grpo", {}, "stage grpo under FSDP"), ("sft", {"eval_every": 10}, "eval_every")):
        acc, recipe = _fsdp_setup(monkeypatch, stage=stage, **run)
        with pytest.raises(ConfigError, match=needle):
            configure_fsdp(acc, pipe.model, recipe)


# ---- DeepSpeed: GPU only -------------------------------------------------------------------------------------
def test_accelerate_configs_parse_and_deepspeed_ones_are_gpu_only():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    from affectllm.train.distributed import deepspeed_problem

    top = sorted(ACC.glob("*.yaml"))
    assert {p.name for p in top} >= {"cpu2.yaml", "ddp.yaml", "fsdp2.yaml", "fsdp2_cpu.yaml", "multi_node_fsdp2.yaml"}
    for path in top:
        assert load_config_from_file(str(path)).distributed_type != DistributedType.DEEPSPEED, path.name
    gpu = sorted((ACC / "gpu_only").glob("*.yaml"))
    assert [p.name for p in gpu] == ["multi_node_zero3.yaml", "zero2.yaml", "zero3.yaml"]
    for path in gpu:
        cfg = load_config_from_file(str(path))
        assert cfg.distributed_type == DistributedType.DEEPSPEED and not cfg.use_cpu
        stage = cfg.deepspeed_config["zero_stage"]
        assert stage in (2, 3) and "GPU only, not run here" in path.read_text()
        assert (deepspeed_problem(stage) is None) == (stage == 2)  # the loop refuses ZeRO-3
    old_path = re.compile(r"accelerate/(zero2|zero3|multi_node_zero3)\.yaml")  # moved to accelerate/gpu_only/
    files = [REPO / "README.md"] + [f for folder in ("affectllm", "tests", "docs", "recipes", "evals", "bench")
                                    for f in (REPO / folder).rglob("*") if f.suffix in (".py", ".md", ".yaml")]
    stale = [str(f) for f in files if f.is_file() and old_path.search(f.read_text(errors="ignore"))]
    assert not stale
