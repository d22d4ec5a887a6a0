//! How a language model is trained: [`LmTrainConfig`], saved in `config.json` under `"train"`.

use serde::{Deserialize, Serialize};

use crate::trainer::{has_loop, LoopConfig};

/// How a language model is trained: plain data, saved in `config.json` under `"train"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LmTrainConfig {
    /// Text files and `hf://datasets/...` files, joined in order; empty trains on the default book.
    pub data: Vec<String>,
    /// A validation file or hub split; when `None`, the last `valid_fraction` of the corpus.
    pub valid: Option<String>,
    /// The column holding the text in tables (hub splits, parquet, CSV, TSV files); `None`: the catalogue's
    /// column for the dataset, else `text`.
    pub text_column: Option<String>,
    /// The tail of the corpus held out for validation when there is no validation file. 0.1: enough text
    /// to measure the loss to two decimals, little taken from training.
    pub valid_fraction: f64,
    /// `char`, `word`, or the path of a tokenizer.json.
    pub tokenizer: String,
    /// Lowercase the text (char and word tokenizers).
    pub lowercase: bool,
    /// Keep only tokens seen at least this often (char and word tokenizers); rarer ones become `<unk>`.
    pub min_freq: usize,
    /// Keep at most this many tokens, specials included (char and word tokenizers).
    pub max_vocab: Option<usize>,
    /// Parallel rows of the token stream. 64: as the PyTorch reference; fills two cores' matrix units.
    pub batch: usize,
    /// Steps of backpropagation through time per batch. 100: long enough for words and phrases.
    pub seq_len: usize,
    /// The loop's settings.
    #[serde(flatten)]
    pub optim: LoopConfig,
}

has_loop!(LmTrainConfig);

impl Default for LmTrainConfig {
    fn default() -> Self {
        Self {
            data: Vec::new(),
            valid: None,
            text_column: None,
            valid_fraction: 0.1,
            tokenizer: "char".to_string(),
            lowercase: false,
            min_freq: 1,
            max_vocab: None,
            batch: 64,
            seq_len: 100,
            optim: LoopConfig::default(),
        }
    }
}
