"""Comparing finished eval runs: a table with n and CIs for shared tasks, refused when a task version differs."""
from __future__ import annotations

import json

import pytest

from affectllm.errors import AffectError
from affectllm.evaluation.backends import DummyBackend
from affectllm.evaluation.compare import IncomparableRuns, compare_runs
from affectllm.evaluation.runner import run_eval

from conftest import DATA

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not available: {DATA}")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    for name, p in (("good", 1.0), ("bad", 0.0)):
        run_eval("dummy", ["zs_meld"], root / name, backend=DummyBackend(p=p), limit=12, bootstrap=50, progress=False)
    return root


def test_compare_writes_values_with_n_and_ci_side_by_side(two_runs, tmp_path):
    path = compare_runs([two_runs / "good", two_runs / "bad"], tmp_path / "out")
    text = path.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| zs_meld |") and "accuracy" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "v" + json.loads((two_runs / "good" / "summary.json").read_text())["tasks"]["zs_meld"]["version"]
    assert cells[3].startswith("1.000") and cells[3].endswith("(n=12)")
    assert cells[4].startswith("0.000") and "(n=12)" in cells[4] and cells[5] == "same"
    assert (tmp_path / "out" / "compare.png").stat().st_size > 1000


def test_compare_refuses_different_task_versions_and_names_the_task(two_runs, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    summary = json.loads((two_runs / "bad" / "summary.json").read_text())
    summary["tasks"]["zs_meld"]["version"] = "0"
    (old / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(IncomparableRuns, match=r"zs_meld: good v\d+, old v0"):
        compare_runs([two_runs / "good", old], tmp_path / "out")
    assert not (tmp_path / "out" / "compare.md").exists()


def test_compare_bad_input(two_runs, tmp_path):
    with pytest.raises(AffectError, match="at least two"):
        compare_runs([two_runs / "good"], tmp_path / "o")
    with pytest.raises(AffectError, match="no summary.json"):
        compare_runs([two_runs / "good", tmp_path], tmp_path / "o")


def test_cli_compare(two_runs, tmp_path, capsys):
    from affectllm.evaluation.cli import main

    assert main(["--compare", str(two_runs / "good"), str(two_runs / "bad"), "--output", str(tmp_path / "c")]) == 0
    assert "compare.md" in capsys.readouterr().out and (tmp_path / "c" / "compare.md").is_file()
