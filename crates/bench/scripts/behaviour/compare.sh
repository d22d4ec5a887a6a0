#!/usr/bin/env bash
# Compares the losses (step, epoch, split, loss, lr) of every metrics.csv under $1 and $2.
A=$1; B=$2; rc=0
for f in $(cd $A && ls */metrics.csv); do
  if diff <(cut -d, -f1-7 $A/$f) <(cut -d, -f1-7 $B/$f) > /dev/null; then echo "same  $f ($(wc -l < $A/$f) rows)"; else echo "DIFF  $f"; diff <(cut -d, -f1-7 $A/$f) <(cut -d, -f1-7 $B/$f) | head -5; rc=1; fi
done
for d in $A/*/; do n=$(basename $d); [ -f $A/$n/model.safetensors ] || continue
  if cmp -s $A/$n/model.safetensors $B/$n/model.safetensors; then echo "same  $n/model.safetensors"; else echo "DIFF  $n/model.safetensors"; rc=1; fi; done
exit $rc
