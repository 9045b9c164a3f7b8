"""Leave-one-corpus-out transfer (affectllm.transfer) on `tiny` and real text corpora: each fold trains
on every corpus but one with the same budget, every fold and the untuned base answer every corpus' zero-shot task,
the matrix and heat-map are written, and a second run trains nothing again."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import DATA


def test_fold_mixture_drops_exactly_the_held_out_corpus():
    from affectllm.errors import ConfigError
    from affectllm.transfer import fold_mixture
    from affectllm.train import load_recipe

    mixture = load_recipe("transfer_fold").data.mixture
    assert [e["corpus"] for e in fold_mixture("meld", mixture)] == ["goemotions", "semeval2018_ec"]
    with pytest.raises(ConfigError, match="not in the transfer_fold"):
        fold_mixture("ravdess", mixture)


def test_transfer_matrix_on_tiny(tmp_path):
    for c in ("goemotions", "meld"):
        if not (DATA / "text" / c).is_dir():
            pytest.skip(f"real data not available: {DATA / 'text' / c}")
    from affectllm.transfer import run_transfer

    out = tmp_path / "transfer"
    res = run_transfer(out, corpora=["goemotions", "meld"], steps=2, limit=2, base="tiny", progress=False)
    assert list(res["matrix"]) == ["untuned", "without goemotions", "without meld"]
    assert all(set(row) == {"goemotions", "meld"} for row in res["matrix"].values())
    assert all(cell["n"] == 2 and cell["status"] == "ok" for row in res["matrix"].values() for cell in row.values())
    assert res["transfer_cells"] == {c: res["matrix"][f"without {c}"][c]["value"] for c in ("goemotions", "meld")}
    trained = yaml.safe_load((out / "without_meld" / "final" / "recipe.yaml").read_text())
    assert [e["corpus"] for e in trained["data"]["mixture"]] == ["goemotions", "semeval2018_ec"]
    assert trained["optim"]["max_steps"] == 2
    assert json.loads((out / "transfer.json").read_text())["matrix"] == res["matrix"]
    assert (out / "transfer.png").stat().st_size > 5000
    stamp = (out / "without_meld" / "final" / "config.json").stat().st_mtime_ns
    again = run_transfer(out, corpora=["goemotions", "meld"], steps=2, limit=2, base="tiny", progress=False)
    assert (out / "without_meld" / "final" / "config.json").stat().st_mtime_ns == stamp
    assert again["matrix"] == res["matrix"]
