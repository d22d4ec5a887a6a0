//! Any bytes as a `label<TAB>text` file. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = seqlab_data::parse_tsv(text, "fuzz.tsv");
});
