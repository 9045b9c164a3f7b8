"""GPU check of the recipes (run on a lent CUDA machine): `sft_qlora` and `grpo` for a few steps with a ~0.5B LLM.

No weights can reach that machine, so the LLM is Qwen2-0.5B-shaped with random weights, built from its config:
this checks the CUDA code paths (NF4 quantization, LoRA, sampling, KL to the reference, checkpointing), not
model quality. Text-only synthetic data (the GPU image has no audio decoders). Prints one JSON summary and
writes it to $OUT/gpu_check.json when OUT is set.

    PYTHONPATH=. python3 bench/gpu_check.py           # on the GPU machine
    GPU_CHECK_SMALL=1 PYTHONPATH=. python bench/gpu_check.py   # a 2-layer rehearsal on CPU
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402

QWEN2_05B = {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
             "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
             "max_position_embeddings": 4096, "rope_theta": 1000000.0, "tie_word_embeddings": True,
             "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
LABELS = ["happy", "sad", "angry", "calm", "fearful", "surprised"]


def main() -> int:
    from affectllm.api import AffectPipeline
    from affectllm.data import Sample, write_manifest
    from affectllm.presets import build_from_spec, preset_spec
    from affectllm.train import load_recipe
    from affectllm.train.loop import train

    small = bool(os.environ.get("GPU_CHECK_SMALL"))
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    spec = preset_spec("tiny")
    spec["text_config"] = dict(QWEN2_05B, **({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 1,
                                              "num_key_value_heads": 1, "intermediate_size": 128,
                                              "vocab_size": 266} if small else {}))
    spec["audio_config"] = spec["vision_config"] = None
    model, processor = build_from_spec(spec, dtype="bfloat16")
    n_params = sum(p.numel() for p in model.parameters())
    AffectPipeline(model, processor).save_pretrained(work / "base")
    del model
    samples = [Sample(id=f"s{i}", corpus="synthetic", split="train", text=f"I feel {LABELS[i % 6]} about this",
                      labels=[LABELS[i % 6]], label=LABELS[i % 6], label_set="ravdess",
                      explanation=f"Evidence: text (words). The text says 'I feel {LABELS[i % 6]}'.")
               for i in range(32)]
    manifest = write_manifest(work / "train.jsonl", samples, root=work)
    summary: dict = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                     "torch": torch.__version__, "llm_params": n_params}
    common = {"data": {"corpora": [str(manifest)], "split": "train", "data_root": str(work), "modalities": ["text"]},
              "run": {"save_every": 2, "tensorboard": False}}
    stages = {
        "sft_qlora": {"stage": "sft", "model": {"base": str(work / "base"), "dtype": "bfloat16"},
                      "lora": {"enabled": True, "r": 16, "alpha": 32, "quantize_4bit": True},
                      "optim": {"lr": 2e-4, "warmup_steps": 0, "max_steps": 4, "batch_size": 4}},
        "grpo": {"stage": "grpo", "model": {"base": None, "dtype": "bfloat16"}, "lora": {"enabled": True},
                 "optim": {"lr": 5e-5, "warmup_steps": 0, "max_steps": 3, "batch_size": 2},
                 "grpo": {"num_generations": 4, "max_new_tokens": 32, "beta": 0.04}},
    }
    final = None
    for name, tree in stages.items():
        tree = {**tree, "name": name, **{k: dict(v) for k, v in common.items()}}
        tree["run"]["output_dir"] = str(work / name)
        if tree["model"]["base"] is None:
            tree["model"]["base"] = str(final)
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tree))
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        final = train(load_recipe(path), progress=False)
        records = [json.loads(ln) for ln in (work / name / "metrics.jsonl").read_text().splitlines()]
        summary[name] = {
            "wall_s": round(time.time() - t0, 1),
            "steps": len(records),
            "loss": [round(r["loss"], 4) for r in records],
            "step_s": [r["step_s"] for r in records],
            "reward": [round(r.get("reward", float("nan")), 3) for r in records] if name == "grpo" else None,
            "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available()
            else None,
            "artifact_files": sorted(p.name for p in Path(final).iterdir()),
        }
    print(json.dumps(summary, indent=2))
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
