"""Stage `interpolate` (affectllm.train.interpolate): the blend of two artifacts is exact in weight space (LLM with
its LoRA merged, projectors), the endpoints reproduce their sources, anything that is not two points of one chain is
refused by name, and the recipe stage chooses its weight on dev and resumes."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from affectllm.errors import ConfigError
from conftest import data_path
from serve_helpers import make_lora_artifact


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    a = make_lora_artifact(root / "a", seed=1, rank=8)
    b = make_lora_artifact(root / "b", seed=2, rank=4)
    cfg = json.loads((b / "adapter" / "adapter_config.json").read_text())
    cfg["lora_alpha"] = 3 * cfg["r"]  # another scaling than a's (2): the blend must fold it in
    (b / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    return a, b


def _weights(path) -> dict[str, torch.Tensor]:
    """Every weight the artifact runs with: the LLM with its LoRA merged, and the projectors."""
    from affectllm.artifact import load_artifact

    model = load_artifact(path, dtype="float32", merge_lora=True).model
    return {k: v.detach().double().clone() for k, v in model.state_dict().items()}


def _logits(path) -> torch.Tensor:
    from affectllm.artifact import load_artifact

    pipe = load_artifact(path, dtype="float32")
    batch = pipe.processor([[{"role": "user", "content": [{"type": "text", "text": "I won the match!"}]}]])
    with torch.inference_mode():
        return pipe.model(**batch).logits[0, -1].float()


def test_the_blend_is_exact_in_weight_space(pair, tmp_path):
    from affectllm.train.interpolate import write_interpolated

    a, b = pair
    out = write_interpolated(a, b, 0.3, tmp_path / "mix")
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 12 and adapter["lora_alpha"] == 24  # rank r_a + r_b, a's scaling kept
    wa, wb, wm = _weights(a), _weights(b), _weights(out)
    changed = 0
    for key, m in wm.items():
        expected = 0.7 * wa[key] + 0.3 * wb[key]
        assert torch.allclose(m, expected, atol=1e-5), key
        changed += not torch.allclose(wa[key], wb[key])
    assert changed >= 4  # LoRA-targeted projections and the projectors really differ between a and b
    assert json.loads((out / "interpolation.json").read_text())["alpha"] == 0.3


def test_the_endpoints_are_the_sources(pair, tmp_path):
    from affectllm.train.interpolate import write_interpolated

    a, b = pair
    la, lb = _logits(a), _logits(b)
    assert not torch.allclose(la, lb, atol=1e-3)
    assert torch.allclose(_logits(write_interpolated(a, b, 0.0, tmp_path / "zero")), la, atol=1e-4)
    assert torch.allclose(_logits(write_interpolated(a, b, 1.0, tmp_path / "one")), lb, atol=1e-4)


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage, needle", [
    (lambda p: _edit_json(p / "config.json", lambda c: c.update(affect_base="mini")), "extends 'mini'"),
    (lambda p: _edit_json(p / "config.json", lambda c: c["text_config"].update(num_hidden_layers=7)),
     "text_config.num_hidden_layers"),
    (lambda p: _edit_json(p / "adapter" / "adapter_config.json", lambda c: c.update(target_modules=["q_proj"])),
     "other modules"),
    (lambda p: _edit_json(p / "adapter" / "adapter_config.json", lambda c: c.update(use_dora=True)), "use_dora"),
    (lambda p: (p / "projectors.safetensors").unlink(), "not a trained artifact"),
])
def test_what_is_not_one_chain_is_refused_by_name(pair, tmp_path, damage, needle):
    from affectllm.train.interpolate import write_interpolated

    a, b = pair
    other = _copy(b, tmp_path / "other")
    damage(other)
    with pytest.raises(ConfigError, match=needle):
        write_interpolated(a, other, 0.5, tmp_path / "mix")
    assert not (tmp_path / "mix").exists()


def test_other_normalisation_statistics_are_refused(pair, tmp_path):
    from affectllm.train.interpolate import write_interpolated

    a, b = pair
    a2, b2 = _copy(a, tmp_path / "a2"), _copy(b, tmp_path / "b2")
    for path, shift in ((a2, 0.0), (b2, 0.5)):
        state = load_file(str(path / "projectors.safetensors"))
        state["audio_tower.feature_shift"] = torch.full((6,), shift)
        state["audio_tower.feature_scale"] = torch.ones(6)
        save_file(state, str(path / "projectors.safetensors"))
    with pytest.raises(ConfigError, match="normalisation statistics 'audio_tower.feature_shift' differ"):
        write_interpolated(a2, b2, 0.5, tmp_path / "mix")


@pytest.mark.parametrize("section, match", [
    ({"alphas": [0.5]}, "needs interpolate.start"),
    ({"start": "runs/x/best", "alphas": [1.5]}, r"weights in \[0, 1\]"),
    ({"start": "runs/x/best", "alphas": []}, r"weights in \[0, 1\]"),
])
def test_an_interpolate_recipe_is_checked_at_parse_time(tmp_path, section, match):
    from affectllm.train import load_recipe

    tree = {"name": "wise", "stage": "interpolate", "model": {"base": "runs/y/best"}, "interpolate": section,
            "run": {"eval_task": "rec_meld_dev"}}
    path = tmp_path / "wise.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=match):
        load_recipe(path)
    tree["run"] = {}
    tree["interpolate"] = {"start": "runs/x/best"}
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match="chosen on dev"):
        load_recipe(path)


def test_the_stage_chooses_its_weight_on_dev_and_resumes(pair, tmp_path, monkeypatch):
    """Every weight is evaluated through the dev eval path once; `best` holds the best one with the sources'
    training data in its recipe; a rerun skips what dev_eval.jsonl already holds."""
    import affectllm.train.dev_eval as dev_eval
    from affectllm.train import run_recipe

    data_path("text", "meld")
    a, b = pair
    for path, corpus in ((a, "goemotions"), (b, "meld")):
        (path / "recipe.yaml").write_text(yaml.safe_dump({"name": path.name, "data": {"corpora": [corpus]}}))
    tree = {"name": "wise", "stage": "interpolate", "model": {"base": str(b), "dtype": "float32"},
            "interpolate": {"start": str(a), "alphas": [0.0, 0.5, 1.0]},
            "run": {"output_dir": str(tmp_path / "run"), "eval_task": "rec_meld_dev", "eval_limit": 4,
                    "eval_max_new_tokens": 4}}
    recipe = tmp_path / "wise.yaml"
    recipe.write_text(yaml.safe_dump(tree))
    calls = []
    real = dev_eval.evaluate_on_dev
    monkeypatch.setattr(dev_eval, "evaluate_on_dev", lambda *a, **k: calls.append(k["extra"]) or real(*a, **k))
    best = run_recipe(str(recipe), progress=False)
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "dev_eval.jsonl").read_text().splitlines()]
    assert [r["alpha"] for r in rows] == [0.0, 0.5, 1.0] and calls == [{"alpha": 0.0}, {"alpha": 0.5}, {"alpha": 1.0}]
    chosen = json.loads((tmp_path / "run" / "best" / "selection.json").read_text())
    assert chosen["value"] == max(r["value"] for r in rows) and chosen["alpha"] in (0.0, 0.5, 1.0)
    saved = yaml.safe_load((tmp_path / "run" / "best" / "recipe.yaml").read_text())
    assert [e["corpus"] for e in saved["data"]["mixture"]] == ["goemotions", "meld"]
    assert saved["interpolate"]["start"] == str(a) and best.endswith("best")
    assert not (tmp_path / "run" / "candidate").exists()
    run_recipe(str(recipe), progress=False)
    assert len(calls) == 3  # resumed: nothing evaluated twice


def test_selection_by_the_worst_margin_to_the_bars(tmp_path, monkeypatch):
    """With run.eval_bars the model that clears every bar is chosen over one with a higher mean headline that
    misses a bar; a bar list that does not cover the dev tasks is refused at parse time."""
    import affectllm.artifact as artifact
    import affectllm.evaluation as evaluation
    from affectllm.train import load_recipe
    from affectllm.train.dev_eval import evaluate_on_dev

    bars = {"rec_goemotions_dev": 0.40, "rec_meld_dev": 0.50}
    tree = {"name": "sel", "model": {"base": "tiny"},
            "run": {"eval_task": "rec_text_dev", "eval_every": 10, "eval_bars": {"rec_goemotions_dev": 0.4}}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match="a bar for every task of 'rec_text_dev'"):
        load_recipe(path)
    tree["run"]["eval_bars"] = bars
    path.write_text(yaml.safe_dump(tree))
    recipe = load_recipe(path)
    scores = iter([{"rec_goemotions_dev": 0.35, "rec_meld_dev": 0.80},   # mean 0.575, misses GoEmotions by 0.05
                   {"rec_goemotions_dev": 0.42, "rec_meld_dev": 0.52}])  # mean 0.47, clears both
    saved = []

    def fake_eval(pipe, tasks, **kw):
        got = next(scores)
        return {"tasks": {t.name: {"headline": ["m"], "metrics": {"m": got[t.name]}} for t in tasks}}

    monkeypatch.setattr(evaluation, "run_eval", fake_eval)
    monkeypatch.setattr(artifact, "save_artifact", lambda pipe, out, **kw: saved.append(kw["extra_files"]))
    pipe = type("P", (), {"model": torch.nn.Linear(1, 1)})()
    first = evaluate_on_dev(pipe, recipe, tmp_path, 1, "tiny", progress=False)
    second = evaluate_on_dev(pipe, recipe, tmp_path, 2, "tiny", progress=False)
    assert first["value"] == pytest.approx(-0.05) and first["mean"] == pytest.approx(0.575)
    assert second["value"] == pytest.approx(0.02) and second["best"] and len(saved) == 2
