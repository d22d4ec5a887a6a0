#!/usr/bin/env bash
# Quality per budget, one run after the other on a quiet machine: for each budget (minutes) and book, PyTorch's
# char LSTM reference, seqlab (NEW binary; EXTRA="old" adds an OLD binary too, e.g. one before the budget-aware
# schedule), and the small Transformer reference. Books split by split.py into /tmp/books; runs in /tmp/q/runs.
#   BUDGETS="2 4" BOOKS="alice29 asyoulik eighty" NEW=target/release/seqlab FLAGS="" sitting.sh > log
# The seqlab score is `lm eval --batch 1` of the best model on the held-out part: one row from a zero state,
# as the LSTM reference evaluates.
set -u
PY=${PY:-/work/venvs/torch/bin/python}; BENCH=${BENCH:-../shared/bench}; NEW=${NEW:-target/release/seqlab}
OLD=${OLD:-}; EXTRA=${EXTRA:-}; FLAGS=${FLAGS:-}
export RAYON_NUM_THREADS=2
for M in $BUDGETS; do
  S=$(python3 -c "print(int($M*60))")
  for B in $BOOKS; do
    echo "== $B ${M}min torch-lstm $(date +%T)"
    $PY $BENCH/torch_charlm_quality.py /tmp/books/$B.txt $S 512 1 2>&1 | tail -1
    for V in new $EXTRA; do
      BIN=$NEW; [ $V = old ] && BIN=$OLD
      D=/tmp/q/runs/$B-$M-$V; rm -rf $D
      echo "== $B ${M}min seqlab-$V $(date +%T)"
      $BIN lm train --data /tmp/books/$B.train.txt --valid /tmp/books/$B.valid.txt --max-time $M $FLAGS --out $D 2>/dev/null | grep -E "at step|best validation"
      $BIN lm eval --model $D --data /tmp/books/$B.valid.txt --batch 1 --json
    done
    echo "== $B ${M}min torch-gpt $(date +%T)"
    $PY $BENCH/torch_chargpt.py /tmp/books/$B.txt $S 2>&1 | tail -1
  done
done
echo "== end $(date +%T)"
