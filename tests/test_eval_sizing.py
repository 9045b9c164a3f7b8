"""Sizes (issue 12): every shipped eval task's own default n gives a 95% CI half-width <= 0.05 for a rate, or is its
whole split; `affectllm eval --plan` says so per task without a model."""
from __future__ import annotations

import pytest

from affectllm.evaluation.sizing import N_FOR_TARGET, TARGET_HALF_WIDTH, format_plan, plan_tasks, verdict, \
    worst_half_width
from affectllm.evaluation.tasks import load_catalog, resolve_tasks
from conftest import data_path


def test_bound_and_verdicts():
    assert N_FOR_TARGET == 385
    assert worst_half_width(385) <= TARGET_HALF_WIDTH < worst_half_width(384)
    assert worst_half_width(6) == pytest.approx(0.400, abs=1e-3)  # the old `default` group's ov tasks
    assert verdict(385, 1109) == "ok"
    assert verdict(240, 240) == "whole split"
    assert verdict(70, 1109) == "too small"


def test_full_group_runs_every_suite_of_default_at_task_defaults():
    cat = load_catalog()
    full = {t.name: t.limit for t in resolve_tasks("full")}
    smoke = {t.name for t in resolve_tasks("default")}
    assert smoke <= set(full) and set(full) - smoke == {"ps_ravdess"}  # default asks ps_meld alone
    assert all(limit == cat.tasks[name].limit for name, limit in full.items())


def test_every_task_default_n_reaches_the_target_or_its_whole_split():
    data_path("text", "meld")
    names = sorted(load_catalog().tasks)
    plans = plan_tasks(resolve_tasks(names))
    short = [f"{p.task}: n={p.n} of {p.available}" for p in plans if p.verdict == "too small"]
    assert not short, "tasks whose default n leaves a CI half-width > 0.05 although the split has more: " + \
        ", ".join(short)
    by = {p.task: p for p in plans}
    assert by["zs_meld"].n == 385 and by["zs_meld"].half_width <= 0.05
    assert by["rec_ravdess"].n == by["rec_ravdess"].available == 240  # RAVDESS test speakers: all of them
    assert by["ps_meld"].requests == 12 * by["ps_meld"].n  # twelve prompt variants per sample
    assert by["calib_meld"].n == 385 and by["calib_meld"].requests == 2 * 385  # fit on train + report on dev


def test_plan_of_a_group_limit_flags_it(capsys):
    data_path("text", "meld")
    plans = plan_tasks(resolve_tasks("zs_meld", limit=8))
    assert plans[0].verdict == "too small" and plans[0].n == 8
    text = format_plan(plans)
    assert "zs_meld" in text and "too small" in text and "0.346" in text
