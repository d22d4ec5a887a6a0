//! The model directory every pipeline shares: `config.json`'s four fields and their checks, the paths it
//! saves, and the parameter count.
//!
//! ```text
//! config.json          {"format": "seqlab/1", "task": "lm|classify|translate|caption", "model": {...}, "train": {...}}
//! model.safetensors    the weights of the best validation loss (PyTorch-style names)
//! tokenizer*.json, labels.json   the pipeline's artifacts
//! trainer/             the resumable checkpoint (see crate::checkpoint)
//! metrics.csv, loss.svg
//! ```

use std::path::Path;

use candle_nn::VarMap;
use seqlab_tokenize::{Framing, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::atomic::write_bytes_atomically;
use crate::error::{one_line, Error, Result};
use crate::pipeline::Pipeline;

/// The format every `config.json` of a model directory states.
pub const FORMAT: &str = "seqlab/1";

/// A model directory's `config.json`: its format, its pipeline's task, the model's shape and how it was
/// trained.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ModelDir<P: Pipeline> {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always `P::TASK`.
    pub task: String,
    /// The model's shape.
    pub model: P::ModelConfig,
    /// How it was trained.
    pub train: P::TrainConfig,
}

impl<P: Pipeline> ModelDir<P> {
    /// The `config.json` of a new run of `P`.
    pub fn new(model: P::ModelConfig, train: P::TrainConfig) -> Self {
        ModelDir {
            format: FORMAT.to_string(),
            task: P::TASK.to_string(),
            model,
            train,
        }
    }
}

impl<P: Pipeline> Clone for ModelDir<P> {
    fn clone(&self) -> Self {
        ModelDir {
            format: self.format.clone(),
            task: self.task.clone(),
            model: self.model.clone(),
            train: self.train.clone(),
        }
    }
}

impl<P: Pipeline> PartialEq for ModelDir<P> {
    fn eq(&self, other: &Self) -> bool {
        (&self.format, &self.task, &self.model, &self.train)
            == (&other.format, &other.task, &other.model, &other.train)
    }
}

impl<P: Pipeline> std::fmt::Debug for ModelDir<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelDir")
            .field("format", &self.format)
            .field("task", &self.task)
            .field("model", &self.model)
            .field("train", &self.train)
            .finish()
    }
}

/// The task `dir/config.json` states, after checking that `dir` is a model directory of format
/// `seqlab/1`: what a program that serves any model directory reads first.
pub fn task_of(dir: &Path) -> Result<String> {
    let (_, value) = read_json(dir)?;
    Ok(value
        .get("task")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string())
}

/// Reads `dir/config.json` as a model directory of pipeline `P`, after checking its format and task.
/// Errors name the directory or the file, and the format or task found.
pub fn read_model_dir<P: Pipeline>(dir: &Path) -> Result<ModelDir<P>> {
    let (path, value) = read_json(dir)?;
    let task = value.get("task").and_then(|v| v.as_str()).unwrap_or("");
    if task != P::TASK {
        return Err(Error::WrongTask {
            path,
            found: task.to_string(),
            expected: P::TASK,
        });
    }
    serde_json::from_value(value).map_err(|e| Error::BadJson {
        path,
        what: "seqlab config.json",
        reason: one_line(e),
    })
}

/// `dir/config.json` as JSON, its format checked.
fn read_json(dir: &Path) -> Result<(std::path::PathBuf, serde_json::Value)> {
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
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::BadJson {
        path: path.clone(),
        what: "seqlab config.json",
        reason: one_line(e),
    })?;
    let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
    if format != FORMAT {
        return Err(Error::WrongFormat {
            found: format.to_string(),
            path,
        });
    }
    Ok((path, value))
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json =
        serde_json::to_string_pretty(value).map_err(|e| Error::InvalidSetting(e.to_string()))?;
    write_bytes_atomically(path, json.as_bytes()).map_err(Error::write(path))
}

/// Writes `tokenizer` as a `tokenizer.json` to `path`, atomically.
pub(crate) fn write_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let json = tokenizer
        .as_hf()
        .to_string(true)
        .map_err(|e| Error::InvalidSetting(one_line(e)))?;
    write_bytes_atomically(path, json.as_bytes()).map_err(Error::write(path))
}

/// The tokenizer file `dir/name`, checked against the model's vocabulary of `vocab_size` tokens.
pub(crate) fn read_tokenizer(dir: &Path, name: &str, vocab_size: usize) -> Result<Tokenizer> {
    let path = dir.join(name);
    let tokenizer = Tokenizer::from_file(&path)?;
    if tokenizer.vocab_size() != vocab_size {
        return Err(Error::VocabMismatch {
            path,
            tokenizer: tokenizer.vocab_size(),
            model: vocab_size,
        });
    }
    Ok(tokenizer)
}

/// The `<pad>`, `<bos>` and `<eos>` ids of `tokenizer`, which `what` ("the target tokenizer") needs: a
/// decoder's batches are framed and padded with them.
pub(crate) fn framing(tokenizer: &Tokenizer, what: &str) -> Result<Framing> {
    tokenizer.specials().framing().ok_or_else(|| {
        Error::InvalidSetting(format!(
            "{what} needs the special tokens <pad>, <bos> and <eos>"
        ))
    })
}

/// The `--tokenizer` setting when it names a file (not `char` or `word`): a local path to make absolute.
pub(crate) fn tokenizer_path(setting: &mut String) -> Option<&mut String> {
    (!matches!(setting.as_str(), "char" | "word")).then_some(setting)
}

/// A data source with a local path made absolute (canonical when the file exists); hub addresses as they
/// are.
pub(crate) fn absolute_source(source: &str) -> String {
    if source.starts_with(seqlab_data::HUB_SCHEME) {
        return source.to_string();
    }
    std::fs::canonicalize(source)
        .or_else(|_| std::path::absolute(source))
        .map_or_else(|_| source.to_string(), |path| path.display().to_string())
}

/// Buffers among a model's variables: batch norm's running statistics, which the model updates itself and
/// the optimizer never sees (PyTorch's `register_buffer`). Known by the names PyTorch gives them.
fn is_buffer(name: &str) -> bool {
    ["running_mean", "running_var", "num_batches_tracked"]
        .iter()
        .any(|buffer| name.ends_with(buffer))
}

/// The trainable parameters of `varmap`: the elements of every variable but the buffers.
pub fn count_parameters(varmap: &VarMap) -> usize {
    varmap
        .data()
        .lock()
        .map(|vars| {
            vars.iter()
                .filter(|(name, _)| !is_buffer(name))
                .map(|(_, var)| var.elem_count())
                .sum()
        })
        .unwrap_or(0)
}
