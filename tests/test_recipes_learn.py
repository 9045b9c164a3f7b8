"""The pieces that make recipes learn, on `tiny`: projected media at the text-embedding scale, tower statistics
fitted on train and carried by the artifact (refused when they do not fit), align-then-LoRA schedule, label-token
loss and metrics, the HF forward contract, the multi-format mixture and its parse-time errors, dev-only selection."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from affectllm import load
from affectllm.data import Sample
from affectllm.errors import ConfigError
from affectllm.train import load_recipe
from affectllm.train.loop import TrainingDiverged, group_schedules, train

from test_train import manifest, tiny_recipe  # noqa: F401  (module fixture reused)


@pytest.fixture(scope="module")
def tiny():
    return load("tiny")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    import soundfile as sf
    from PIL import Image

    from conftest import picture, tone

    root = tmp_path_factory.mktemp("media")
    sf.write(root / "a.wav", tone(0.5, 220.0), 16000)
    Image.fromarray(picture(40, 40, seed=1)).save(root / "f.png")
    for i in range(6):
        Image.fromarray(picture(32, 32, seed=i)).save(root / f"p{i}.png")
    return root


def _inputs(pipe, media):
    msgs, _ = pipe.build_messages(text="hello there", audio=str(media / "a.wav"), image=str(media / "f.png"))
    return pipe.processor([msgs], targets=['{"labels": ["happy"]}'])


def test_projected_tokens_match_the_text_embedding_norm(tiny, media):
    model = tiny.model
    batch = _inputs(tiny, media)
    text_norm = model.text_embedding_norm()
    emb = model.get_input_embeddings().weight
    assert text_norm == pytest.approx(float(emb.norm(dim=-1).mean()) * float(getattr(
        model.get_input_embeddings(), "embed_scale", 1.0)), rel=1e-5)
    with torch.no_grad():
        states = model.audio_tower_states(batch["audio_values"], batch["audio_lengths"])
        model.config.projector_output_norm = False
        raw = torch.cat(model.project_audio(states)).norm(dim=-1).mean()
        model.config.projector_output_norm = True
        try:
            audio = torch.cat(model.project_audio(states)).norm(dim=-1)
            image = torch.cat(model.get_image_features(batch["pixel_values"])).norm(dim=-1)
        finally:
            model.config.projector_output_norm = False
    # ratio to the text norm: exactly 1 with the norm on; far from it without (random projector)
    assert torch.allclose(audio / text_norm, torch.ones_like(audio), atol=1e-4)
    assert torch.allclose(image / text_norm, torch.ones_like(image), atol=1e-4)
    assert abs(float(raw) / text_norm - 1) > 0.2


def test_forward_returns_logits_with_logits_to_keep_and_the_same_loss(tiny, media):
    batch = _inputs(tiny, media)
    model = tiny.model.eval()
    with torch.no_grad():
        cheap = model(**batch)
        full = model(**batch, logits_to_keep=0)
        last = model(**batch, logits_to_keep=1)
        plain = model(**{k: v for k, v in batch.items() if k != "labels"})
    assert cheap.logits is None and full.loss == pytest.approx(float(cheap.loss), rel=1e-6)
    assert full.logits.shape[:2] == batch["input_ids"].shape and last.logits.shape[1] == 1
    assert torch.allclose(full.logits, plain.logits.float(), atol=1e-4)
    assert torch.allclose(last.logits[:, -1], full.logits[:, -1], atol=1e-5)
    # the loss recomputed from the full logits equals the target-only loss
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    ref = torch.nn.functional.cross_entropy(full.logits[:, :-1][keep], labels[keep])
    assert float(ref) == pytest.approx(float(cheap.loss), rel=1e-5)


def test_align_steps_hold_the_lora_at_zero_then_warm_up(tmp_path, manifest):  # noqa: F811
    recipe = tiny_recipe(tmp_path, manifest, "sft", optim__align_steps=3, optim__warmup_steps=2, optim__max_steps=8)
    groups = [{"name": "llm"}, {"name": "projectors"}]
    llm, proj = group_schedules(recipe, groups, 8)
    assert [llm(s) for s in range(3)] == [0.0, 0.0, 0.0] and llm(3) > 0 and proj(0) > 0
    assert max(llm(s) for s in range(8)) == pytest.approx(1.0) and llm(7) < llm(5)
    train(recipe, progress=False)
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows[:3]] == [0.0, 0.0, 0.0] and rows[3]["lr"] > 0
    assert all(r["lr_projectors"] > 0 for r in rows[:7])
    for key in ("label_loss", "label_token_acc", "label_exact", "text_loss"):
        assert key in rows[0]
    assert all(0.0 <= r["label_token_acc"] <= 1.0 for r in rows)


def test_label_weight_changes_the_loss_not_the_label_loss(tmp_path, manifest):  # noqa: F811
    a = tiny_recipe(tmp_path / "a", manifest, "sft", optim__max_steps=1)
    b = tiny_recipe(tmp_path / "b", manifest, "sft", optim__max_steps=1, data__label_loss_weight=5.0)
    train(a, progress=False)
    train(b, progress=False)
    ra = json.loads((tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()[0])
    rb = json.loads((tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert ra["label_loss"] == pytest.approx(rb["label_loss"], rel=1e-5)
    # the weighted mean of label and text losses lies between them, nearer the label loss with weight 5
    lo, hi = sorted((rb["label_loss"], rb["text_loss"]))
    assert lo - 1e-5 <= rb["loss"] <= hi + 1e-5 and abs(rb["loss"] - rb["label_loss"]) < abs(ra["loss"] - ra["label_loss"])


def test_normalisation_is_fitted_on_train_saved_and_refused_when_it_does_not_fit(media):
    """The prosody/HOG towers of a small feature-tower model: statistics fitted from the training examples,
    restored by load, refused when they do not fit the tower."""
    from affectllm.presets import preset_spec
    from affectllm.towers.hog import HOGVisionEncoder, HOGConfig
    from affectllm.train.normalization import check_normalization, fit_tower_normalization, needs_fit
    from affectllm.train.examples import Example
    hog = HOGVisionEncoder(HOGConfig(image_size=32, cell_size=8))
    assert needs_fit(hog)
    pipe = load("tiny")
    pipe.model.vision_tower = hog  # a feature tower in the tiny model (config kept consistent below)
    pipe.model.config.vision_config = hog.config
    pipe.model.vision_projector = torch.nn.Linear(hog.config.hidden_size, pipe.model.config.text_hidden_size)
    exs = []
    for i in range(6):
        msgs, pid = pipe.build_messages(text="x", image=str(media / f"p{i}.png"))
        exs.append(Example(f"e{i}", msgs, '{"labels": ["happy"]}', pid))
    fitted = fit_tower_normalization(pipe, exs, progress=False)
    assert fitted == {"vision_tower": 6} and not needs_fit(hog)
    tokens = hog(pipe.processor([exs[0].messages])["pixel_values"]).last_hidden_state
    assert abs(float(tokens.mean())) < 1.0
    with pytest.raises(ConfigError, match="feature dims"):
        check_normalization(hog, [0.0] * 3, [1.0] * 3, "test")
    with pytest.raises(ConfigError, match="positive"):
        check_normalization(hog, hog.config.norm_mean, [0.0] * len(hog.config.norm_mean), "test")
    assert preset_spec("mini")["affect"]["projector_output_norm"] is True


def test_artifact_round_trips_normalisation_and_refuses_other_towers(tmp_path, manifest):  # noqa: F811
    from safetensors.torch import load_file, save_file

    from affectllm.artifact import PROJECTORS_FILE
    from affectllm.train.normalization import check_normalization

    recipe = tiny_recipe(tmp_path, manifest, "sft", optim__max_steps=1)
    final = train(recipe, progress=False)
    cfg = json.loads((final / "config.json").read_text())
    cfg["vision_config"]["hidden_size"] = 999
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(final, bad)
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="another vision tower"):
        load(bad)
    # normalisation statistics for a tower the base lacks are refused, naming the file
    state = load_file(str(final / PROJECTORS_FILE))
    state["audio_tower.feature_shift"] = torch.zeros(3)
    odd = tmp_path / "odd"
    shutil.copytree(final, odd)
    save_file(state, str(odd / PROJECTORS_FILE))
    with pytest.raises(ConfigError, match=PROJECTORS_FILE):
        load(odd)
    assert check_normalization is not None


def test_non_finite_features_stop_before_the_update(tmp_path, manifest, monkeypatch):  # noqa: F811
    from affectllm.train import encoding

    real = encoding.ExampleEncoder._collate

    def poisoned(self, encoded, side):
        batch = real(self, encoded, side)
        for key in ("audio_states", "image_states"):
            if key in batch:
                batch[key] = [t * float("nan") for t in batch[key]]
        return batch

    monkeypatch.setattr(encoding.ExampleEncoder, "_collate", poisoned)
    recipe = tiny_recipe(tmp_path, manifest, "sft", optim__max_steps=2)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(recipe, progress=False)
    assert not (tmp_path / "run" / "final").exists()


def _mix_recipe(tmp_path, mixture, **extra):
    tree = {"name": "mix", "model": {"base": "tiny"}, "data": {"mixture": mixture, **extra}}
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(tree))
    return load_recipe(path)


@pytest.mark.parametrize("entry,match", [
    ({"corpus": "nosuch"}, "corpus"),
    ({"corpus": "ravdess", "split": "validation"}, "split"),
    ({"corpus": "ravdess", "weight": 0}, "weight must be > 0"),
    ({"corpus": "ravdess", "formats": {"closed": -1}}, "weight must be > 0"),
    ({"corpus": "ravdess", "formats": {"essay": 1}}, "format"),
    ({"corpus": "/nope/m.jsonl"}, "does not exist"),
    ({"corpus": "ravdess", "colour": "red"}, "unknown key"),
    ({"corpus": "ravdess", "target": "essay"}, "target style"),
])
def test_mixture_errors_at_parse_time(tmp_path, entry, match):
    with pytest.raises(ConfigError, match=match):
        _mix_recipe(tmp_path, [entry])


def test_dev_selection_refuses_a_test_task(tmp_path):
    tree = {"name": "sel", "model": {"base": "tiny"}, "run": {"eval_task": "rec_ravdess", "eval_every": 10}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match="dev split"):
        load_recipe(path)
    tree["run"]["eval_task"] = "rec_ravdess_dev"
    path.write_text(yaml.safe_dump(tree))
    assert load_recipe(path).run.eval_task == "rec_ravdess_dev"


def test_mixture_formats_targets_and_balance(tiny, tmp_path):
    """Every format yields the answer its eval parser reads; yes/no is balanced; candidate order varies."""
    from affectllm.data import write_manifest
    from affectllm.evaluation.parsers import parse_letter, parse_yesno, states_missing
    from affectllm.scoring import parse
    from affectllm.train.mixture import build_mixture

    labels = ["happy", "sad", "angry", "calm", "fearful", "neutral"]
    samples = [Sample(id=f"t{i}", corpus="toy", split="train", text=f"sentence number {i}", labels=[labels[i % 6]],
                      label=labels[i % 6], label_set="ravdess") for i in range(240)]
    path = write_manifest(tmp_path / "toy.jsonl", samples, root=tmp_path)
    fmts = {"closed": 1, "ov": 1, "mcq": 1, "yesno": 1, "absent": 1, "modality": 1}
    exs = build_mixture(tiny, [{"corpus": str(path), "formats": fmts}], "train", ["text"], "labels", seed=3,
                        data_root=tmp_path)
    by = {}
    for ex in exs:
        by.setdefault(ex.columns["format"], []).append(ex)
    assert set(by) == set(fmts) and all(len(v) >= 20 for v in by.values())
    for ex in by["closed"] + by["ov"]:
        assert parse(ex.target).labels == [ex.columns["label"]]
    for ex in by["mcq"]:
        prompt = ex.messages[-1]["content"][-1]["text"]
        letter = parse_letter(ex.target)
        assert letter and f"{letter.upper()}. {ex.columns['label']}" in prompt
    answers = [parse_yesno(ex.target) for ex in by["yesno"]]
    assert 0.3 <= answers.count("yes") / len(answers) <= 0.7
    for ex in by["absent"]:
        assert states_missing(ex.target)
    orders = {tuple(line for line in ex.messages[-1]["content"][-1]["text"].split("\n")) for ex in by["closed"]}
    assert len(orders) > len(by["closed"]) // 2
    # reproducible: same seed, same examples
    again = build_mixture(tiny, [{"corpus": str(path), "formats": fmts}], "train", ["text"], "labels", seed=3,
                          data_root=tmp_path)
    assert [e.target for e in again] == [e.target for e in exs]


def test_a_mixture_entry_may_train_on_labels_alone(tiny, tmp_path):
    """`target` per entry: one corpus answers with labels only while the recipe's default keeps an explanation."""
    import json

    from affectllm.data import write_manifest
    from affectllm.train.mixture import build_mixture

    samples = [Sample(id=f"t{i}", corpus="toy", split="train", text=f"sentence number {i}", labels=["happy"],
                      label="happy", label_set="ravdess") for i in range(6)]
    path = write_manifest(tmp_path / "toy.jsonl", samples, root=tmp_path)
    exs = build_mixture(tiny, [{"corpus": str(path), "target": "labels"}, {"corpus": str(path)}], "train", ["text"],
                        "short", seed=0, data_root=tmp_path)
    answers = [json.loads(e.target) for e in exs]
    assert all(set(a) == {"labels"} for a in answers[:6])
    assert all("explanation" in a for a in answers[6:])


