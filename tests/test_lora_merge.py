"""The PEFT-free LoRA merge that `chat` uses (affectllm.lora): same logits as the adapter kept by PEFT, no PEFT
import, and anything beyond plain LoRA left to PEFT or refused with the module named."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import build_tiny


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    from affectllm.artifact import save_artifact

    pipe = build_tiny()
    pipe.model.language_model = get_peft_model(
        pipe.model.language_model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    torch.manual_seed(5)
    with torch.no_grad():
        for name, p in pipe.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.2 * torch.randn_like(p))
    return save_artifact(pipe, tmp_path_factory.mktemp("a") / "ckpt", base="tiny", recipe_yaml="stage: sft\n")


def logits(pipe):
    ids = pipe.processor([[{"role": "user", "content": [{"type": "text", "text": "so happy today"}]}]])
    with torch.no_grad():
        return pipe.model(**ids).logits


def test_merged_without_peft_equals_the_peft_adapter(tiny_artifact):
    from affectllm.api import load

    kept = load(tiny_artifact)
    merged = load(tiny_artifact, merge_lora=True)
    assert hasattr(kept.model.language_model, "peft_config")
    assert not hasattr(merged.model.language_model, "peft_config")
    plain = load("tiny")
    assert not torch.allclose(logits(plain), logits(kept), atol=1e-3)  # the adapter matters
    torch.testing.assert_close(logits(merged), logits(kept), atol=1e-5, rtol=1e-5)


def test_merging_a_plain_adapter_never_imports_peft(tiny_artifact):
    code = ("import sys; from affectllm.api import load; load(sys.argv[1], merge_lora=True); "
            "print('peft' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tiny_artifact)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_not_plain_lora_is_left_to_peft_and_foreign_modules_are_refused(tiny_artifact, tmp_path):
    import shutil

    from affectllm.errors import ConfigError
    from affectllm.lora import merge_plain_lora

    llm = build_tiny().model.language_model
    before = {k: v.clone() for k, v in llm.state_dict().items()}
    dora = tmp_path / "dora"
    shutil.copytree(tiny_artifact / "adapter", dora)
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    assert merge_plain_lora(llm, dora) is False
    assert all(torch.equal(before[k], v) for k, v in llm.state_dict().items())  # nothing touched

    from safetensors.torch import load_file, save_file

    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_artifact / "adapter", foreign)
    state = load_file(str(foreign / "adapter_model.safetensors"))
    state = {k.replace("q_proj", "qkv_proj"): v for k, v in state.items()}
    save_file(state, str(foreign / "adapter_model.safetensors"))
    with pytest.raises(ConfigError, match="qkv_proj"):
        merge_plain_lora(llm, foreign)
    assert all(torch.equal(before[k], v) for k, v in llm.state_dict().items())  # checked before any write


def test_merge_in_bfloat16_matches_float32_and_a_misshapen_pair_is_refused(tiny_artifact, tmp_path):
    """float32 weights take the in-place addmm path, bfloat16 ones the fp32-computed copy: both give W + s*B@A."""
    import shutil

    from safetensors.torch import load_file, save_file

    from affectllm.errors import ConfigError
    from affectllm.lora import merge_plain_lora

    llm32 = build_tiny().model.language_model
    llm16 = build_tiny().model.language_model.to(torch.bfloat16)
    base = {k: v.clone() for k, v in llm32.state_dict().items()}
    assert merge_plain_lora(llm32, tiny_artifact / "adapter") and merge_plain_lora(llm16, tiny_artifact / "adapter")
    cfg = json.loads((tiny_artifact / "adapter" / "adapter_config.json").read_text())
    state = load_file(str(tiny_artifact / "adapter" / "adapter_model.safetensors"))
    key = next(k for k in state if "q_proj.lora_A" in k)
    module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
    want = base[module + ".weight"] + cfg["lora_alpha"] / cfg["r"] * (state[key.replace("lora_A", "lora_B")]
                                                                     @ state[key])
    assert not torch.allclose(want, base[module + ".weight"], atol=1e-3)
    torch.testing.assert_close(llm32.state_dict()[module + ".weight"], want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(llm16.state_dict()[module + ".weight"].float(), want, atol=2e-2, rtol=1e-2)

    bad = tmp_path / "bad"
    shutil.copytree(tiny_artifact / "adapter", bad)
    state[key] = state[key][:, :-1].contiguous()  # A misses one input column
    save_file(state, str(bad / "adapter_model.safetensors"))
    fresh = build_tiny().model.language_model
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ConfigError, match="do not give the layer's weight"):
        merge_plain_lora(fresh, bad)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())
