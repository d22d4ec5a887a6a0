#!/usr/bin/env bash
# The load figures of docs/serve.md: for N = 1, 8, 64 concurrent streaming clients, SECONDS each, against a
# char model, with batching (--max-batch 64) and without (--max-batch 1); a fresh server per run, so that its
# peak memory is that run's. One JSON line per run on stdout.
#   crates/bench/scripts/serve_load.sh MODEL_DIR [SECONDS] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
MODEL=$1; SECONDS_EACH=${2:-60}; MAX_TOKENS=${3:-100}
NAME=$(basename "$(cd "$MODEL" && pwd)")
for batch in 64 1; do
  for n in 1 8 64; do
    log=$(mktemp)
    target/release/seqlab serve --model "$MODEL" --port 0 --max-batch "$batch" > "$log" 2>&1 &
    pid=$!
    until grep -q "listening on" "$log"; do sleep 0.1; done
    base=$(grep -o "http://[0-9.:]*" "$log" | head -1)
    python3 crates/bench/scripts/serve_load.py --base "$base" --model "$NAME" --clients "$n" \
      --seconds "$SECONDS_EACH" --max-tokens "$MAX_TOKENS" --pid "$pid" --label "max-batch $batch"
    kill -TERM "$pid"; wait "$pid" || true
    rm -f "$log"
  done
done
