#!/usr/bin/env bash
# Fixed-seed runs of each pipeline; writes model dirs under $1 (must not exist). Binary: $2.
set -euo pipefail
OUT=$1; BIN=$2; D=${SEQLAB_DATA:-$(cd "$(dirname "$0")/../../../../.." && pwd)/shared/data}
mkdir -p "$OUT"
export RAYON_NUM_THREADS=2
# lm: char, embed, 1 layer LSTM with dropout
$BIN lm train --data $D/text/alice29.txt --hidden 64 --embed 16 --batch 16 --seq-len 50 --steps 300 --eval-every 50 --checkpoint-every 100 --seed 3 --out $OUT/lm_char > $OUT/lm_char.log 2>&1
# lm: one-hot, 2-layer GRU, dropout + weight drop
$BIN lm train --data $D/text/asyoulik.txt --cell gru --embed 0 --hidden 48 --layers 2 --dropout 0.3 --weight-drop 0.2 --batch 8 --seq-len 40 --steps 200 --eval-every 40 --seed 5 --out $OUT/lm_gru2 > $OUT/lm_gru2.log 2>&1
# lm: word-level
$BIN lm train --data $D/text/alice29.txt --tokenizer word --hidden 64 --embed 32 --batch 16 --seq-len 30 --steps 200 --eval-every 50 --seed 1 --out $OUT/lm_word > $OUT/lm_word.log 2>&1
# classify
$BIN classify train --data $D/classification/bbc-news-train.csv --hidden 32 --embed 32 --steps 200 --seed 2 --out $OUT/classify > $OUT/classify.log 2>&1
# classify: lstm, mean pool, unidirectional, balanced
$BIN classify train --data $D/classification/bbc-news-train.csv --cell lstm --bidirectional false --pool mean --hidden 24 --embed 16 --layers 2 --balanced --steps 120 --eval-every 30 --seed 4 --out $OUT/classify2 > $OUT/classify2.log 2>&1
# translate
head -3000 $D/translation/bible-en-es.tsv > $OUT/pairs.tsv
$BIN translate train --data $OUT/pairs.tsv --max-words 20 --hidden 64 --embed 32 --batch 32 --steps 200 --eval-every 50 --seed 7 --out $OUT/translate > $OUT/translate.log 2>&1
$BIN translate train --data $OUT/pairs.tsv --max-words 15 --hidden 32 --embed 16 --batch 16 --cell gru --attention additive --input-feeding --bidirectional --steps 100 --eval-every 50 --seed 8 --out $OUT/translate2 > $OUT/translate2.log 2>&1
# caption
$BIN data shapes --out $OUT/shapes --count 300 --seed 1 > /dev/null
$BIN caption train --images $OUT/shapes/images --captions $OUT/shapes/captions.txt --hidden 64 --steps 150 --eval-every 50 --seed 9 --out $OUT/caption > $OUT/caption.log 2>&1
echo ok
