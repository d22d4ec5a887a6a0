//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading a corpus, building, loading, saving or using a tokenizer.
///
/// Every message is one plain sentence that names the bad input (a file, a value, an id), so that a
/// command line can print it as it is. A message includes its cause (`cannot read corpus.txt: No such
/// file or directory`), so the cause is not also returned by `source()`: printing an error chain
/// (`anyhow`'s `{:#}`) would say it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read (missing, a directory, no permission, ...).
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A file could not be written, or the temporary file could not be renamed into place.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// A file is not valid UTF-8.
    #[error("{} is not valid UTF-8 (first bad byte on line {line})", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the first invalid byte.
        line: usize,
    },
    /// A corpus file is empty or holds only whitespace.
    #[error("{} is empty or holds only whitespace", path.display())]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The texts given to a `build_*` function are empty or hold only whitespace.
    #[error("the corpus is empty or holds only whitespace")]
    EmptyCorpus,
    /// No token of the corpus is frequent enough to enter the vocabulary.
    #[error("no token occurs at least {min_freq} times in the corpus")]
    NoTokens {
        /// The minimum frequency asked for.
        min_freq: usize,
    },
    /// `max_size` leaves no room for a single token beside the four special tokens.
    #[error("a maximum vocabulary size of {max_size} leaves no room beside the 4 special tokens")]
    MaxSizeTooSmall {
        /// The maximum size asked for.
        max_size: usize,
    },
    /// A file is not a tokenizer.json that the `tokenizers` library can load.
    #[error("{} is not a valid tokenizer.json: {reason}", path.display())]
    InvalidTokenizerFile {
        /// The file.
        path: PathBuf,
        /// What the parser said, on one line.
        reason: String,
    },
    /// An id given to `decode` is not in the vocabulary.
    #[error("token id {id} is not in the vocabulary (size {vocab_size})")]
    UnknownId {
        /// The id.
        id: u32,
        /// The size of the vocabulary, special tokens included.
        vocab_size: usize,
    },
    /// The `tokenizers` library failed while building, encoding or decoding.
    #[error("tokenizer error: {reason}")]
    Tokenizers {
        /// What the library said, on one line.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) use seqlab_base::one_line;

impl Error {
    /// Wraps an error of the `tokenizers` library.
    pub(crate) fn tokenizers(error: impl std::fmt::Display) -> Self {
        Error::Tokenizers {
            reason: one_line(error),
        }
    }
}
