//! Inputs found by the fuzz targets under `fuzz/` (each a mutation of a seed of our own), kept as
//! regression tests: every reader answers them with an error naming the file, never a panic.

use std::path::Path;

use seqlab_data::{Error, Table};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The `parquet` crate panics on this file ("column start and length should not be negative").
#[test]
fn a_parquet_file_with_a_negative_column_start_is_an_error_not_a_panic() {
    let path = fixture("fuzz_parquet_negative_column_start.parquet");
    for columns in [&["text", "label"][..], &[]] {
        let error = Table::read(&path, columns).unwrap_err();
        assert!(matches!(error, Error::Parquet { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains("fuzz_parquet_negative_column_start.parquet"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
}
