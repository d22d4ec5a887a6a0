#!/usr/bin/env bash
# Side-by-side training and generation throughput: PyTorch (with and without oneDNN), candle-nn's own
# LSTM/GRU and seqlab, driven by the reference driver ../shared/bench/run_all.py (which waits for an idle
# machine, alternates the order, repeats disturbed runs and writes medians).
#
#   TORCH_PY=/path/to/venv/bin/python crates/bench/scripts/compare.sh [SCRATCH_DIR] [REPS]
#
# The shared folder is read-only, so the reference is copied to SCRATCH_DIR (default /tmp/seqlab-compare),
# where candle_rnn_bench is built; results land in SCRATCH_DIR/results/summary_*.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
shared=${SEQLAB_SHARED:-$root/../shared}
scratch=${1:-/tmp/seqlab-compare}
reps=${2:-3}
: "${TORCH_PY:?set TORCH_PY to a python with torch (see ../shared/bench/README.md)}"

mkdir -p "$scratch"
cp -r "$shared/bench/." "$scratch/"
(cd "$root" && cargo build --release -p seqlab-bench)
(cd "$scratch/candle_rnn_bench" && cargo build --release)
export TORCH_PY
python3 "$scratch/run_all.py" --reps "$reps" --out "$scratch/results" \
    --impls torch,torch-nomkldnn,candle,seqlab \
    --cmd "seqlab=$root/target/release/seqlab-bench --only {cfg} --rep {rep}"
