//! Any bytes as a model directory's config.json: read as a language model's configuration. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|bytes: &[u8]| {
    common::write("config.json", bytes);
    let _ = seqlab_train::read_config(common::scratch());
});
