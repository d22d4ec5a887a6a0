//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while training, saving or loading a model directory.
///
/// Every message is one plain sentence naming the bad input (a file, a tensor, a value).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// A file or directory could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// Another run writes into the model directory (it holds the directory's lock).
    #[error("{} is in use by another seqlab run{}; wait for it to end or choose another --out", dir.display(), pid.map(|p| format!(" (process {p})")).unwrap_or_default())]
    InUse {
        /// The model directory.
        dir: PathBuf,
        /// The process that holds the lock, where its lock file says.
        pid: Option<u32>,
    },

    /// A directory given as a model directory does not exist or has no `config.json`.
    #[error("{} is not a model directory: {reason}", path.display())]
    NotAModelDir {
        /// The directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },

    /// A JSON file of a model directory is malformed.
    #[error("{} is not a valid {what}: {reason}", path.display())]
    BadJson {
        /// The file.
        path: PathBuf,
        /// What it should be: "seqlab config.json", "trainer state", ...
        what: &'static str,
        /// What the parser said.
        reason: String,
    },

    /// `config.json` has another `format` than `seqlab/1`.
    #[error("{} has format {found:?}; this seqlab reads format \"seqlab/1\"", path.display())]
    WrongFormat {
        /// The config.json.
        path: PathBuf,
        /// The format it states.
        found: String,
    },

    /// `config.json` is of another task.
    #[error("{} is a model of task {found:?}, not {expected:?}", path.display())]
    WrongTask {
        /// The config.json.
        path: PathBuf,
        /// The task it states.
        found: String,
        /// The task the command needs.
        expected: &'static str,
    },

    /// A weights file lacks a tensor, or a tensor has the wrong shape.
    #[error("{}: {reason}", path.display())]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// candle's message, naming the tensor.
        reason: String,
    },

    /// The tokenizer's vocabulary and the model's do not have the same size.
    #[error("{} has {tokenizer} tokens but the model's vocabulary has {model} (config.json)", path.display())]
    VocabMismatch {
        /// The tokenizer.json.
        path: PathBuf,
        /// Its vocabulary size.
        tokenizer: usize,
        /// The model's `vocab_size`.
        model: usize,
    },

    /// `--resume` found no checkpoint to continue from.
    #[error("cannot resume: {} holds no checkpoint (trainer/state.json); train without --resume first", dir.display())]
    NoCheckpoint {
        /// The model directory.
        dir: PathBuf,
    },

    /// The data or settings of a resumed run differ from the run it continues.
    #[error("cannot resume: {0}")]
    ResumeMismatch(String),

    /// The output directory already holds a model and `--resume` was not given.
    #[error("{} already holds a model; pass --resume to continue it, or choose another --out", dir.display())]
    OutputExists {
        /// The directory.
        dir: PathBuf,
    },

    /// A setting is out of range.
    #[error("{0}")]
    InvalidSetting(String),

    /// A loss, gradient or weight became NaN or infinite; training stopped before saving anything bad.
    #[error("training stopped at step {step}: {what}; {kept} (lower --lr or --clip, or pass --skip-nonfinite to skip such batches)")]
    NonFinite {
        /// The step.
        step: usize,
        /// What was not finite.
        what: String,
        /// What is kept on disk.
        kept: String,
    },

    /// Reading or batching the data failed.
    #[error(transparent)]
    Data(#[from] seqlab_data::Error),

    /// Building, loading or using the tokenizer failed.
    #[error(transparent)]
    Tokenize(#[from] seqlab_tokenize::Error),

    /// A decoding parameter is out of range, or decoding failed.
    #[error(transparent)]
    Decode(#[from] seqlab_decode::Error),

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |error| Error::Read { path, error }
    }

    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |error| Error::Write { path, error }
    }
}

pub(crate) use seqlab_base::one_line;
