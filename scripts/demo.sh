#!/usr/bin/env bash
# Main job on the embedded default `mini` (affectllm demo): prepare the offline weights (once), fine-tune briefly on
# real GoEmotions text from ../shared/data, serve the result through the gateway + vLLM, run the `demo` eval group
# against the server, write runs/demo/eval/report.md with plots and print one chat example with its explanation.
# A second run reuses what the first one built.
set -euo pipefail
data="${1:-../shared/data}"
exec .venv/bin/affectllm demo --data "$data" --output runs/demo
