//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while finding, reading or batching a corpus.
///
/// Every message is one plain sentence naming the bad input, so that a command line can print it as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or tokenizing a text failed (the message names the file).
    #[error(transparent)]
    Tokenize(#[from] seqlab_tokenize::Error),

    /// No `--data` was given and the default book was found nowhere.
    #[error(
        "no --data given and the default book (Around the World in 80 Days) was found neither in the cargo \
         registry ({searched}) nor on the Hugging Face Hub ({hub}); pass a UTF-8 text file with --data FILE \
         (or a hub file with --data hf://datasets/OWNER/NAME/FILE.txt)"
    )]
    NoDefaultCorpus {
        /// The registry folders that were searched, comma-separated.
        searched: String,
        /// Why the hub gave nothing.
        hub: String,
    },

    /// A `hf://` data address is malformed or names something other than a file of a dataset repository.
    #[error("{spec} is not a hub file address: {reason} (expected hf://datasets/OWNER/NAME[@REVISION]/FILE)")]
    BadHubAddress {
        /// The address as given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The hub file is not in the local cache and could not be downloaded.
    #[error("cannot fetch {spec} from the Hugging Face Hub: {reason}")]
    Hub {
        /// The address as given.
        spec: String,
        /// What the hub client said, on one line.
        reason: String,
    },

    /// A validation fraction outside [0, 1).
    #[error("the validation fraction must lie in [0, 1), got {0}")]
    InvalidFraction(f64),

    /// A batch size or sequence length of zero.
    #[error("batch size and sequence length must be at least 1, got batch {batch} and sequence length {seq_len}")]
    InvalidLayout {
        /// Rows per batch.
        batch: usize,
        /// Steps per batch.
        seq_len: usize,
    },

    /// The text holds too few tokens to give every row of a batch at least one target.
    #[error("the {what} holds {tokens} tokens, too few for {batch} rows (of at least {needed} each); use a smaller --batch or more text")]
    TooShort {
        /// Which text: "training text", "validation text", ...
        what: &'static str,
        /// Tokens it holds.
        tokens: usize,
        /// Rows per batch.
        batch: usize,
        /// Tokens a row needs.
        needed: usize,
    },

    /// A file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// Building a tensor failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Flattens a message onto one line.
pub(crate) fn one_line(message: impl std::fmt::Display) -> String {
    message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
