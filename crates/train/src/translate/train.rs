//! Training a translator: the parallel data, the two tokenizers, the model, and the loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use seqlab_data::{
    bucket_batches, is_labelled_table, parallel_text, parse_parallel, read_parallel,
    sorted_batches, BadLine, ColumnFlags, Hub, Pair, Parallel, ParallelOptions,
};
use seqlab_models::{Mode, Seq2Seq, Seq2SeqConfig, TeacherForcing};
use seqlab_tokenize::{CharOptions, Tokenizer, WordOptions};
use serde::{Deserialize, Serialize};

use super::data::{encode_pairs, gather, EncodedPairs, Specials};
use super::dir::{read_config, TranslateDirConfig};
use super::{SOURCE_TOKENIZER, TARGET_TOKENIZER, TASK};
use crate::atomic::write_bytes_atomically;
use crate::error::{one_line, Error, Result};
use crate::init::{fnv1a, seeded_var_builder};
use crate::lm::FORMAT;
use crate::trainer::{train, LoopConfig, NonFinite, RunOptions, Task, TrainSummary};

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
    pub fn columns(&self) -> ColumnFlags {
        ColumnFlags {
            source: self.source_column.clone(),
            target: self.target_column.clone(),
            ..ColumnFlags::default()
        }
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

    fn validate(&self) -> Result<()> {
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
pub(crate) fn check_columns(columns: &ColumnFlags, sources: &[&str]) -> Result<()> {
    let flag = match (&columns.source, &columns.target) {
        (Some(_), _) => "--source-column",
        (None, Some(_)) => "--target-column",
        (None, None) => return Ok(()),
    };
    if sources.iter().any(|s| is_labelled_table(s)) {
        return Ok(());
    }
    Err(Error::InvalidSetting(format!(
        "{flag} names a column of a table (a hub split or a .parquet file), but {} is read as \
         source<TAB>target lines",
        sources.first().copied().unwrap_or_default()
    )))
}

/// The pairs of `path`: a table (a hub split or a `.parquet` file) by its `columns` (a column not named is
/// the catalogue's, else `source` and `target`), any other file as `source<TAB>target` lines. A missing
/// column is an error naming the source, the column and the flag that chooses it.
pub(crate) fn read_pairs_from(
    path: &Path,
    options: &ParallelOptions,
    columns: &ColumnFlags,
) -> Result<Parallel> {
    match path.to_str().filter(|s| is_labelled_table(s)) {
        Some(source) => {
            let text = parallel_text(&Hub::from_env(), source, columns)?;
            Ok(parse_parallel(&text, source, options)?)
        }
        None => Ok(read_parallel(path, options)?),
    }
}

/// The translator as a [`Task`] of the training loop.
struct TranslateTask<'a> {
    model: &'a Seq2Seq,
    train: EncodedPairs,
    valid: Option<EncodedPairs>,
    config: &'a TranslateTrainConfig,
    specials: Specials,
    batches: Vec<Vec<usize>>,
}

impl TranslateTask<'_> {
    fn loss(
        &self,
        pairs: &EncodedPairs,
        indices: &[usize],
        mode: Mode,
        seed: u64,
    ) -> Result<(Tensor, usize)> {
        let b = gather(pairs, indices, self.specials, &Device::Cpu)?;
        let forcing = TeacherForcing {
            ratio: if matches!(mode, Mode::Train { .. }) {
                self.config.teacher_forcing
            } else {
                1.0
            },
            seed,
        };
        let loss = self.model.loss(
            &b.src,
            &b.lengths,
            &b.tgt_in,
            &b.tgt_out,
            mode,
            forcing,
            self.specials.pad,
        )?;
        Ok((loss, b.tokens))
    }
}

impl Task for TranslateTask<'_> {
    fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.config.batch)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<()> {
        let lengths: Vec<usize> = self.train.sources.iter().map(Vec::len).collect();
        self.batches = bucket_batches(&lengths, self.config.batch, self.config.optim.seed, epoch)?;
        Ok(())
    }

    fn train_batch(&mut self, index: usize, seed: u64) -> Result<(Tensor, usize)> {
        let indices = self.batches.get(index).cloned().ok_or_else(|| {
            Error::InvalidSetting(format!(
                "batch {index} is beyond the epoch's {} batches",
                self.batches.len()
            ))
        })?;
        self.loss(&self.train, &indices, Mode::Train { seed }, seed)
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        let Some(valid) = &self.valid else {
            return Ok(None);
        };
        let lengths: Vec<usize> = valid.sources.iter().map(Vec::len).collect();
        let (mut sum, mut tokens) = (0.0, 0usize);
        for indices in sorted_batches(&lengths, self.config.batch)? {
            let (loss, n) = self.loss(valid, &indices, Mode::Eval, 0)?;
            sum += loss.to_scalar::<f32>()? as f64 * n as f64;
            tokens += n;
        }
        Ok(Some(sum / tokens.max(1) as f64))
    }

    fn carry(&self) -> Result<HashMap<String, Tensor>> {
        Ok(HashMap::new())
    }

    fn restore_carry(&mut self, _carry: &HashMap<String, Tensor>) -> Result<()> {
        Ok(())
    }
}

