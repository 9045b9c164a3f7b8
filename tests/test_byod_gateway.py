"""Bring your own data through the gateway: `tiny` served by `affectllm serve`'s gateway (hf backend, in process);
`affectllm predict --server` and `affectllm eval --manifest` over HTTP give the same answers and the same zero-shot
and calibration numbers as the in-process path, and `affectllm score` reads the predictions as they are."""
from __future__ import annotations

import json

import pytest

from affectllm.cli import main
from affectllm.evaluation.backends import HFBackend
from affectllm.evaluation.manifest_tasks import manifest_tasks
from affectllm.evaluation.predict import predict
from affectllm.evaluation.runner import run_eval

from byod_helpers import crema_like


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow      # a second tiny inside the gateway plus HTTP round trips: ~40 s on the shared 2-core box
def test_predict_and_eval_through_the_gateway_match_in_process(tiny, tmp_path, capsys):
    pytest.importorskip("openai")
    from affectllm.serve.config import ServeConfig
    from affectllm.serve.server import start

    root = tmp_path / "my_corpus"
    crema_like(root)
    manifest, labels = root / "clips.jsonl", root / "labels.yaml"
    assert main(["data", "csv", str(root / "clips.csv"), "--label-set", str(labels), "--split-by", "speaker",
                 "--out", str(manifest)]) == 0
    local = tmp_path / "local.jsonl"
    predict(manifest, local, backend=HFBackend(tiny, batch_size=1), split="test", progress=False)
    tasks, _ = manifest_tasks(manifest, labels, tmp_path / "eval_local", ("zero_shot", "calibration"))
    here = run_eval(tiny, tasks, tmp_path / "eval_local", backend=HFBackend(tiny, batch_size=1), bootstrap=20,
                    progress=False)
    running = start("tiny", backend="hf", cfg=ServeConfig(port=0))
    try:
        remote = tmp_path / "remote.jsonl"
        assert main(["predict", "--manifest", str(manifest), "--server", running.url, "--output", str(remote),
                     "--split", "test", "--concurrency", "4", "--no-progress"]) == 0
        assert "8 prediction(s)" in capsys.readouterr().out
        assert main(["eval", "--model", running.url + "/v1", "--manifest", str(manifest), "--label-set", str(labels),
                     "--suites", "zero_shot,calibration", "--output", str(tmp_path / "eval_remote"), "--bootstrap",
                     "20", "--no-progress"]) == 0
    finally:
        running.stop()
    assert {r["id"]: r["raw"] for r in rows(remote)} == {r["id"]: r["raw"] for r in rows(local)}
    there = json.loads((tmp_path / "eval_remote" / "summary.json").read_text())
    assert there["model"]["backend"] == "openai" and there["model"]["model_id"] == "tiny"
    for name, n in (("zs_clips", 8), ("calib_clips", 16)):
        assert there["tasks"][name]["n_records"] == here["tasks"][name]["n_records"] == n
        assert there["tasks"][name]["metrics"] == pytest.approx(here["tasks"][name]["metrics"], rel=1e-4, nan_ok=True)
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(line + "\n" for line in manifest.read_text().splitlines()
                            if json.loads(line)["split"] == "test"))
    capsys.readouterr()
    assert main(["score", "--gold", str(gold), "--pred", str(remote), "--metric", "closed_set", "--label-set",
                 str(labels), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_samples"] == 8
