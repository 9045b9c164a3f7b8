"""Slow: `mini` (real Gemma-3-270M) through gateway + vLLM gives exactly the transformers tokens in fp32, for a
text-only, an audio, an image and a video request (bench/parity_serving.py, which also reports bf16 drift).
Run with `pytest -m slow tests/test_serve_parity_mini.py`."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_mini_fp32_gateway_vllm_equals_transformers(tmp_path):
    from affectllm.serve.launcher import vllm_missing_reason
    from affectllm.weights import GEMMA3_270M_GGUF_SHA256, cache_dir, is_complete

    if vllm_missing_reason():
        pytest.skip(vllm_missing_reason())
    if not is_complete(cache_dir() / "gemma-3-270m-bfloat16", GEMMA3_270M_GGUF_SHA256):
        pytest.skip("mini weights not converted (affectllm prepare)")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "parity_serving.py"), "--model", "mini", "--dtype",
                          "float32", "--n-text", "1", "--n-media", "1", "--max-new-tokens", "16",
                          "--json", str(tmp_path / "parity.json")], capture_output=True, text=True, timeout=1700)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    same, total = re.search(r"identical: (\d+)/(\d+)", out.stdout).groups()
    assert same == total and int(total) >= 1, out.stdout[-2000:]