/// What [`train_translator`] reports beside the loop's summary.
#[derive(Debug, Clone)]
pub struct TranslateTrainReport {
    /// The loop's summary.
    pub summary: TrainSummary,
    /// Training pairs used.
    pub train_pairs: usize,
    /// Validation pairs used.
    pub valid_pairs: usize,
    /// Lines skipped for having no tab or an empty side (training and validation files).
    pub malformed: usize,
    /// Pairs left out by `max_words`, `max_source_tokens` or `max_target_tokens`.
    pub too_long: usize,
    /// Source and target vocabulary sizes.
    pub vocab: (usize, usize),
    /// Trainable parameters.
    pub parameters: usize,
}

struct Prepared {
    source: Tokenizer,
    target: Tokenizer,
    train: EncodedPairs,
    valid: Option<EncodedPairs>,
    malformed: usize,
    too_long: usize,
    fingerprint: String,
}

fn build_tokenizer(config: &TranslateTrainConfig, texts: &[&str]) -> Result<Tokenizer> {
    Ok(match config.tokenizer.as_str() {
        "word" => Tokenizer::build_word(
            texts,
            &WordOptions {
                lowercase: config.lowercase,
                min_freq: config.min_freq,
                max_size: config.max_vocab,
                ..WordOptions::default()
            },
        )?,
        "char" => Tokenizer::build_char(
            texts,
            &CharOptions {
                lowercase: config.lowercase,
                min_freq: config.min_freq,
                max_size: config.max_vocab,
                ..CharOptions::default()
            },
        )?,
        other => {
            return Err(Error::InvalidSetting(format!(
                "unknown --tokenizer {other:?}: expected word or char"
            )))
        }
    })
}

fn prepare(
    config: &TranslateTrainConfig,
    tokenizers: Option<(Tokenizer, Tokenizer)>,
) -> Result<Prepared> {
    let (train_pairs, valid_pairs, malformed, too_long) = config.read_pairs()?;
    let (source, target) = match tokenizers {
        Some(pair) => pair,
        None => {
            let sources: Vec<&str> = train_pairs.iter().map(|p| p.source.as_str()).collect();
            let targets: Vec<&str> = train_pairs.iter().map(|p| p.target.as_str()).collect();
            (
                build_tokenizer(config, &sources)?,
                build_tokenizer(config, &targets)?,
            )
        }
    };
    let encode = |pairs: &[Pair]| {
        encode_pairs(
            pairs,
            &source,
            &target,
            config.max_source_tokens,
            config.max_target_tokens,
            None,
        )
    };
    let train = encode(&train_pairs)?;
    if train.is_empty() {
        return Err(Error::InvalidSetting(format!(
            "{} holds no training pair within the length limits",
            config.data
        )));
    }
    let valid = if valid_pairs.is_empty() {
        None
    } else {
        Some(encode(&valid_pairs)?).filter(|v| !v.is_empty())
    };
    let mut bytes: Vec<u8> = Vec::new();
    for set in std::iter::once(&train).chain(valid.as_ref()) {
        for (s, t) in set.sources.iter().zip(&set.targets) {
            bytes.extend(s.iter().flat_map(|id| id.to_le_bytes()));
            bytes.extend(u32::MAX.to_le_bytes());
            bytes.extend(t.iter().flat_map(|id| id.to_le_bytes()));
        }
    }
    let too_long = too_long + train.too_long + valid.as_ref().map_or(0, |v| v.too_long);
    Ok(Prepared {
        fingerprint: format!("{:016x}-{}", fnv1a(&bytes), train.len()),
        source,
        target,
        train,
        valid,
        malformed,
        too_long,
    })
}

fn absolute(path: &str) -> String {
    // Hub addresses (issue 11) are kept as they are.
    if path.starts_with(seqlab_data::HUB_SCHEME) {
        return path.to_string();
    }
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .map_or_else(|_| path.to_string(), |p: PathBuf| p.display().to_string())
}

fn save_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let json = tokenizer
        .as_hf()
        .to_string(true)
        .map_err(|e| Error::InvalidSetting(one_line(e)))?;
    write_bytes_atomically(path, json.as_bytes()).map_err(Error::write(path))
}

