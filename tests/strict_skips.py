"""Strict CI (issue 12): with AFFECTLLM_STRICT_SKIPS=1 (set by `.ci/run`) a test that skips because the data kit
or the vLLM environment is missing FAILS when that resource is in fact present, so the exact-metric and end-to-end
tests cannot silently stop running. Imported by conftest.py; the hooks only look at skip reasons.

* data: ../shared/data (or $AFFECTLLM_STRICT_DATA) is a folder and the reason says the data is not available;
* vllm: .venv-vllm/bin/python exists and the reason says there is no vLLM environment.
`ALLOWED` lists node ids that may still skip, each with the reason why."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_REASONS = re.compile(r"real data not available|shared data not present|not in the data kit")
VLLM_REASONS = re.compile(r"no vLLM environment")
ALLOWED: dict[str, str] = {}


def strict_failure(nodeid: str, reason: str) -> str | None:
    """Why this skip must fail under strict mode, or None."""
    if os.environ.get("AFFECTLLM_STRICT_SKIPS") != "1" or nodeid in ALLOWED:
        return None
    data = Path(os.environ.get("AFFECTLLM_STRICT_DATA") or REPO.parent / "shared" / "data")
    if DATA_REASONS.search(reason) and data.is_dir():
        return f"strict CI: skipped although the data kit {data} is present ({reason})"
    if VLLM_REASONS.search(reason) and (REPO / ".venv-vllm" / "bin" / "python").exists():
        return f"strict CI: skipped although .venv-vllm was built ({reason})"
    return None


def _reason(report) -> str:
    lr = report.longrepr
    return str(lr[2]) if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


def _strict(report) -> None:
    if report.skipped:
        why = strict_failure(report.nodeid, _reason(report))
        if why:
            report.outcome, report.longrepr = "failed", why


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _strict(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _strict(outcome.get_result())
