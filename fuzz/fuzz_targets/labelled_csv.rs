//! Any bytes as an AG News style CSV (`"class","title","description"`): parsed, then turned into labelled
//! rows for each `--text` choice. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = seqlab_data::parse_csv(text, "fuzz.csv");
});