/// Trains a translator into the model directory `out`: writes the two tokenizers and `config.json`, then
/// runs the loop ([`train`]). The vocabulary sizes of `model` are set from the tokenizers.
///
/// Without `options.resume`, `out` must not hold a model yet. With it, the settings, tokenizers and data come
/// from `out`; of `model` and `config` only `config.optim.steps`, `epochs`, `on_nonfinite` and the columns
/// (`source_column`, `target_column`, when set) apply.
pub fn train_translator(
    model: &Seq2SeqConfig,
    config: &TranslateTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<TranslateTrainReport> {
    let config_path = out.join("config.json");
    let (dir_config, prepared) = if options.resume {
        let mut saved = read_config(out)?;
        let optim = &mut saved.train.optim;
        optim.steps = config.optim.steps.or(optim.steps);
        optim.epochs = config.optim.epochs.or(optim.epochs);
        if config.optim.on_nonfinite == NonFinite::Skip {
            optim.on_nonfinite = NonFinite::Skip;
        }
        // The saved columns, unless others are given.
        if config.source_column.is_some() {
            saved.train.source_column = config.source_column.clone();
        }
        if config.target_column.is_some() {
            saved.train.target_column = config.target_column.clone();
        }
        let source = Tokenizer::from_file(&out.join(SOURCE_TOKENIZER))?;
        let target = Tokenizer::from_file(&out.join(TARGET_TOKENIZER))?;
        let prepared = prepare(&saved.train, Some((source, target)))?;
        (saved, prepared)
    } else {
        if config_path.exists() {
            return Err(Error::OutputExists {
                dir: out.to_path_buf(),
            });
        }
        config.validate()?;
        let config = TranslateTrainConfig {
            data: absolute(&config.data),
            valid: config.valid.as_deref().map(absolute),
            ..config.clone()
        };
        let prepared = prepare(&config, None)?;
        let model = Seq2SeqConfig {
            source_vocab: prepared.source.vocab_size(),
            target_vocab: prepared.target.vocab_size(),
            ..model.clone()
        };
        model
            .validate()
            .map_err(|e| Error::InvalidSetting(one_line(e)))?;
        let dir_config = TranslateDirConfig {
            format: FORMAT.to_string(),
            task: TASK.to_string(),
            model,
            train: config,
        };
        (dir_config, prepared)
    };
    std::fs::create_dir_all(out).map_err(Error::write(out))?;
    save_tokenizer(&prepared.source, &out.join(SOURCE_TOKENIZER))?;
    save_tokenizer(&prepared.target, &out.join(TARGET_TOKENIZER))?;
    let json = serde_json::to_string_pretty(&dir_config)
        .map_err(|e| Error::InvalidSetting(e.to_string()))?;
    write_bytes_atomically(&config_path, json.as_bytes()).map_err(Error::write(&config_path))?;

    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = Seq2Seq::new(
        &dir_config.model,
        seeded_var_builder(&varmap, dir_config.train.optim.seed, &device),
    )?;
    let parameters: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    if options.progress {
        eprintln!(
            "data: {} training pairs, {} validation pairs ({} lines skipped as malformed, {} pairs too long); \
             vocabulary {} source / {} target; model: {parameters} parameters",
            prepared.train.len(),
            prepared.valid.as_ref().map_or(0, EncodedPairs::len),
            prepared.malformed,
            prepared.too_long,
            prepared.source.vocab_size(),
            prepared.target.vocab_size(),
        );
    }
    let report_base = TranslateTrainReport {
        summary: TrainSummary {
            steps: 0,
            total_steps: 0,
            best_valid: None,
            last_train_loss: None,
            elapsed_s: 0.0,
            tokens_per_s: 0.0,
            stopped: crate::trainer::Stopped::Finished,
        },
        train_pairs: prepared.train.len(),
        valid_pairs: prepared.valid.as_ref().map_or(0, EncodedPairs::len),
        malformed: prepared.malformed,
        too_long: prepared.too_long,
        vocab: (prepared.source.vocab_size(), prepared.target.vocab_size()),
        parameters,
    };
    let mut task = TranslateTask {
        model: &model,
        train: prepared.train,
        valid: prepared.valid,
        config: &dir_config.train,
        specials: Specials::of(&prepared.target)?,
        batches: Vec::new(),
    };
    let summary = train(
        &mut task,
        &varmap,
        &dir_config.train.optim,
        out,
        &prepared.fingerprint,
        options,
    )?;
    Ok(TranslateTrainReport {
        summary,
        ..report_base
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_the_column_settings_still_loads() {
        // config.json files written before --source-column and --target-column existed.
        let config: TranslateTrainConfig =
            serde_json::from_str(r#"{"data": "pairs.tsv", "batch": 4}"#).unwrap();
        assert_eq!(config.columns(), ColumnFlags::default());
        let config = TranslateTrainConfig {
            source_column: Some("translation.en".into()),
            target_column: Some("translation.es".into()),
            ..config
        };
        let json = serde_json::to_string(&config).unwrap();
        let back: TranslateTrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.columns().source.as_deref(), Some("translation.en"));
        assert_eq!(back.columns().target.as_deref(), Some("translation.es"));
    }

    #[test]
    fn column_settings_for_text_files_are_refused() {
        let columns = ColumnFlags {
            target: Some("es".into()),
            ..ColumnFlags::default()
        };
        let error = check_columns(&columns, &["pairs.tsv"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("--target-column") && error.contains("pairs.tsv"),
            "{error}"
        );
        assert!(check_columns(&columns, &["pairs.tsv", "valid.parquet"]).is_ok());
        assert!(check_columns(&ColumnFlags::default(), &["pairs.tsv"]).is_ok());
    }
}
