#!/usr/bin/env bash
# One sitting: seqlab-bench and torch_cells_bench.py alternated, REPS times, on the new cells and the classic
# ones at widths 256 and 512, 1 and 2 layers. Prints CSV (the reference's header) on stdout.
#   crates/bench/scripts/cells_sitting.sh [REPS] [SHAPES] [SEQ] [BATCH] > cells.csv
set -euo pipefail
cd "$(dirname "$0")/../../.."
REPS=${1:-2}; SHAPES=${2:-256-1,256-2,512-1,512-2}; SEQ=${3:-100}; BATCH=${4:+--batch $4}
PY=${TORCH_PY:-/work/venvs/torch/bin/python}
CELLS=${CELLS:-mingru,minlstm,indrnn,lstm,gru}
export RAYON_NUM_THREADS=2
echo "impl,rep,cell,H,L,batch,seq,input,mode,steps,tokens,seconds,tok_per_s,fwd_ms,bwd_ms,opt_ms"
for rep in $(seq 0 $((REPS - 1))); do
  target/release/seqlab-bench --cells "$CELLS" --shapes "$SHAPES" --seq "$SEQ" $BATCH --no-gen --rep "$rep" --max-seconds 6 | grep -v '^#'
  "$PY" crates/bench/scripts/torch_cells_bench.py --cells "$CELLS" --shapes "$SHAPES" --seq "$SEQ" $BATCH --rep "$rep" --max-seconds 6 | grep -v '^#'
done
