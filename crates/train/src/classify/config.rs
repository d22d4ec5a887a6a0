//! How a classifier is trained: [`ClassifyTrainConfig`], saved in `config.json` under `"train"`.

use std::path::Path;

use seqlab_data::{Columns, LabelledFormat, TextField};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::trainer::{has_loop, LoopConfig};

/// How a classifier is trained: plain data, saved in `config.json` under `"train"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifyTrainConfig {
    /// The training data: AG News CSV, `label<TAB>text` TSV, a `.parquet` file or a hub split
    /// (`hf://datasets/OWNER/NAME[:SPLIT]`).
    pub data: String,
    /// A validation file; when `None`, `valid_fraction` of the training examples, per class.
    pub valid: Option<String>,
    /// The share of each class's training examples held out for validation when there is no validation
    /// file (chosen from the seed). 0.1: enough to pick the best epoch, little taken from training. 0 means
    /// no validation (the latest weights are kept).
    pub valid_fraction: f64,
    /// `agnews` or `tsv`; `None` picks by each file's extension (`.csv` is AG News).
    pub format: Option<String>,
    /// Which AG News columns make the text: `title`, `description` or `both`.
    pub text: String,
    /// The text column of tables (hub splits, `.parquet` files); `None`: the catalogue's column for the
    /// dataset, else `text`. CSV and TSV files are read by `format` and do not use it.
    pub text_column: Option<String>,
    /// The label column of tables; `None`: the catalogue's column for the dataset, else `label`.
    pub label_column: Option<String>,
    /// A file of class names, one per line (class k of an AG News file is line k); `None` names the
    /// classes by their numbers (AG News) or takes the distinct labels in sorted order (TSV).
    pub labels: Option<String>,
    /// `char`, `word`, or the path of a tokenizer.json.
    pub tokenizer: String,
    /// Lowercase the text (char and word tokenizers). Default true: a topic does not depend on capitals.
    pub lowercase: bool,
    /// Keep only tokens seen at least this often in the training texts; rarer ones become `<unk>`.
    /// Default 2: a word seen once teaches nothing but noise (measured: better than 1 and 3 on BBC news).
    pub min_freq: usize,
    /// Keep at most this many tokens, specials included (char and word tokenizers).
    pub max_vocab: Option<usize>,
    /// Keep at most this many tokens of each text (the first ones); `None` keeps all.
    pub max_len: Option<usize>,
    /// Texts per batch. 32: small batches help a few thousand examples generalise.
    pub batch: usize,
    /// Weight each class's loss by `n / (classes * count)` (scikit-learn's "balanced"), so that rare classes
    /// count as much as frequent ones.
    pub balanced: bool,
    /// The loop's settings. Here `eval_every` and `checkpoint_every` of 0 mean once per epoch (the default),
    /// and the defaults are those measured on BBC news: peak learning rate 2e-2 (the embeddings of a few
    /// thousand texts learn too slowly at the language model's 2e-3: 0.84 against 0.91 test accuracy),
    /// weight decay 0.1, 10 epochs.
    #[serde(flatten)]
    pub optim: LoopConfig,
}

has_loop!(ClassifyTrainConfig);

impl Default for ClassifyTrainConfig {
    fn default() -> Self {
        Self {
            data: String::new(),
            valid: None,
            valid_fraction: 0.1,
            format: None,
            text: "both".to_string(),
            text_column: None,
            label_column: None,
            labels: None,
            tokenizer: "word".to_string(),
            lowercase: true,
            min_freq: 2,
            max_vocab: None,
            max_len: None,
            batch: 32,
            balanced: false,
            optim: LoopConfig {
                lr: 2e-2,
                weight_decay: 0.1,
                eval_every: 0,
                checkpoint_every: 0,
                epochs: Some(10),
                ..LoopConfig::default()
            },
        }
    }
}

impl ClassifyTrainConfig {
    /// The format of `path`: the configured one, else by its extension.
    pub fn format_of(&self, path: &Path) -> Result<LabelledFormat> {
        match &self.format {
            Some(name) => name.parse().map_err(Error::InvalidSetting),
            None => Ok(LabelledFormat::detect(path)),
        }
    }

    /// The AG News columns that make the text.
    pub fn text_field(&self) -> Result<TextField> {
        self.text.parse().map_err(Error::InvalidSetting)
    }

    /// The columns a table is read by: `text_column` and `label_column`.
    pub fn columns(&self) -> Columns {
        Columns::new()
            .with("text", self.text_column.clone())
            .with("label", self.label_column.clone())
    }
}
