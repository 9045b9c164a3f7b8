"""Task YAML loading: every shipped file validates, includes and groups resolve, limits follow their precedence,
and every mistake (unknown key, name, include cycle, tuning on test, ...) is a clear AffectError."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from affectllm.errors import AffectError, ConfigError
from affectllm.evaluation.tasks import evals_dir, load_catalog, load_yaml, resolve_tasks

from conftest import REPO

TASK = {"task": "t1", "suite": "standard", "dataset": {"corpus": "meld", "split": "dev", "modalities": ["text"]},
        "prompt": {"name": "emotion_ov"}, "metric_list": [{"metric": "closed_set", "options": {"label_set": "meld"}}],
        "metadata": {"version": 1}}


def write(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def catalog_with(tmp_path: Path, **over):
    data = {**TASK, **over}
    write(tmp_path, "t1.yaml", {k: v for k, v in data.items() if v is not None})
    return load_catalog(tmp_path)


def test_every_shipped_yaml_loads_and_is_documented():
    cat = load_catalog()
    assert len(cat.tasks) >= 30 and {"default", "ov", "zero_shot", "prompt_sensitivity", "hallucination",
                                      "calibration", "robustness", "fairness", "emobench"} <= set(cat.groups)
    readme = (evals_dir() / "README.md").read_text()
    for name in cat.names():
        assert f"`{name}`" in readme, f"evals/README.md does not mention {name}"
    for t in cat.tasks.values():
        assert t.version and t.description, t.name
        assert t.temperature == 0.0, f"{t.name}: shipped tasks decode greedily"
    default = cat.resolve(["default"])
    assert {t.suite for t in default} == {"ov", "zero_shot", "prompt_sensitivity", "hallucination", "calibration",
                                          "robustness", "fairness", "emobench"}
    assert all(t.limit is not None and t.limit <= 12 for t in default)


def test_include_merges_and_the_including_file_wins(tmp_path):
    write(tmp_path, "_base.yaml", {"generation": {"max_new_tokens": 10, "temperature": 0.0}, "parser": "emotion",
                                   "metadata": {"version": 3}})
    write(tmp_path, "sub/t2.yaml", {**TASK, "task": "t2", "include": "../_base.yaml",
                                    "generation": {"max_new_tokens": 20}, "metadata": {"version": 4}})
    t = load_catalog(tmp_path).tasks["t2"]
    assert t.generation == {"max_new_tokens": 20, "temperature": 0.0} and t.version == "4"


def test_limit_precedence(tmp_path):
    write(tmp_path, "t1.yaml", {**TASK, "dataset": {**TASK["dataset"], "limit": 50}})
    write(tmp_path, "inner.yaml", {"group": "inner", "task": ["t1"], "limit": 20})
    write(tmp_path, "outer.yaml", {"group": "outer", "task": [{"task": "inner", "limit": 5}]})
    cat = load_catalog(tmp_path)
    assert cat.resolve(["t1"])[0].limit == 50
    assert cat.resolve(["inner"])[0].limit == 20
    assert cat.resolve(["outer"])[0].limit == 5
    assert cat.resolve(["outer"], limit=2)[0].limit == 2
    assert len(cat.resolve(["t1", "inner", "outer"])) == 1                      # deduplicated


@pytest.mark.parametrize("over, match", [
    ({"metric_lst": []}, "unknown key 'metric_lst' (did you mean 'metric_list'?)"),
    ({"dataset": {"corpra": "meld", "corpus": "meld", "split": "dev"}}, "unknown key 'corpra' (did you mean 'corpus'?)"),
    ({"generation": {"max_tokens": 5}}, "did you mean 'max_new_tokens'"),
    ({"dataset": {"corpus": "meldd", "split": "dev"}}, "unknown corpus 'meldd' (did you mean 'meld'?)"),
    ({"dataset": {"corpus": "meld", "split": "tset"}}, "unknown meld split 'tset'"),
    ({"prompt": {"name": "emotion_o"}}, "did you mean 'emotion_ov'"),
    ({"parser": "leter"}, "did you mean 'letter'"),
    ({"suite": "zeroshot"}, "did you mean 'zero_shot'"),
    ({"metric_list": [{"metric": "closed_sett", "options": {"label_set": "meld"}}]}, "did you mean 'closed_set'"),
    ({"metric_list": [{"metric": "closed_set"}]}, "needs options.label_set"),
    ({"metadata": {}}, "metadata.version is required"),
    ({"options": {"leave_one_ou": True}}, "did you mean 'leave_one_out'"),
    ({"generation": {"top_logprobs": 50}}, "top_logprobs must be 0..20"),
    ({"dataset": {"corpus": "meld", "split": "dev", "skip": -1}}, "dataset.skip must be a non-negative integer"),
    ({"dataset": {"corpus": "meld", "split": "dev", "skip": 5, "stratify": "label"}}, "unstratified seeded order"),
])
def test_yaml_mistakes_are_clear_errors(tmp_path, over, match):
    with pytest.raises(AffectError, match=match.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        catalog_with(tmp_path, **over)


def test_test_split_tuning_is_refused(tmp_path):
    cal = {"suite": "calibration", "prompt": {"name": "emotion_closed"},
           "dataset": {"corpus": "ravdess", "split": "test"}}
    with pytest.raises(ConfigError, match="refusing to fit or select anything on a test split"):
        catalog_with(tmp_path, **cal, options={"fit_split": "test"})
    with pytest.raises(ConfigError, match="equals the reported split"):
        catalog_with(tmp_path, **{**cal, "dataset": {"corpus": "ravdess", "split": "dev"}}, options={"fit_split": "dev"})
    with pytest.raises(ConfigError, match="needs options.fit_split"):
        catalog_with(tmp_path, **cal, options={})
    assert catalog_with(tmp_path, **cal, options={"fit_split": "dev"}).tasks["t1"].options["fit_split"] == "dev"


def test_suite_specific_validation(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'probe'"):
        catalog_with(tmp_path, suite="hallucination", options={"probes": "absent"})
    with pytest.raises(ConfigError, match="a paraphrase family needs >= 5"):
        catalog_with(tmp_path, suite="prompt_sensitivity", prompt={"name": "emotion_closed"},
                     options={"paraphrases": ["paraphrase/closed_1"]})
    with pytest.raises(ConfigError, match="needs options.group_by"):
        catalog_with(tmp_path, suite="fairness", options={"metric": "closed_set.accuracy"})


def test_unknown_task_include_cycle_group_cycle_and_duplicates(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown eval task or group 'zs_mld' \(did you mean 'zs_meld'\?\)"):
        resolve_tasks("zs_mld")
    write(tmp_path / "a", "a.yaml", {**TASK, "include": "b.yaml"})
    write(tmp_path / "a", "b.yaml", {"include": "c.yaml"})
    write(tmp_path / "a", "c.yaml", {"include": "b.yaml"})
    with pytest.raises(ConfigError, match=r"include cycle: a.yaml -> b.yaml -> c.yaml -> b.yaml"):
        load_yaml(tmp_path / "a" / "a.yaml")
    write(tmp_path / "g", "t1.yaml", TASK)
    write(tmp_path / "g", "g1.yaml", {"group": "g1", "task": ["g2"]})
    write(tmp_path / "g", "g2.yaml", {"group": "g2", "task": ["t1", "g1"]})
    with pytest.raises(ConfigError, match="group cycle: g1 -> g2 -> g1"):
        load_catalog(tmp_path / "g").resolve(["g1"])
    write(tmp_path / "g", "g3.yaml", {"group": "g3", "task": ["t1", "nope"]})
    with pytest.raises(ConfigError, match="listed in group 'g3'"):
        load_catalog(tmp_path / "g").resolve(["g3"])
    write(tmp_path / "d", "x.yaml", TASK)
    write(tmp_path / "d", "y.yaml", TASK)
    with pytest.raises(ConfigError, match="defined twice"):
        load_catalog(tmp_path / "d")
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_cli_reports_yaml_errors_in_one_line(capsys):
    from affectllm.cli import main

    assert main(["eval", "--model", "dummy", "--tasks", "zs_mld"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("affectllm: error: unknown eval task or group 'zs_mld'") and "Traceback" not in err
    assert main(["eval", "--list"]) == 0
    assert "default" in capsys.readouterr().out


def test_shipped_prompts_have_versions():
    from affectllm.prompts import get_prompt

    for name in ["probe_mcq", "probe_yesno", "probe_absent_modality"] + [
            f"paraphrase/{p.stem}" for p in (REPO / "prompts" / "paraphrase").glob("*.jinja")]:
        p = get_prompt(name)
        assert p.version == "2" and p.id == f"{name}@2"


def test_skip_takes_the_rows_a_limited_run_did_not_see():
    """A held-out task (`skip: N`) must be disjoint from the same split at `limit: N` and continue its seeded order."""
    from affectllm.data import Sample
    from affectllm.evaluation.suites.base import take_subset

    rows = [Sample(id=f"s{i}", corpus="meld", split="dev", text=str(i)) for i in range(50)]
    chosen = take_subset(rows, 20, seed=0)
    held = take_subset(rows, 20, seed=0, skip=20)
    rest = take_subset(rows, None, seed=0, skip=20)
    assert not {s.id for s in chosen} & {s.id for s in held}
    assert [s.id for s in take_subset(rows, 40, seed=0)] == [s.id for s in chosen + held]
    assert len(rest) == 30 and [s.id for s in rest[:20]] == [s.id for s in held]
    cat = load_catalog()
    card = {t.name: t for t in cat.resolve(["model_card"])}
    assert cat.tasks["rec_goemotions_dev_heldout"].dataset["skip"] == card["rec_goemotions_dev_random"].limit == 500
