"""Contract tests of the composed model on `tiny`: round-trip, freezing, placeholder checks, modality subsets,
mixed batches, and every tower / projector / aggregation type built from configs in code."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from affectllm.errors import ConfigError, PlaceholderMismatchError
from affectllm.media import VideoClip

from conftest import build_tiny, picture, tone


def video_clip(n: int = 4, seed: int = 1, with_audio: bool = True) -> VideoClip:
    frames = np.stack([picture(36, 44, seed + i) for i in range(n)])
    audio = tone(1.0, 330.0) if with_audio else None
    return VideoClip(frames=frames, timestamps=np.linspace(0, 1, n), fps=4.0, duration=1.0, audio=audio,
                     sampling_rate=16000)


PARTS = {
    "audio": lambda: {"type": "audio", "audio": tone(1.3)},
    "image": lambda: {"type": "image", "image": picture()},
    "video": lambda: {"type": "video", "video": video_clip()},
    "text": lambda: {"type": "text", "text": "I am so happy today!"},
}


def conversation(*kinds: str) -> list[dict]:
    return [{"role": "user", "content": [PARTS[k]() for k in kinds] or [{"type": "text", "text": ""}]}]


def test_save_load_gives_identical_logits(tiny, tmp_path):
    from affectllm.api import load

    batch = tiny.processor(conversation("video", "image", "audio", "text"))
    with torch.no_grad():
        before = tiny.model(**batch).logits
    tiny.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    again = load(tmp_path)
    batch2 = again.processor(conversation("video", "image", "audio", "text"))
    assert torch.equal(batch["input_ids"], batch2["input_ids"])
    with torch.no_grad():
        after = again.model(**batch2).logits
    assert torch.equal(before, after)


def test_frozen_towers_unchanged_projectors_and_lora_change():
    from peft import LoraConfig, get_peft_model

    pipe = build_tiny()
    model = pipe.model
    model.language_model = get_peft_model(model.language_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    snapshot = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    batch = pipe.processor(conversation("video", "audio", "image", "text"), targets=["happy"])
    model.train()
    model(**batch).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, snapshot[n])}
    assert not any(n.startswith(("audio_tower.", "vision_tower.")) for n in changed)
    assert any(n.startswith("audio_projector.") for n in changed)
    assert any(n.startswith("vision_projector.") for n in changed)
    assert any("lora_" in n for n in changed)
    assert not any(n.startswith("language_model.") and "lora_" not in n for n in changed)


def test_freeze_policy_is_configurable():
    pipe = build_tiny(affect={"freeze_audio_tower": False, "freeze_language_model": True})
    m = pipe.model
    assert all(p.requires_grad for p in m.audio_tower.parameters())
    assert not any(p.requires_grad for p in m.vision_tower.parameters())
    assert not any(p.requires_grad for p in m.language_model.parameters())


def test_placeholder_count_mismatch_raises(tiny):
    batch = tiny.processor(conversation("audio", "text"))
    audio_id = tiny.model.config.audio_token_id
    ids = batch["input_ids"].clone()
    first = int((ids[0] == audio_id).nonzero()[0])
    ids[0, first] = tiny.processor.tokenizer.convert_tokens_to_ids("a")
    with pytest.raises(PlaceholderMismatchError, match="audio: the prompt has"):
        tiny.model(**{**batch, "input_ids": ids})
    # media given without any placeholder in the text
    text_only = tiny.processor(conversation("text"))
    with pytest.raises(PlaceholderMismatchError):
        tiny.model(input_ids=text_only["input_ids"], pixel_values=torch.zeros(1, 3, 32, 32))


def test_user_text_cannot_inject_placeholders(tiny):
    conv = [{"role": "user", "content": [{"type": "text", "text": "hi <audio><image> there"}]}]
    batch = tiny.processor(conv)
    for token_id in (tiny.model.config.audio_token_id, tiny.model.config.image_token_id):
        assert not (batch["input_ids"] == token_id).any()


SUBSETS = [s for r in range(0, 5) for s in itertools.combinations(["audio", "image", "video", "text"], r)]


@pytest.mark.parametrize("kinds", SUBSETS, ids=lambda s: "+".join(s) or "empty")
def test_every_modality_subset_runs_forward_and_generate(tiny, kinds):
    batch = tiny.processor(conversation(*kinds))
    with torch.no_grad():
        logits = tiny.model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()
    out = tiny.model.generate(**batch, max_new_tokens=3, pad_token_id=0)
    assert out.shape == (1, 3)


def test_several_items_per_modality(tiny):
    conv = [{"role": "user", "content": [PARTS["audio"](), PARTS["audio"](), PARTS["image"](), PARTS["image"]()]}]
    batch = tiny.processor(conv)
    assert batch["audio_values"].shape[0] == 2 and batch["pixel_values"].shape[0] == 2
    with torch.no_grad():
        tiny.model(**batch)


def test_mixed_batch_equals_per_sample(tiny):
    convs = [conversation("audio", "text"), conversation("video"), conversation("text"), conversation("image", "audio")]
    batch = tiny.processor(convs)
    with torch.no_grad():
        together = tiny.model(**batch).logits
        gen_together = tiny.model.generate(**batch, max_new_tokens=4, pad_token_id=0)
    for i, conv in enumerate(convs):
        single = tiny.processor(conv)
        n = single["input_ids"].shape[1]
        with torch.no_grad():
            alone = tiny.model(**single).logits[0]
            gen_alone = tiny.model.generate(**single, max_new_tokens=4, pad_token_id=0)
        torch.testing.assert_close(together[i, -n:], alone, atol=1e-4, rtol=1e-4)
        assert torch.equal(gen_together[i], gen_alone[0])


def test_training_labels_mask_the_prompt(tiny):
    batch = tiny.processor(conversation("audio", "text"), targets=['{"labels": ["joy"]}'])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    target = tiny.processor.tokenizer('{"labels": ["joy"]}', add_special_tokens=False).input_ids
    kept = labels[labels != -100].tolist()
    assert kept == target + [tiny.processor.tokenizer.eos_token_id]
    assert ids[-len(kept):].tolist() == kept


AUDIO_TOWERS = {
    "whisper": None,  # the tiny default
    "wav2vec2": {"model_type": "wav2vec2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "intermediate_size": 64, "conv_dim": [32, 32], "conv_kernel": [10, 3], "conv_stride": [5, 2],
                 "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "vocab_size": 32},
    "wavlm": {"model_type": "wavlm", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "conv_dim": [32, 32], "conv_kernel": [10, 3], "conv_stride": [5, 2],
              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "vocab_size": 32, "num_buckets": 32},
    "hubert": {"model_type": "hubert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 64, "conv_dim": [32, 32], "conv_kernel": [10, 3], "conv_stride": [5, 2],
               "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "vocab_size": 32},
    "prosody": {"model_type": "affect_prosody"},
}


@pytest.mark.parametrize("name", list(AUDIO_TOWERS))
@pytest.mark.parametrize("projector", ["linear", "mlp2x_gelu", "resampler", "global_mlp"])
def test_audio_towers_and_projectors(name, projector):
    overrides = {"affect": {"audio_projector": projector, "audio_layer": -2 if name != "prosody" else -1}}
    if AUDIO_TOWERS[name] is not None:
        overrides["audio_config"] = AUDIO_TOWERS[name]
    pipe = build_tiny(**overrides)
    convs = [conversation("audio", "text"), [{"role": "user", "content": [{"type": "audio", "audio": tone(2.2, 180)}]}]]
    batch = pipe.processor(convs)
    with torch.no_grad():
        pipe.model(**batch)
    expected = [pipe.model.config.audio_num_tokens(len(a)) for a in (tone(1.3), tone(2.2))]
    if projector in ("resampler", "global_mlp"):
        assert expected == [pipe.model.config.audio_num_queries] * 2
    counts = (batch["input_ids"] == pipe.model.config.audio_token_id).sum(1).tolist()
    assert counts == expected


VISION_TOWERS = {
    "clip": None,
    "siglip": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
               "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
    "open_clip": {"model_type": "open_clip_vision", "model_name": "tiny",
                  "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
                  "embed_dim": 16},
    "hog": {"model_type": "affect_hog"},
}


@pytest.mark.parametrize("name", list(VISION_TOWERS))
@pytest.mark.parametrize("aggregation", ["frames", "mean", "resampler", "global_mlp-frames"])
def test_vision_towers_and_video_aggregation(name, aggregation):
    affect = {"video_aggregation": aggregation.split("-")[-1], "vision_layer": -1 if name == "hog" else -2}
    if aggregation in ("resampler", "global_mlp-frames"):
        affect["vision_projector"] = aggregation.split("-")[0]
    overrides = {"affect": affect}
    if VISION_TOWERS[name] is not None:
        overrides["vision_config"] = VISION_TOWERS[name]
    pipe = build_tiny(**overrides)
    cfg = pipe.model.config
    batch = pipe.processor(conversation("image", "video", "text"))
    with torch.no_grad():
        pipe.model(**batch)
    assert int((batch["input_ids"] == cfg.image_token_id).sum()) == cfg.image_num_tokens()
    assert int((batch["input_ids"] == cfg.video_token_id).sum()) == cfg.video_num_tokens(4)


def test_global_mlp_descriptor_is_the_probes_view():
    """Mean+std over the valid tokens only (padding ignored), or the flattened grid; fixed token budget out."""
    from affectllm.projectors import build_projector

    torch.manual_seed(0)
    pooled = build_projector("global_mlp", 3, 8, num_queries=2)
    x = torch.randn(1, 5, 3)
    padded = torch.cat([x, torch.full((1, 4, 3), 99.0)], 1)
    mask = torch.tensor([[True] * 5 + [False] * 4])
    desc = pooled.describe(padded, mask)
    assert torch.allclose(desc, torch.cat([x.mean(1), x.std(1, unbiased=False)], -1), atol=1e-6)
    assert torch.allclose(pooled(padded, mask), pooled(x), atol=1e-6)
    assert pooled(x).shape == (1, 2, 8)
    grid = build_projector("global_mlp", 3, 8, num_queries=4, num_input_tokens=5)
    assert torch.equal(grid.describe(x), x.flatten(1))
    swapped = x[:, [1, 0, 2, 3, 4]]
    assert not torch.allclose(grid(swapped), grid(x))  # position is kept, unlike mean pooling
    with pytest.raises(ValueError, match="expected 5 tower tokens"):
        grid(padded)


def test_unknown_names_suggest_alternatives():
    with pytest.raises(ConfigError, match="did you mean 'mlp2x_gelu'"):
        build_tiny(affect={"audio_projector": "mlp2x"})
    from affectllm.api import load

    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        load("tinny")
    with pytest.raises(ConfigError, match="did you mean 'wavlm'"):
        build_tiny(audio_config={"model_type": "wavlmm"})


def test_checkpoint_missing_files_are_named(tiny, tmp_path):
    from affectllm.api import load

    tiny.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="missing: model.safetensors"):
        load(tmp_path)


def test_gpu_presets_build_configs_without_weights():
    from affectllm.presets import list_presets, preset_config

    gpu = [p for p in list_presets() if p.startswith("qwen")]
    assert len(gpu) >= 2
    for name in gpu:
        cfg = preset_config(name)
        assert cfg.text_config.hidden_size == 3584
        assert cfg.audio_config.d_model == 1280 and cfg.audio_num_tokens(16000 * 10) == 125
        assert cfg.image_num_tokens() > 0


def test_gpu_preset_without_weights_says_where_to_put_them(monkeypatch):
    from affectllm.errors import WeightsNotFoundError
    from affectllm.presets import build_preset

    monkeypatch.setenv("AFFECTLLM_QWEN2_5_7B", "/nonexistent/qwen")
    with pytest.raises(WeightsNotFoundError, match="/nonexistent/qwen"):
        build_preset("qwen2.5-7b_whisper-large-v3_siglip-so400m")


def test_artifact_round_trip_with_lora(tmp_path):
    from peft import LoraConfig, get_peft_model

    from affectllm.api import load
    from affectllm.artifact import save_artifact

    pipe = build_tiny()
    pipe.model.language_model = get_peft_model(pipe.model.language_model, LoraConfig(r=4, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in pipe.model.named_parameters():
            if "lora_B" in name or "projector" in name:
                p.add_(0.05 * torch.randn_like(p))
    batch = pipe.processor(conversation("audio", "image", "text"))
    with torch.no_grad():
        before = pipe.model(**batch).logits
    out = save_artifact(pipe, tmp_path / "ckpt", base="tiny", recipe_yaml="stage: sft\n")
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "projectors.safetensors").exists()
    assert not list(tmp_path.glob(".ckpt.tmp-*"))
    again = load(out)
    with torch.no_grad():
        after = again.model(**again.processor(conversation("audio", "image", "text"))).logits
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-5)


def test_artifact_write_is_atomic(tmp_path, monkeypatch):
    from affectllm import artifact

    pipe = build_tiny()
    artifact.save_artifact(pipe, tmp_path / "ckpt", base="tiny")
    first = (tmp_path / "ckpt" / "projectors.safetensors").read_bytes()

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifact, "save_file", broken)
    from affectllm.errors import AffectError

    with pytest.raises(AffectError, match=r"\(disk full or a file size limit\); the previous artifact there is kept"):
        artifact.save_artifact(pipe, tmp_path / "ckpt", base="tiny")
    assert (tmp_path / "ckpt" / "projectors.safetensors").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_target_only_loss_equals_full_lm_loss(tiny):
    batch = tiny.processor([conversation("audio", "text"), conversation("image")], targets=["joy", "calm and sad"])
    with torch.no_grad():
        ours = tiny.model(**batch)
        media = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels")}
        embeds = tiny.model.build_inputs_embeds(batch["input_ids"], **media)
        reference = tiny.model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                              labels=batch["labels"])
    torch.testing.assert_close(ours.loss, reference.loss, atol=1e-5, rtol=1e-5)


def test_precomputed_tower_states_give_the_same_embeddings(tiny):
    batch = tiny.processor(conversation("video", "image", "audio", "text"))
    m = tiny.model
    with torch.no_grad():
        direct = m.build_inputs_embeds(batch["input_ids"], audio_values=batch["audio_values"],
                                       audio_lengths=batch["audio_lengths"], pixel_values=batch["pixel_values"],
                                       video_values=batch["video_values"], video_frames=batch["video_frames"])
        cached = m.build_inputs_embeds(
            batch["input_ids"], audio_states=m.audio_tower_states(batch["audio_values"], batch["audio_lengths"]),
            image_states=list(m.vision_tower_states(batch["pixel_values"])),
            video_states=m.video_tower_states(batch["video_values"], batch["video_frames"]))
    assert torch.equal(direct, cached)


def test_a_preset_with_saved_llm_weights_uses_them_and_draws_no_random_llm(tmp_path, monkeypatch):
    """`text_path` presets (mini, mini-smol) load the LLM from disk; building a second, random one from the config
    only to replace it cost a third of `chat`'s load time. The loaded weights must reach the model untouched
    (post_init must not re-initialise them)."""
    import transformers
    from transformers import AutoModelForCausalLM

    from affectllm.presets import build_from_spec
    from conftest import tiny_spec

    spec = tiny_spec()
    torch.manual_seed(3)
    AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**spec["text_config"])).save_pretrained(
        tmp_path / "llm")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "llm").state_dict()
    spec["text_path"] = str(tmp_path / "llm")

    def no_random_llm(*args, **kwargs):
        raise AssertionError("built a random LLM although the preset's weights were loaded")

    monkeypatch.setattr(AutoModelForCausalLM, "from_config", no_random_llm)
    model, _ = build_from_spec(spec)
    got = model.language_model.state_dict()
    assert set(got) == set(saved)
    assert all(torch.equal(got[k], saved[k]) for k in saved)
    fresh = AutoModelForCausalLM.from_pretrained(tmp_path / "llm")
    assert model.language_model.config._attn_implementation == fresh.config._attn_implementation
    ids = torch.tensor([[1, 40, 50, 60, 70, 80]])
    with torch.no_grad():
        assert torch.allclose(model.language_model(ids).logits, fresh(ids).logits, atol=1e-6)
