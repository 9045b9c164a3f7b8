"""`.ci/run`'s strict mode: a skip for missing data while the data kit is present fails the run (issue 12)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _run(tmp_path: Path, strict: bool, data: Path) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                                          "from strict_skips import pytest_make_collect_report, "
                                          "pytest_runtest_makereport  # noqa\n")
    (tmp_path / "test_x.py").write_text("import pytest\n\ndef test_data():\n"
                                        "    pytest.skip('real data not available: /nowhere')\n\n"
                                        "def test_other():\n    pytest.skip('needs a GPU')\n")
    env = {**os.environ, "AFFECTLLM_STRICT_SKIPS": "1" if strict else "0", "AFFECTLLM_STRICT_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_strict_mode_turns_a_data_skip_into_a_failure(tmp_path):
    (tmp_path / "kit").mkdir()
    loose = _run(tmp_path, strict=False, data=tmp_path / "kit")
    assert loose.returncode == 0 and "2 skipped" in loose.stdout
    strict = _run(tmp_path, strict=True, data=tmp_path / "kit")
    assert strict.returncode == 1 and "1 failed, 1 skipped" in strict.stdout and "strict CI" in strict.stdout
    no_kit = _run(tmp_path, strict=True, data=tmp_path / "absent")
    assert no_kit.returncode == 0 and "2 skipped" in no_kit.stdout


def test_ci_run_is_strict_and_counts_skips():
    text = (TESTS.parent / ".ci" / "run").read_text()
    assert 'AFFECTLLM_STRICT_SKIPS="${AFFECTLLM_STRICT_SKIPS:-1}"' in text and "skipped tests:" in text
