"""What a kill -9 or a full disk leaves behind in a training run, and what resume makes of it (in-process and
fast; the real kills of a training child are in test_faults.py): a torn last line of metrics.jsonl, a disk that
fills up while resume rewrites it, and a checkpoint save that fails half-way."""
from __future__ import annotations

import errno
import json
import logging
import resource
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from affectllm.errors import AffectError
from affectllm.train import checkpoint as ck
from affectllm.train.loop import MetricsLog

ROWS = [json.dumps({"step": s, "loss": 1.0 / s, "note": "x" * 200}) for s in range(1, 7)]


def _metrics(tmp_path: Path, tail: str = "") -> Path:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(r + "\n" for r in ROWS) + tail)
    return path


def _steps(path: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in path.read_text().splitlines()]


def test_resume_drops_a_torn_last_line_with_one_warning(tmp_path, caplog):
    path = _metrics(tmp_path, tail='{"step": 7, "lo')  # killed mid-write
    with caplog.at_level(logging.WARNING, logger="affectllm.train"):
        log = MetricsLog(path, resume_step=4, enabled=True, tensorboard=False)
    assert _steps(path) == [1, 2, 3, 4]
    torn = [r for r in caplog.records if "torn last line" in r.getMessage()]
    assert len(torn) == 1 and str(path) in torn[0].getMessage()
    log.write({"step": 5, "loss": 0.2})
    assert _steps(path) == [1, 2, 3, 4, 5]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"], "a temporary file was left behind"


def test_resume_keeps_a_whole_last_line_without_newline(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text(ROWS[0] + "\n" + ROWS[1])  # complete record, newline not yet written
    with caplog.at_level(logging.WARNING, logger="affectllm.train"):
        MetricsLog(path, resume_step=2, enabled=True, tensorboard=False).write({"step": 3})
    assert _steps(path) == [1, 2, 3] and not caplog.records


def test_a_bad_line_before_the_end_is_named_not_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    text = ROWS[0] + "\n{not json\n" + ROWS[1] + "\n"
    path.write_text(text)
    with pytest.raises(AffectError, match=r"metrics.jsonl line 2 is not JSON"):
        MetricsLog(path, resume_step=6, enabled=True, tensorboard=False)
    assert path.read_text() == text


def test_a_full_disk_during_the_rewrite_leaves_the_old_file_whole(tmp_path):
    """RLIMIT_FSIZE below the rewritten size: the write fails with EFBIG as it would with ENOSPC (Python ignores
    SIGXFSZ). Truncating the file in place, as resume once did, lost the whole curve here."""
    path = _metrics(tmp_path)
    before = path.read_text()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (600, hard))  # the 4 kept rows are ~900 bytes
    try:
        with pytest.raises(OSError) as info:
            MetricsLog(path, resume_step=4, enabled=True, tensorboard=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.errno == errno.EFBIG
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"], "a temporary file was left behind"


def test_failed_checkpoint_save_leaves_no_partial_and_latest_stays(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    pipe = SimpleNamespace(model=model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    def fake_artifact(pipe, out, base, recipe_yaml=None):  # the artifact part is save_artifact's own business
        Path(out).mkdir(parents=True)
        (Path(out) / "config.json").write_text("{}")
    monkeypatch.setattr(ck, "save_artifact", fake_artifact)
    first = ck.save_checkpoint(tmp_path, 2, pipe, "tiny", "", optimizer, scheduler, {})
    real = ck.save_file

    def full_disk(tensors, path, *a, **k):
        if Path(path).name == "optimizer.safetensors":
            Path(path).write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **k)
    monkeypatch.setattr(ck, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        ck.save_checkpoint(tmp_path, 4, pipe, "tiny", "", optimizer, scheduler, {})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000002"]
    assert ck.latest_checkpoint(tmp_path) == first