def test_a_mixture_entry_may_stay_out_of_alignment(tiny, tmp_path):
    """`align: false` marks an entry's examples so the projector-only steps skip them; a non-bool is refused."""
    from affectllm.data import write_manifest
    from affectllm.train.mixture import build_mixture

    samples = [Sample(id=f"t{i}", corpus="toy", split="train", text=f"sentence number {i}", labels=["happy"],
                      label="happy", label_set="ravdess") for i in range(4)]
    path = write_manifest(tmp_path / "toy.jsonl", samples, root=tmp_path)
    exs = build_mixture(tiny, [{"corpus": str(path)}, {"corpus": str(path), "align": False}], "train", ["text"],
                        "labels", seed=0, data_root=tmp_path)
    assert [e.columns["align"] for e in exs] == [True] * 4 + [False] * 4
    with pytest.raises(ConfigError, match="align must be true or false"):
        build_mixture(tiny, [{"corpus": str(path), "align": "no"}], "train", ["text"], "labels",
                      data_root=tmp_path)


def test_align_steps_draw_only_examples_with_media():
    """In a text + media mixture the projector-only steps see media examples only; afterwards every example is
    drawn, epoch by epoch, as without alignment. The plan is a function of the step (resume-safe)."""
    from affectllm.train.loop import BatchPlan

    media = [1, 4, 5, 8, 9, 12]
    plan = BatchPlan(20, 4, seed=0, align_pool=media, align_steps=5)
    early = [plan.indices(s) for s in range(5)]
    assert all(set(b) <= set(media) and len(b) == 4 for b in early)
    assert set().union(*map(set, early)) == set(media)
    later = [i for s in range(5, 10) for i in plan.indices(s)]  # one full epoch of the whole mixture
    assert sorted(later) == list(range(20))
    again = BatchPlan(20, 4, seed=0, align_pool=media, align_steps=5)
    assert [again.indices(s) for s in (7, 2, 0)] == [plan.indices(s) for s in (7, 2, 0)]
    plain, everything = BatchPlan(20, 4, seed=0), BatchPlan(20, 4, seed=0, align_pool=list(range(20)), align_steps=5)
    assert [plain.indices(s) for s in range(10)] == [everything.indices(s) for s in range(10)]


