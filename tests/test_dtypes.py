"""`dtype: auto` (affectllm.dtypes): explicit names, errors, the per-machine cache, and the wiring into load/serve.

The matmul micro-benchmark is replaced by a counting fake everywhere except one tiny real run, so these tests take
well under a second each and do not depend on which CPU they run on."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from affectllm import dtypes
from affectllm.errors import ConfigError

CPU = {"name": "Test CPU 9000", "family": "25", "model": "1", "stepping": "1", "flags_sha": "abc123"}


@pytest.fixture
def auto_env(tmp_path, monkeypatch):
    """A fresh cache folder, no in-process memo, a fixed CPU identity, CPU device, and a counting fake benchmark
    (speeds set through the returned dict)."""
    monkeypatch.setenv("AFFECTLLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(dtypes.ENV_OVERRIDE, raising=False)
    monkeypatch.setattr(dtypes, "_memo", {})
    monkeypatch.setattr(dtypes, "_last", None)
    monkeypatch.setattr(dtypes, "cpu_identity", lambda: dict(CPU))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    state = {"calls": 0, "speeds": {"float32": 160.0, "bfloat16": 45.0}}

    def fake_benchmark(*args, **kwargs):
        state["calls"] += 1
        return dict(state["speeds"])

    monkeypatch.setattr(dtypes, "benchmark_matmul", fake_benchmark)
    return state


@pytest.mark.parametrize("name,expected", [("float32", torch.float32), ("bfloat16", torch.bfloat16),
                                           ("float16", torch.float16), (torch.bfloat16, torch.bfloat16),
                                           (torch.float32, torch.float32)])
def test_explicit_names(name, expected, auto_env):
    assert dtypes.resolve_dtype(name) is expected
    assert auto_env["calls"] == 0  # explicit names are never benchmarked


@pytest.mark.parametrize("bad", ["fp33", "bf16", "float64", "", torch.int8, 3])
def test_bad_name_lists_valid_values(bad):
    with pytest.raises(ConfigError) as e:
        dtypes.resolve_dtype(bad)
    msg = str(e.value)
    assert all(v in msg for v in ("auto", "float32", "bfloat16", "float16")), msg


def test_auto_measures_once_then_reads_the_cache(auto_env, caplog):
    with caplog.at_level(logging.INFO, logger="affectllm"):
        assert dtypes.resolve_dtype("auto") is torch.float32
        assert dtypes.resolve_dtype(None) is torch.float32  # None = auto here
    assert auto_env["calls"] == 1
    logged = [r.getMessage() for r in caplog.records if "dtype auto" in r.getMessage()]
    assert len(logged) == 1 and "float32" in logged[0] and "160 GFLOP/s" in logged[0] and "45 GFLOP/s" in logged[0]
    cache = json.loads(dtypes.cache_path().read_text())
    (key, rec), = cache.items()
    assert "Test CPU 9000" in key and f"torch {torch.__version__}" in key and f"{torch.get_num_threads()} threads" in key
    assert rec["choice"] == "float32" and rec["gflops"] == {"float32": 160.0, "bfloat16": 45.0}
    dtypes._memo.clear()  # a new process: reads the file, does not measure again
    assert dtypes.resolve_dtype("auto") is torch.float32
    assert auto_env["calls"] == 1
    assert dtypes.describe_choice()["gflops"]["float32"] == 160.0


def test_bf16_only_when_clearly_faster(auto_env):
    auto_env["speeds"] = {"float32": 200.0, "bfloat16": 230.0}  # 1.15x: not worth the precision
    assert dtypes.resolve_dtype("auto") is torch.float32
    dtypes._memo.clear()
    dtypes.cache_path().unlink()
    auto_env["speeds"] = {"float32": 211.0, "bfloat16": 946.0}  # Zen 5 / AMX-like
    assert dtypes.resolve_dtype("auto") is torch.bfloat16
    assert dtypes.describe_choice()["bf16_over_fp32"] > 4


def test_entry_of_another_cpu_or_thread_count_is_not_used(auto_env, monkeypatch):
    other = dict(CPU, name="Intel Xeon with AMX")
    same_name_other_flags = dict(CPU, flags_sha="fff000")  # e.g. KVM guests of Zen 3 and Zen 5 both "AMD EPYC"
    entries = {dtypes.cache_key(cpu=c): {"choice": "bfloat16", "gflops": {"float32": 1, "bfloat16": 9}}
               for c in (other, same_name_other_flags)}
    entries[dtypes.cache_key(threads=torch.get_num_threads() + 7, cpu=CPU)] = {"choice": "bfloat16"}
    dtypes.cache_path().parent.mkdir(parents=True)
    dtypes.cache_path().write_text(json.dumps(entries))
    assert dtypes.resolve_dtype("auto") is torch.float32
    assert auto_env["calls"] == 1
    assert len(json.loads(dtypes.cache_path().read_text())) == 4  # the others are kept


def test_corrupt_cache_is_remeasured(auto_env):
    dtypes.cache_path().parent.mkdir(parents=True)
    dtypes.cache_path().write_text("{not json")
    assert dtypes.resolve_dtype("auto") is torch.float32
    assert auto_env["calls"] == 1


def test_env_override(auto_env, monkeypatch):
    monkeypatch.setenv(dtypes.ENV_OVERRIDE, "bfloat16")
    assert dtypes.resolve_dtype("auto") is torch.bfloat16
    assert dtypes.resolve_dtype("float32") is torch.float32  # explicit names still win
    assert auto_env["calls"] == 0
    monkeypatch.setenv(dtypes.ENV_OVERRIDE, "bf17")
    with pytest.raises(ConfigError, match="bfloat16"):
        dtypes.resolve_dtype("auto")


def test_cuda_picks_bf16_when_supported(auto_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert dtypes.resolve_dtype("auto", device="cuda") is torch.bfloat16
    dtypes._memo.clear()
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert dtypes.resolve_dtype("auto", device="cuda") is torch.float32
    assert auto_env["calls"] == 0


def test_real_benchmark_is_small_and_sane():
    state = torch.random.get_rng_state()
    g = dtypes.benchmark_matmul(size=128, budget_s=0.01)
    assert set(g) == {"float32", "bfloat16", "size"} and all(v > 0 for v in g.values())
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random stream is untouched


@pytest.mark.parametrize("choice", ["float32", "bfloat16"])
def test_load_tiny_auto(auto_env, choice):
    from affectllm.api import load

    auto_env["speeds"] = {"float32": 100.0, "bfloat16": 300.0 if choice == "bfloat16" else 50.0}
    pipe = load("tiny", dtype="auto")
    assert pipe.model.dtype is getattr(torch, choice)
    assert load("tiny").model.dtype is torch.float32  # None: the preset's own dtype (tiny stays float32)
    assert auto_env["calls"] == 1


def test_load_rejects_bad_dtype_before_loading():
    from affectllm.api import load

    with pytest.raises(ConfigError, match="valid values"):
        load("tiny", dtype="float64")


def test_presets_and_recipes_say_auto():
    from affectllm.presets import preset_spec
    from affectllm.train import load_recipe

    assert preset_spec("mini")["dtype"] == "auto" and preset_spec("tiny")["dtype"] == "float32"
    for name in ("sft_lora", "sft_qlora", "align", "grpo"):
        assert load_recipe(name, []).model.dtype == "auto", name


def test_vllm_gets_the_resolved_name(auto_env):
    from affectllm.serve.launcher import VLLMServer
    from affectllm.serve.server import _vllm_dtype

    class Pipe:  # the gateway's model, loaded with auto -> float32 here
        class model:
            dtype = torch.float32

    assert _vllm_dtype(None, Pipe) == "float32" and _vllm_dtype("auto", Pipe) == "float32"
    assert _vllm_dtype("bfloat16", Pipe) == "bfloat16"
    cmd = VLLMServer(model_dir="m", served_name="m", dtype="auto", port=1).command()
    assert cmd[cmd.index("--dtype") + 1] == "float32"


def test_cli_accepts_auto():
    from affectllm.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["chat", "--dtype", "auto"]).dtype == "auto"
    assert parser.parse_args(["chat"]).dtype is None  # the preset's own (auto for mini, float32 for tiny)
    assert parser.parse_args(["serve", "mini", "--dtype", "auto"]).dtype == "auto"
    assert parser.parse_args(["eval", "--dtype", "auto"]).dtype == "auto"
