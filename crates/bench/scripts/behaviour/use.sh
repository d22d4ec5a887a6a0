#!/usr/bin/env bash
# Uses the model directories under $1 with the binary $2 (generate, eval, run); prints what they print.
D=$1; BIN=$2; S=${SEQLAB_DATA:-$(cd "$(dirname "$0")/../../../../.." && pwd)/shared/data}
export RAYON_NUM_THREADS=2
$BIN lm generate --model $D/lm_char --prompt "Alice" --length 80 --seed 3
$BIN lm generate --model $D/lm_gru2 --prompt "ROSALIND" --length 60 --greedy
$BIN lm generate --model $D/lm_word --prompt "The Queen" --length 30 --beam 3
$BIN lm eval --model $D/lm_char --data $S/text/asyoulik.txt --json
$BIN classify eval --model $D/classify --data $S/classification/bbc-news-test.csv --json
$BIN classify predict --model $D/classify2 --top 2 "Shares rose sharply on Monday" "The striker scored twice"
$BIN translate run --model $D/translate "In the beginning God created the heavens and the earth." --beam 3
$BIN translate eval --model $D/translate2 --json
$BIN caption run --model $D/caption $D/shapes/images/shape_00001.png $D/shapes/images/shape_00002.png --beam 2