def test_scenario_format_is_emobench_shaped_with_context_and_uniform_letters(tiny, tmp_path):
    """`scenario`: question about the speaker, 4-6 lettered choices, then the dialogue's earlier lines and the
    speaker's line (never later ones); the bare letter answers, its position spread; multi-label posts get a
    compound choice ("Joy & Gratitude"); the eval's own question wording never appears."""
    from collections import Counter

    from affectllm.data import LABEL_SETS, write_manifest
    from affectllm.evaluation.parsers import parse_letter
    from affectllm.train.mixture import build_mixture

    meld = LABEL_SETS["meld"]
    samples = [Sample(id=f"m{d}-{u}", corpus="toy", split="train", text=f"line {u} of dialogue {d}",
                      labels=[meld[(d + u) % 7]], label=meld[(d + u) % 7], label_set="meld",
                      speaker=["Ross", "Monica"][u % 2], meta={"dialogue_id": d, "utterance_id": u})
               for d in range(30) for u in range(5)]
    go = LABEL_SETS["goemotions"]
    samples += [Sample(id=f"g{i}", corpus="toy", split="train", text=f"post {i}", labels=[go[i % 28], go[(i + 5) % 28]],
                       label=go[i % 28], multi_labels=[go[i % 28], go[(i + 5) % 28]], label_set="goemotions")
                for i in range(60)]
    path = write_manifest(tmp_path / "toy.jsonl", samples, root=tmp_path)
    exs = build_mixture(tiny, [{"corpus": str(path), "formats": {"scenario": 1}}], "train", ["text"], "labels",
                        seed=1, data_root=tmp_path)
    assert len(exs) == len(samples) and {e.columns["format"] for e in exs} == {"scenario"}
    letters_seen = Counter()
    for ex in exs:
        prompt = ex.messages[-1]["content"][-1]["text"]
        assert "ultimately feel" not in prompt
        letter = ex.target
        assert len(letter) == 1 and parse_letter(letter) == letter
        letters_seen[letter] += 1
        options = [line for line in prompt.split("\n") if len(line) > 2 and line[0] in "ABCDEF" and line[1] in ".)"
                   or line[:1] == "(" and line[2:3] == ")"]
        assert 4 <= len(options) <= 6
        chosen = next(o for o in options if o.lstrip("(").startswith(letter))
        sid = ex.id.split("#")[0]
        if sid.startswith("m"):
            d, u = map(int, sid[1:].split("-"))
            assert chosen.endswith(meld[(d + u) % 7].capitalize())
            assert f"line {u} of dialogue {d}" in prompt and f"line {u + 1} of dialogue {d}" not in prompt
            assert all(f"line {k} of dialogue {d}" in prompt for k in range(max(0, u - 3), u))
            assert ["Ross", "Monica"][u % 2] in prompt.split("\n")[1] or ["Ross", "Monica"][u % 2] in prompt
        else:
            i = int(sid[1:])
            assert " & " in chosen and go[i % 28].capitalize() in chosen
    assert set(letters_seen) >= set("ABCD") and max(letters_seen.values()) < 0.4 * len(exs)


