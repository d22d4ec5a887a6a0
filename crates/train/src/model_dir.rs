//! What every pipeline's model directory shares: reading and checking `config.json`.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{one_line, Error, Result};
use crate::lm::FORMAT;

/// Reads `dir/config.json` as a `T`, after checking that `dir` is a model directory of format `seqlab/1`
/// and of `task`. Errors name the directory or the file, and the format or task found.
pub(crate) fn read_dir_config<T: DeserializeOwned>(dir: &Path, task: &'static str) -> Result<T> {
    if !dir.is_dir() {
        return Err(Error::NotAModelDir {
            path: dir.to_path_buf(),
            reason: "no such directory".to_string(),
        });
    }
    let path = dir.join("config.json");
    if !path.is_file() {
        return Err(Error::NotAModelDir {
            path: dir.to_path_buf(),
            reason: "it has no config.json".to_string(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(Error::read(&path))?;
    let bad = |reason: String| Error::BadJson {
        path: path.clone(),
        what: "seqlab config.json",
        reason,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(one_line(e)))?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    if field("format") != FORMAT {
        return Err(Error::WrongFormat {
            path,
            found: field("format"),
        });
    }
    if field("task") != task {
        return Err(Error::WrongTask {
            path,
            found: field("task"),
            expected: task,
        });
    }
    serde_json::from_value(value).map_err(|e| bad(one_line(e)))
}
