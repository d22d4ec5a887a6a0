#!/usr/bin/env bash
# Row-by-row Fashion-MNIST within a fixed training budget: seqlab's cells and the PyTorch twin of the same
# model (crates/bench/scripts/torch_images.py), one after the other on a quiet machine, 2 threads each.
#
#   crates/bench/scripts/images_quality.sh [SECONDS] [CELLS...]      # default: 600 s; lstm gru mingru indrnn
#
# Each seqlab run is calibrated first (a 60-step run on the same data gives its images/s), and its step count
# set so that training takes SECONDS; the twin does the same with its --time-budget (20 timed steps). Both
# validate on the last 5000 training images once per epoch (outside the budget) and keep the best weights;
# the test accuracy is that of the kept weights on the 10,000 test images. Results: one JSON line per run
# in $OUT/results.jsonl (OUT defaults to target/images-quality).
set -euo pipefail
cd "$(dirname "$0")/../../.."
BUDGET=${1:-600}
shift || true
CELLS=("$@")
[ ${#CELLS[@]} -gt 0 ] || CELLS=(lstm gru mingru indrnn)
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-target/images-quality}
SEQLAB=${SEQLAB:-target/release/seqlab}
PYTHON=${PYTHON:-/work/venvs/torch/bin/python}
TORCH=${TORCH:-lstm gru}
mkdir -p "$OUT"
[ -d "$DATA" ] || { echo "skipped: $DATA is absent (Debian: apt-get install dataset-fashion-mnist)"; exit 0; }
[ -x "$SEQLAB" ] || { echo "build first: cargo build --release -p seqlab-cli --features images"; exit 1; }
COMMON=(--data "$DATA" --order rows --hidden 128 --batch 128 --threads 2)

for cell in "${CELLS[@]}"; do
    rm -rf "$OUT/calib-$cell" "$OUT/$cell"
    line=$("$SEQLAB" images train "${COMMON[@]}" --cell "$cell" --steps 60 --eval-every 1000 \
        --out "$OUT/calib-$cell" 2>/dev/null | grep ' images/s)')
    rate=$(echo "$line" | sed -E 's/.*\(([0-9]+) images\/s\).*/\1/')
    steps=$(( BUDGET * rate / 128 ))
    echo "$cell: $rate images/s in calibration -> $steps steps" >&2
    start=$(date +%s.%N)
    "$SEQLAB" images train "${COMMON[@]}" --cell "$cell" --steps "$steps" --out "$OUT/$cell" \
        > "$OUT/$cell.train.txt" 2> "$OUT/$cell.train.err"
    end=$(date +%s.%N)
    "$SEQLAB" images eval --model "$OUT/$cell" --json > "$OUT/$cell.eval.json"
    python3 - "$cell" "$steps" "$rate" "$start" "$end" "$OUT" <<'PY'
import json, re, sys
cell, steps, rate, start, end, out = sys.argv[1:]
ev = json.load(open(f"{out}/{cell}.eval.json"))
train = open(f"{out}/{cell}.train.txt").read()
summary = re.search(r"at step (\d+)/(\d+) after ([\d.]+) min \((\d+) images/s\)", train)
best = re.search(r"best validation loss ([\d.]+) at step (\d+): accuracy ([\d.]+)", train)
print(json.dumps({"impl": "seqlab", "cell": cell, "steps": int(steps), "calibration_images_per_s": int(rate),
                  "images_per_s": int(summary.group(4)), "minutes_with_evals": float(summary.group(3)),
                  "wall_s": round(float(end) - float(start), 1),
                  "best_valid_loss": float(best.group(1)), "valid_accuracy": float(best.group(3)),
                  "test_accuracy": ev["accuracy"], "test_loss": ev["loss"]}))
PY
done >> "$OUT/results.jsonl"

for cell in $TORCH; do
    THREADS=2 "$PYTHON" crates/bench/scripts/torch_images.py --data "$DATA" --cell "$cell" --order rows \
        --hidden 128 --batch 128 --time-budget "$BUDGET" 2> "$OUT/torch-$cell.err" \
        | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["impl"]="pytorch"; print(json.dumps(r))'
done >> "$OUT/results.jsonl"
cat "$OUT/results.jsonl"
