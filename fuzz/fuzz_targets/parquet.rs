//! Any bytes as a parquet file of a dataset: read with a text and a label column selected. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|bytes: &[u8]| {
    let path = common::write("split.parquet", bytes);
    let _ = seqlab_data::Table::read(&path, &["text", "label"]);
    let _ = seqlab_data::Table::read(&path, &[]);
});
