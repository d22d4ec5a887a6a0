//! Shared by the fuzz targets: a scratch folder of this process, where each input is written as a file,
//! because the readers under test take paths (as the command line does).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A folder of this process under the system's temporary folder, created once.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("seqlab-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    })
}

/// Writes `bytes` as `name` in the scratch folder and returns its path.
pub fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("writing a fuzz input");
    path
}
