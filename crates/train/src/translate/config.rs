//! How a translator is trained ([`TranslateTrainConfig`], saved in `config.json` under `"train"`), and how
//! its parallel data is read.

use std::path::Path;

use seqlab_data::{
    is_labelled_table, parallel_text, parse_parallel, read_parallel, BadLine, Columns, Hub, Pair,
    Parallel, ParallelOptions,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::trainer::{has_loop, LoopConfig};

/// How a translator is trained: plain data, saved in `config.json` under `"train"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TranslateTrainConfig {
    /// The parallel file: `source<TAB>target[<TAB>anything]` lines.
    pub data: String,
    /// A validation file of the same layout; when `None`, the last `valid_fraction` of the pairs.
    pub valid: Option<String>,
    /// The tail of the pairs held out for validation (and `translate eval` without `--data`). 0.05: a few
    /// hundred sentences of a corpus of ten thousand, enough for a stable corpus BLEU.
    pub valid_fraction: f64,
    /// The source-sentence column of tables (hub splits, `.parquet` files; `a.b` is field `b` of struct
    /// column `a`); `None`: the catalogue's column for the dataset, else `source`. Parallel text files do
    /// not use it.
    pub source_column: Option<String>,
    /// The target-sentence column of tables; `None`: the catalogue's column for the dataset, else `target`.
    pub target_column: Option<String>,
    /// Translate from the second column to the first.
    pub reverse: bool,
    /// Leave out pairs with a side of more whitespace-separated words than this.
    pub max_words: Option<usize>,
    /// Stop at a line without a tab or with an empty side, instead of skipping (and counting) it.
    pub strict: bool,
    /// `word` or `char`, for both sides (each side gets its own vocabulary).
    pub tokenizer: String,
    /// Lowercase both sides (BLEU is then computed lowercased too).
    pub lowercase: bool,
    /// Keep only tokens seen at least this often in the training pairs; rarer ones become `<unk>`. 2: words
    /// seen once cannot be learnt.
    pub min_freq: usize,
    /// Keep at most this many tokens per side, specials included.
    pub max_vocab: Option<usize>,
    /// The longest source, in tokens, the model reads; longer training pairs are left out, longer input to
    /// `eval` and `run` is an error. 100 words is four times the longest sentence of typical corpora.
    pub max_source_tokens: usize,
    /// The longest target in tokens: longer training pairs are left out, and decoding stops there.
    pub max_target_tokens: usize,
    /// Pairs per batch, bucketed by source length. 64: fills two cores' matrix units at hidden 256.
    pub batch: usize,
    /// Probability of feeding the reference token (rather than the model's own prediction) at each decoder
    /// step in training. 1: plain teacher forcing, the fast whole-sequence path.
    pub teacher_forcing: f64,
    /// The loop's settings.
    #[serde(flatten)]
    pub optim: LoopConfig,
}

has_loop!(TranslateTrainConfig);

impl Default for TranslateTrainConfig {
    fn default() -> Self {
        Self {
            data: String::new(),
            valid: None,
            valid_fraction: 0.05,
            source_column: None,
            target_column: None,
            reverse: false,
            max_words: None,
            strict: false,
            tokenizer: "word".to_string(),
            lowercase: false,
            min_freq: 2,
            max_vocab: None,
            max_source_tokens: 100,
            max_target_tokens: 100,
            batch: 64,
            teacher_forcing: 1.0,
            optim: LoopConfig {
                eval_every: 200,
                ..LoopConfig::default()
            },
        }
    }
}

impl TranslateTrainConfig {
    /// How the parallel files of this run are read.
    pub fn parallel_options(&self) -> ParallelOptions {
        ParallelOptions {
            reverse: self.reverse,
            max_source_words: self.max_words,
            max_target_words: self.max_words,
            bad_lines: if self.strict {
                BadLine::Error
            } else {
                BadLine::Skip
            },
        }
    }

    /// The columns a table is read by: `source_column` and `target_column`.
    pub fn columns(&self) -> Columns {
        Columns::new()
            .with("source", self.source_column.clone())
            .with("target", self.target_column.clone())
    }

    /// The training and held-out pairs, with the counts of lines left out. Column settings with neither
    /// `data` nor `valid` a table are an error naming the flag and the file.
    pub fn read_pairs(&self) -> Result<(Vec<Pair>, Vec<Pair>, usize, usize)> {
        let options = self.parallel_options();
        let columns = self.columns();
        let sources: Vec<&str> = std::iter::once(self.data.as_str())
            .chain(self.valid.as_deref())
            .collect();
        check_columns(&columns, &sources)?;
        let parallel = read_pairs_from(Path::new(&self.data), &options, &columns)?;
        let (malformed, too_long) = (parallel.malformed, parallel.too_long);
        match &self.valid {
            Some(valid) => {
                let valid = read_pairs_from(Path::new(valid), &options, &columns)?;
                Ok((parallel.pairs, valid.pairs, malformed, too_long))
            }
            None => {
                let (train, held_out) = parallel.split_tail(self.valid_fraction)?;
                Ok((train.pairs, held_out, malformed, too_long))
            }
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.teacher_forcing) {
            return Err(Error::InvalidSetting(format!(
                "--teacher-forcing must lie in [0, 1], got {}",
                self.teacher_forcing
            )));
        }
        if self.batch == 0 || self.max_source_tokens == 0 || self.max_target_tokens == 0 {
            return Err(Error::InvalidSetting(
                "--batch, --max-source-tokens and --max-target-tokens must be at least 1"
                    .to_string(),
            ));
        }
        self.optim.validate()
    }
}

/// Column settings name columns of tables only: given when none of `sources` is a table (a hub split or a
/// `.parquet` file), they are an error rather than ignored.
pub(crate) fn check_columns(columns: &Columns, sources: &[&str]) -> Result<()> {
    Ok(columns.check_tables(sources, "source<TAB>target lines")?)
}

/// The pairs of `path`: a table (a hub split or a `.parquet` file) by its `columns` (a column not named is
/// the catalogue's, else `source` and `target`), any other file as `source<TAB>target` lines. A missing
/// column is an error naming the source, the column and the flag that chooses it.
pub(crate) fn read_pairs_from(
    path: &Path,
    options: &ParallelOptions,
    columns: &Columns,
) -> Result<Parallel> {
    match path.to_str().filter(|s| is_labelled_table(s)) {
        Some(source) => {
            let text = parallel_text(&Hub::from_env(), source, columns)?;
            Ok(parse_parallel(&text, source, options)?)
        }
        None => Ok(read_parallel(path, options)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_the_column_settings_still_loads() {
        // config.json files written before --source-column and --target-column existed.
        let config: TranslateTrainConfig =
            serde_json::from_str(r#"{"data": "pairs.tsv", "batch": 4}"#).unwrap();
        assert_eq!(config.columns(), Columns::new());
        let config = TranslateTrainConfig {
            source_column: Some("translation.en".into()),
            target_column: Some("translation.es".into()),
            ..config
        };
        let json = serde_json::to_string(&config).unwrap();
        let back: TranslateTrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.columns().get("source"), Some("translation.en"));
        assert_eq!(back.columns().get("target"), Some("translation.es"));
    }

    #[test]
    fn column_settings_for_text_files_are_refused() {
        let columns = Columns::new().with("target", Some("es"));
        let error = check_columns(&columns, &["pairs.tsv"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--target-column") && error.contains("pairs.tsv"),
            "{error}"
        );
        assert!(check_columns(&columns, &["pairs.tsv", "valid.parquet"]).is_ok());
        assert!(check_columns(&Columns::new(), &["pairs.tsv"]).is_ok());
    }
}
