//! Any bytes as a parallel corpus (`source<TAB>target[<TAB>...]`), with and without length limits and
//! reversal, then split for validation. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let limited = seqlab_data::ParallelOptions {
        reverse: true,
        max_source_words: Some(3),
        max_target_words: Some(3),
        ..Default::default()
    };
    for options in [seqlab_data::ParallelOptions::default(), limited] {
        if let Ok(parallel) = seqlab_data::parse_parallel(text, "fuzz.tsv", &options) {
            let _ = parallel.split_tail(0.1);
        }
    }
});
