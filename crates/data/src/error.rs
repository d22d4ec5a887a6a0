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

    /// A `hf://` data address is malformed or names something other than a file or a split of a dataset
    /// repository.
    #[error("{spec} is not a hub address: {reason} (expected hf://datasets/OWNER/NAME[@REVISION]/FILE or hf://datasets/OWNER/NAME[@REVISION][:[CONFIG/]SPLIT])")]
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

    /// An image file is missing, corrupt or of a format seqlab does not decode (PNG and JPEG only).
    #[error("{}: {reason}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong with it, on one line.
        reason: String,
    },

    /// A line of a captions file (`image,caption` CSV) is malformed.
    #[error("{}, line {line}: {reason}", path.display())]
    Captions {
        /// The captions file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A file or directory could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// A row of a labelled-text file is malformed: an unclosed quote, a wrong number of fields, no tab.
    #[error("{file}, line {line}: {reason}")]
    MalformedRow {
        /// The file (or other source) of the row.
        file: String,
        /// The line the row starts on, 1-based.
        line: usize,
        /// What is wrong.
        reason: String,
    },

    /// A labelled example has an empty text.
    #[error("{file}, line {line}: the text is empty")]
    EmptyText {
        /// The file (or other source) of the row.
        file: String,
        /// The line the row starts on, 1-based.
        line: usize,
    },

    /// A label is not a valid class: not a positive class number, or a name the model does not know.
    #[error("{file}, line {line}: bad label {label:?}: {reason}")]
    BadLabel {
        /// The file (or other source) of the row.
        file: String,
        /// The line the row starts on, 1-based.
        line: usize,
        /// The label as written.
        label: String,
        /// Why it is not valid.
        reason: String,
    },

    /// A labelled-text file holds no examples.
    #[error("{file} holds no labelled examples")]
    NoExamples {
        /// The file.
        file: String,
    },

    /// A parallel file holds no usable sentence pair.
    #[error("{file} holds no source<TAB>target pairs ({skipped} lines skipped: no tab, an empty side, or too long)")]
    NoPairs {
        /// The file.
        file: String,
        /// Lines left out.
        skipped: usize,
    },

    /// A sequence to batch has no tokens.
    #[error("sequence {index} has no tokens; every row of a padded batch needs at least one")]
    EmptySequence {
        /// Its index among the sequences.
        index: usize,
    },

    /// A hub split (or file) is neither in the local cache nor reachable on the hub.
    #[error(
        "cannot fetch {spec}: it is not in the hub cache ({}) and the Hugging Face Hub did not give it \
         ({reason}); fetch it once where there is a network (seqlab data fetch), or pass a local file instead \
         (--data FILE.parquet, .csv, .tsv or .txt)",
        cache.display()
    )]
    NotCached {
        /// The address as given.
        spec: String,
        /// The hub cache that was searched.
        cache: PathBuf,
        /// Why the hub gave nothing, on one line.
        reason: String,
    },

    /// A file is not a readable parquet file (corrupt, truncated, or of another format).
    #[error("{} is not a readable parquet file: {reason}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the parquet reader said, on one line.
        reason: String,
    },

    /// A table (parquet, CSV, TSV or text file, or a hub split) lacks a column that was asked for.
    #[error("{source_name} has no column \"{column}\" (its columns: {available}){}", flag.as_ref().map(|f| format!("; choose one with {f}")).unwrap_or_default())]
    MissingColumn {
        /// The file or hub address.
        source_name: String,
        /// The column asked for.
        column: String,
        /// The columns it has, comma-separated.
        available: String,
        /// The command-line flag that names this column, when known.
        flag: Option<String>,
    },

    /// A column was named for a file that is not a table (it has a layout of its own).
    #[error("{flag} names a column of a table (a hub split or a .parquet file), but {file} is read as {read_as}")]
    ColumnsForFile {
        /// The flag that named it.
        flag: String,
        /// The file.
        file: String,
        /// How the file is read instead.
        read_as: String,
    },

    /// A column exists but cannot give what was asked of it (a struct named without a field, an image
    /// stored by path only, a list where text was expected, ...).
    #[error("{source_name}: column \"{column}\" {reason}")]
    BadColumn {
        /// The file or hub address.
        source_name: String,
        /// The column.
        column: String,
        /// What is wrong, as the end of a sentence.
        reason: String,
    },

    /// A line of a CSV or TSV table is malformed.
    #[error("{}, line {line}: {reason}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// A name that is not in the dataset catalogue.
    #[error("no dataset named \"{name}\" in the catalogue (it has: {known}); pass an hf://datasets/OWNER/NAME address instead")]
    UnknownDataset {
        /// The name as given.
        name: String,
        /// The catalogue's names, comma-separated.
        known: String,
    },

    /// Building a tensor failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) use seqlab_base::one_line;
