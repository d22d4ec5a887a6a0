//! Any bytes as a tokenizer.json: loaded, and when it loads, used to encode and decode a text. Must never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|bytes: &[u8]| {
    let path = common::write("tokenizer.json", bytes);
    if let Ok(tokenizer) = seqlab_tokenize::Tokenizer::from_file(&path) {
        if let Ok(ids) = tokenizer.encode("The cat sat, \"said\" Alice. 123 é 😀\n") {
            let _ = tokenizer.decode(&ids);
        }
        let _ = tokenizer.decode(&[0, 1, 2, 3, 4, 5, 1000, u32::MAX]);
    }
});
