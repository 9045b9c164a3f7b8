#!/usr/bin/env bash
# Main job (affectllm demo): prepare the offline weights (once), serve the shipped trained default `mini-affect`
# through the gateway + vLLM, chat on a real text, speech clip, face and video, run the `demo` eval group
# against the server and write runs/demo/eval/report.md with plots (`affectllm demo --train` fine-tunes first).
# A second run reuses what the first one built.
set -euo pipefail
data="${1:-${AFFECTLLM_DATA:-../shared/data}}"
exec .venv/bin/affectllm demo --data "$data" --output runs/demo