def test_every_shipped_recipe_parses_and_chains_from_a_named_stage():
    """Each recipes/*.yaml parses (mixtures validated: corpora, splits, formats, weights); a recipe that continues
    another run names that run's `best` as its base, so the chain of stages is reproducible by name."""
    from affectllm.train.recipe import list_recipes, load_recipe

    names = list_recipes()
    assert {"affect_mix", "affect_mix_stage2", "affect_grpo"} <= set(names)
    recipes = {n: load_recipe(n) for n in names}
    assert recipes["affect_mix_stage2"].model.base == "runs/affect_mix/best"
    assert recipes["affect_grpo"].stage == "grpo" and recipes["affect_grpo"].grpo.beta > 0
    assert any("scenario" in (e.get("formats") or {}) for e in recipes["affect_mix_stage2"].data.mixture)


def test_scenario_context_is_indexed_once_when_two_entries_read_the_same_split(tiny, tmp_path):
    from affectllm.data import LABEL_SETS, write_manifest
    from affectllm.train.mixture import build_mixture

    meld = LABEL_SETS["meld"]
    samples = [Sample(id=f"m0-{u}", corpus="toy", split="train", text=f"line {u} of dialogue 0", labels=[meld[u]],
                      label=meld[u], label_set="meld", speaker="Ross", meta={"dialogue_id": 0, "utterance_id": u})
               for u in range(3)]
    path = write_manifest(tmp_path / "toy.jsonl", samples, root=tmp_path)
    entry = {"corpus": str(path), "formats": {"scenario": 1}}
    exs = build_mixture(tiny, [entry, entry], "train", ["text"], "labels", seed=0, data_root=tmp_path)
    last = [e for e in exs if e.id.startswith("m0-2")]
    for e in last:
        prompt = e.messages[-1]["content"][-1]["text"]
        assert len(last) == 2 and all(prompt.count(f"line {u} of dialogue 0") == 1 for u in range(3)), prompt
