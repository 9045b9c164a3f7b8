#!/usr/bin/env bash
# Serve MODEL (a shipped model, preset or artifact) through the gateway + vLLM with its LoRA merged, run eval TASKS
# against it over HTTP, then stop the server. What MODEL_CARD.md's numbers come from:
#   bash scripts/eval_served.sh mini-affect runs/eval/model_card model_card
#   bash scripts/eval_served.sh mini runs/eval/model_card_untuned model_card 100    # the untuned base, 100 per task
set -euo pipefail
model="$1"; out="$2"; tasks="${3:-model_card}"; limit="${4:-}"
port="${PORT:-8011}"
log="$(mktemp -t affectllm-serve.XXXXXX.log)"
.venv/bin/affectllm serve "$model" --port "$port" --merge-lora --max-model-len 2048 > "$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  if curl -sf "http://127.0.0.1:$port/health" > /dev/null; then break; fi
  if ! kill -0 $pid 2>/dev/null; then tail -30 "$log"; exit 1; fi
  sleep 1
done
start=$(date +%s)
.venv/bin/affectllm eval --model "http://127.0.0.1:$port/v1" --served-model "$(basename "$model")" --checkpoint "$model" \
  --tasks "$tasks" --output "$out" --seeds 1 ${limit:+--limit "$limit"}
echo "eval wall time: $(( $(date +%s) - start )) s (server log: $log)"
