#!/usr/bin/env bash
# Training throughput at 784 steps (Fashion-MNIST pixel by pixel): seqlab's LSTM, GRU, minGRU, minLSTM and
# IndRNN beside PyTorch's LSTM and GRU (the twin, crates/bench/scripts/torch_images.py), 128 units, batch 128,
# 2 threads, one after the other on a quiet machine.
#
#   crates/bench/scripts/images_throughput.sh [STEPS]        # default 20 optimizer steps per run
#
# seqlab's figure is the loop's images/s over the run's steps (its summary line); PyTorch's is the twin's
# examples_per_s over its optimizer steps. Validation is cut to 1000 images (seqlab --valid 1000; the twin's
# --eval-limit 500) and falls outside both figures.
set -euo pipefail
cd "$(dirname "$0")/../../.."
STEPS=${1:-20}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-target/images-throughput}
SEQLAB=${SEQLAB:-target/release/seqlab}
PYTHON=${PYTHON:-/work/venvs/torch/bin/python}
[ -d "$DATA" ] || { echo "skipped: $DATA is absent (Debian: apt-get install dataset-fashion-mnist)"; exit 0; }
mkdir -p "$OUT"
for cell in lstm gru mingru minlstm indrnn; do
    rm -rf "$OUT/$cell"
    line=$("$SEQLAB" images train --data "$DATA" --order pixels --pool mean --hidden 128 --batch 128 \
        --threads 2 --cell "$cell" --steps "$STEPS" --eval-every 100000 --valid 1000 --out "$OUT/$cell" \
        2>/dev/null | grep ' images/s)')
    echo "seqlab $cell pixels: $line"
done
for cell in lstm gru; do
    r=$(THREADS=2 "$PYTHON" crates/bench/scripts/torch_images.py --data "$DATA" --cell "$cell" --order pixels \
        --pool mean --hidden 128 --batch 128 --steps "$STEPS" --eval-every 100000 --eval-limit 500 2>/dev/null)
    echo "pytorch $cell pixels: $r"
done
