#!/usr/bin/env bash
# Main job on the embedded default `mini`: prepare the offline weights (once), then ask it about a real
# MER2023 clip (video frames + audio track + English subtitle) when ../shared/data is present, else a text example.
set -euo pipefail
data="${1:-../shared/data}"
cli=.venv/bin/affectllm
$cli prepare >/dev/null
clip="$data/av/mer2023/examples/sample_00000338.mp4"
if [ -f "$clip" ]; then
  subtitle=$(.venv/bin/python -c 'import csv,sys; print(next(r["subtitle_en"] for r in csv.DictReader(open(sys.argv[1])) if r["name"]=="sample_00000338"))' "$data/av/mer2023/clip_index.csv")
  echo "[demo] mini on a real MER2023 clip: $clip"
  $cli chat --model mini --video "$clip" --text "$subtitle"
else
  echo "[demo] ../shared/data not found: text-only example"
  $cli chat --model mini --text "I waited two hours and nobody even called to say they were late."
fi
