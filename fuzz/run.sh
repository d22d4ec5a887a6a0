#!/usr/bin/env bash
# Fuzzes every reader of user files for a bounded time each (default 60 s), with libFuzzer through cargo fuzz:
#
#     cargo install cargo-fuzz        # once
#     fuzz/run.sh [SECONDS] [TARGET...]
#
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. Seeds come from
# fuzz/seeds/<target> (made by fuzz/make_seeds.py); the growing corpus lives in fuzz/corpus (not committed).
# A crash leaves its input in fuzz/artifacts/<target>/ and makes this script exit non-zero: turn it into a
# regression test in the reader's crate.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(text_corpus tokenizer_json config_json safetensors labelled_csv labelled_tsv parallel_tsv captions_csv image parquet)
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build
failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target (${seconds}s)"
    if ! cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 2>"corpus/$target.log"; then
        failed+=("$target")
        tail -30 "corpus/$target.log"
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "corpus/$target.log" | tr '\n' ' '
        echo
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashes in: ${failed[*]} (inputs under fuzz/artifacts/)"
    exit 1
fi
echo "no crash in ${#targets[@]} targets, ${seconds}s each"
