"""Fault injection on real child processes (issue 14, item 3), on `tiny`: kill -9 at a chosen moment of a training
checkpoint write and of an eval run, and a full disk (RLIMIT_FSIZE in the child: writes past the limit fail with
EFBIG, as they would with ENOSPC) while saving an artifact, a checkpoint or eval rows. Each child stops itself at the
chosen moment (a marker file, then sleep) and the test kills it with SIGKILL from outside."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from conftest import DATA, REPO, picture, tone

LABELS = ["happy", "sad", "angry", "calm"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}

PAUSE = '''
import os, sys, time
from pathlib import Path
MARKER = Path(os.environ["FAULT_MARKER"])
def pause():
    """The chosen moment: tell the test, then wait for its SIGKILL."""
    MARKER.write_text(str(os.getpid()))
    time.sleep(3600)
'''


def run_until_killed(code: str, args: list[str], tmp: Path, timeout: float = 240) -> None:
    """Run `code` in a child; SIGKILL it once it reaches pause(). The child must not finish on its own."""
    marker = tmp / f"paused-{time.monotonic_ns()}"
    log = open(tmp / "child.log", "ab")
    proc = subprocess.Popen([sys.executable, "-c", PAUSE + code, *args], cwd=REPO, stdout=log, stderr=log,
                            env={**ENV, "FAULT_MARKER": str(marker)})
    try:
        t0 = time.monotonic()
        while not marker.exists():
            assert proc.poll() is None, f"child ended (rc {proc.returncode}) before the moment:\n" + \
                (tmp / "child.log").read_text()[-3000:]
            assert time.monotonic() - t0 < timeout, "child never reached the moment"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def run_child(code: str, args: list[str], tmp: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


# ---- training: kill -9 while a checkpoint is written -----------------------------------------------------------
@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    from affectllm.data import Sample, write_manifest

    root = tmp_path_factory.mktemp("faults_data")
    samples = []
    for i in range(8):
        lab = LABELS[i % 4]
        sf.write(root / f"a{i}.wav", tone(0.8, 150 + 40 * (i % 4)), 16000)
        Image.fromarray(picture(40, 40, seed=i)).save(root / f"f{i}.png")
        samples.append(Sample(id=f"s{i}", corpus="synthetic", split="train", audio=str(root / f"a{i}.wav"),
                              image=str(root / f"f{i}.png"), text=f"I feel {lab}", labels=[lab], label=lab,
                              label_set="ravdess", explanation=f"Evidence: text (words). It says '{lab}'."))
    manifest = write_manifest(root / "train.jsonl", samples, root=root)
    tree = {"name": "faults_sft", "stage": "sft", "model": {"base": "tiny", "dtype": "float32"},
            "data": {"corpora": [str(manifest)], "split": "train", "data_root": str(root),
                     "modalities": ["text", "audio", "image"]},
            "lora": {"enabled": True, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "optim": {"lr": 5e-3, "projector_lr": 5e-3, "warmup_steps": 0, "max_steps": 6, "batch_size": 2},
            "run": {"output_dir": "OUT", "save_every": 2, "tensorboard": False, "feature_cache": False}}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _recipe(recipe_file: Path, out: Path):
    from affectllm.train import load_recipe

    return load_recipe(recipe_file, [f"run.output_dir={out}"])


def _losses(run: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference_losses(recipe_file, tmp_path_factory) -> list[float]:
    from affectllm.train.loop import train

    run = tmp_path_factory.mktemp("faults_ref") / "run"
    train(_recipe(recipe_file, run), progress=False)
    return _losses(run)


TRAIN_CHILD = '''
import affectllm.train.checkpoint as ck
from affectllm.train import load_recipe
from affectllm.train.loop import train
recipe, out, moment = sys.argv[1:4]
if moment == "mid_optimizer_file":  # step 4's optimizer state half on disk
    real = ck.save_file
    def save_file(tensors, path, *a, **k):
        real(tensors, path, *a, **k)
        if "step-000004" in path and path.endswith("optimizer.safetensors"):
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            pause()
    ck.save_file = save_file
elif moment == "before_latest":  # step 4 complete and renamed, `latest` not yet replaced
    real_replace = os.replace
    def replace(src, dst, *a, **k):
        if Path(dst).name == "latest" and Path(src).read_text().strip() == "step-000004":
            pause()
        return real_replace(src, dst, *a, **k)
    os.replace = replace
train(load_recipe(recipe, [f"run.output_dir={out}"]), progress=False)
'''


@pytest.mark.slow  # a child that imports torch + a resumed and a reference run: 15-35 s on 2 busy cores
@pytest.mark.parametrize("moment", ["mid_optimizer_file", "before_latest"])
def test_kill_during_checkpoint_write_keeps_latest_complete_and_resumes(recipe_file, reference_losses, tmp_path,
                                                                        moment):
    from affectllm.artifact import load_artifact
    from affectllm.train.checkpoint import latest_checkpoint
    from affectllm.train.loop import train
    from safetensors.torch import load_file

    run = tmp_path / "run"
    run_until_killed(TRAIN_CHILD, [str(recipe_file), str(run), moment], tmp_path)
    assert (run / "latest").read_text() == "step-000002"
    ckpt = latest_checkpoint(run)
    assert ckpt == run / "checkpoints" / "step-000002"
    for f in ("trainable.safetensors", "optimizer.safetensors", "rng.safetensors"):
        load_file(str(ckpt / f))  # complete: every tensor file parses
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 2
    load_artifact(ckpt)
    complete = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert complete == (["step-000002"] if moment == "mid_optimizer_file" else ["step-000002", "step-000004"])

    final = train(_recipe(recipe_file, run), progress=False)  # resumes from `latest`, to the end
    assert (run / "latest").read_text() == "step-000006" and final == run / "final"
    load_artifact(final)
    np.testing.assert_allclose(_losses(run), reference_losses, atol=1e-5, rtol=0)
    assert not list((run / "checkpoints").glob(".step-*")), "a partial checkpoint was left behind after resume"


# ---- eval: kill -9 mid-run, rerun ---------------------------------------------------------------------------------
EVAL_CHILD = '''
import json
from affectllm.cli import main
from affectllm.evaluation.store import SampleStore, _jsonable
real = SampleStore.append
calls = [0]
def append(self, rows):
    rows = list(rows)
    calls[0] += 1
    if calls[0] == 3 and len(rows) > 1:  # one row whole, the next cut mid-line, then killed
        real(self, rows[:1])
        with open(self.path, "a", encoding="utf-8") as f:
            line = json.dumps(rows[1], ensure_ascii=False, default=_jsonable)
            f.write(line[: len(line) // 2])
        pause()
    return real(self, rows)
SampleStore.append = append
main(sys.argv[1:])
'''


@pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not available: {DATA}")
def test_kill_during_eval_then_rerun_gives_the_same_rows_once(tmp_path):
    from affectllm.cli import main

    def args(out: Path) -> list[str]:
        return ["eval", "--model", "dummy", "--tasks", "hall_pairs_ckplus,zs_meld", "--limit", "4", "--output",
                str(out), "--bootstrap", "20", "--no-progress", "--batch-size", "2"]

    assert main(args(tmp_path / "clean")) == 0
    run_until_killed(EVAL_CHILD, args(tmp_path / "killed"), tmp_path)
    torn = [p for p in (tmp_path / "killed").glob("*/samples.jsonl") if not p.read_text().endswith("\n")]
    assert torn, "the kill did not land mid-line"
    assert main(args(tmp_path / "killed")) == 0

    def rows(out: Path) -> dict[str, list[dict]]:
        return {p.parent.name: [json.loads(ln) for ln in p.read_text().splitlines()]
                for p in sorted(out.glob("*/samples.jsonl"))}

    clean, rerun = rows(tmp_path / "clean"), rows(tmp_path / "killed")
    assert set(clean) == set(rerun) == {"hall_pairs_ckplus", "zs_meld"}
    for task in clean:
        keys = [r["key"] for r in rerun[task]]
        assert len(keys) == len(set(keys)), f"{task}: duplicate rows after the rerun"
        assert sorted(rerun[task], key=lambda r: r["key"]) == sorted(clean[task], key=lambda r: r["key"])
    summary = lambda out: {t: s.get("metrics") for t, s in json.loads((out / "summary.json").read_text())["tasks"].items()}  # noqa: E731
    assert summary(tmp_path / "killed") == summary(tmp_path / "clean")


# ---- a full disk ------------------------------------------------------------------------------------------------
FULL_DISK_CHILD = '''
import json, resource, shutil, sys
from pathlib import Path
from affectllm.api import load
from affectllm.artifact import save_artifact
from affectllm.evaluation.store import SampleStore
out, limit = Path(sys.argv[1]), int(sys.argv[2])
pipe = load("tiny")
save_artifact(pipe, out / "kept", base="tiny")  # a complete artifact, written before the disk fills up
store = SampleStore(out / "eval", {"task": "t", "version": 1})
store.append([{"key": "0/a", "raw": "fine"}])
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
results = {}
for name, call in (("new", lambda: save_artifact(pipe, out / "new", base="tiny")),
                   ("over", lambda: save_artifact(pipe, out / "kept", base="tiny")),
                   ("rows", lambda: store.append([{"key": "0/b", "raw": "x" * (2 * limit)}]))):
    try:
        call()
        results[name] = "saved"
    except Exception as e:
        results[name] = f"{type(e).__name__}: {e}"
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
print(json.dumps(results))
'''


def test_full_disk_while_saving_artifact_or_eval_rows(tmp_path):
    from affectllm.artifact import load_artifact
    from affectllm.evaluation.store import SampleStore

    limit = 64 * 1024  # the artifact's small files fit, its weights do not
    done = run_child(FULL_DISK_CHILD, [str(tmp_path), str(limit)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("new", "over"):
        assert results[name].startswith("AffectError: cannot save the artifact"), results[name]
        assert "File too large" in results[name] and "disk full" in results[name]
    assert "nothing was written" in results["new"] and "previous artifact there is kept" in results["over"]
    assert not (tmp_path / "new").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    load_artifact(tmp_path / "kept")  # the complete one is untouched
    assert "File too large" in results["rows"]
    store = SampleStore(tmp_path / "eval", {"task": "t", "version": 1})  # reopened: the torn row is not taken
    assert list(store.rows) == ["0/a"]


CHECKPOINT_FULL_CHILD = '''
import resource, sys
import affectllm.train.checkpoint as ck
import affectllm.train.loop as loop
from affectllm.cli import main
real = ck.save_checkpoint
def save_checkpoint(output_dir, step, *a, **k):
    if step == 4:  # the disk fills up while step 4 is saved
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return real(output_dir, step, *a, **k)
loop.save_checkpoint = save_checkpoint
sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.slow  # a training child: ~14 s on 2 busy cores
def test_full_disk_during_checkpoint_is_one_clear_line_and_latest_stays(recipe_file, tmp_path):
    from affectllm.train.checkpoint import latest_checkpoint

    run = tmp_path / "run"
    done = run_child(CHECKPOINT_FULL_CHILD, ["train", str(recipe_file), f"run.output_dir={run}"], tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("affectllm: error: ") and "File too large" in last and "Traceback" not in done.stderr, \
        done.stderr[-3000:]
    assert (run / "latest").read_text() == "step-000002" and latest_checkpoint(run).name == "step-000002"
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-000002"]
