//! Training a language model: the corpus, the tokenizer, the model, and the loop.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use seqlab_cells::State;
use seqlab_data::{load_corpus_with, split_tail, StreamBatches};
use seqlab_models::{LanguageModel, LanguageModelConfig, Mode};
use seqlab_tokenize::{CharOptions, Tokenizer, WordOptions};
use serde::{Deserialize, Serialize};

use super::dir::{eval_rows, evaluate, read_config, LmDirConfig};
use super::{FORMAT, TASK};
use crate::atomic::write_bytes_atomically;
use crate::error::{one_line, Error, Result};
use crate::init::{fnv1a, seeded_var_builder};
use crate::trainer::{train, LoopConfig, NonFinite, RunOptions, Task, TrainSummary};

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

/// The language model as a [`Task`] of the training loop.
struct LmTask<'a> {
    model: &'a LanguageModel,
    train: Vec<u32>,
    valid: Option<Vec<u32>>,
    start: Option<u32>,
    config: &'a LmTrainConfig,
    batches: StreamBatches,
    state: Option<State>,
}

impl Task for LmTask<'_> {
    fn batches_per_epoch(&self) -> usize {
        self.batches.len()
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<()> {
        self.batches = StreamBatches::for_epoch(
            &self.train,
            self.start,
            self.config.batch,
            self.config.seq_len,
            self.config.optim.seed,
            epoch,
            "training text",
        )?;
        self.state = None;
        Ok(())
    }

    fn train_batch(&mut self, index: usize, seed: u64) -> Result<(Tensor, usize)> {
        let batch = self.batches.get(index).ok_or_else(|| {
            Error::InvalidSetting(format!(
                "batch {index} is beyond the epoch's {} batches",
                self.batches.len()
            ))
        })?;
        let (xs, ys) = batch.tensors(&Device::Cpu)?;
        let (loss, state) = self
            .model
            .loss(&xs, self.state.as_ref(), &ys, Mode::Train { seed })?;
        self.state = Some(state.detach());
        Ok((loss, batch.tokens()))
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        match &self.valid {
            Some(ids) => Ok(Some(
                evaluate(
                    self.model,
                    ids,
                    self.start,
                    eval_rows(ids.len(), self.config.batch),
                    self.config.seq_len,
                )?
                .loss,
            )),
            None => Ok(None),
        }
    }

    fn carry(&self) -> Result<HashMap<String, Tensor>> {
        let mut carry = HashMap::new();
        if let Some(state) = &self.state {
            carry.insert("h".to_string(), state.h.clone());
            if let Some(c) = &state.c {
                carry.insert("c".to_string(), c.clone());
            }
        }
        Ok(carry)
    }

    fn restore_carry(&mut self, carry: &HashMap<String, Tensor>) -> Result<()> {
        self.state = carry.get("h").map(|h| State {
            h: h.clone(),
            c: carry.get("c").cloned(),
        });
        Ok(())
    }

    fn discard_batch(&mut self) -> Result<()> {
        // A non-finite loss may come with a non-finite state: the rows start again from zero.
        self.state = None;
        Ok(())
    }
}

/// What a training run reads: the tokenizer and the token streams.
struct Prepared {
    tokenizer: Tokenizer,
    train: Vec<u32>,
    valid: Option<Vec<u32>>,
    fingerprint: String,
    description: String,
}

fn prepare(config: &LmTrainConfig, tokenizer: Option<Tokenizer>) -> Result<Prepared> {
    let hub = seqlab_data::Hub::from_env();
    let column = config.text_column.as_deref();
    let corpus = load_corpus_with(&hub, &config.data, column)?;
    let (train_text, valid_text) = match &config.valid {
        Some(source) => (
            corpus.text.as_str(),
            load_corpus_with(&hub, std::slice::from_ref(source), column)?.text,
        ),
        None => {
            let (train, valid) = split_tail(&corpus.text, config.valid_fraction)?;
            (train, valid.to_string())
        }
    };
    let tokenizer = match tokenizer {
        Some(tokenizer) => tokenizer,
        None => build_tokenizer(config, train_text)?,
    };
    let train = tokenizer.encode(train_text)?;
    let valid = if valid_text.trim().is_empty() {
        None
    } else {
        Some(tokenizer.encode(&valid_text)?)
    };
    let mut bytes: Vec<u8> = train.iter().flat_map(|id| id.to_le_bytes()).collect();
    if let Some(valid) = &valid {
        bytes.extend(valid.iter().flat_map(|id| id.to_le_bytes()));
    }
    Ok(Prepared {
        fingerprint: format!("{:016x}-{}", fnv1a(&bytes), train.len()),
        tokenizer,
        train,
        valid,
        description: corpus.description,
    })
}

fn build_tokenizer(config: &LmTrainConfig, text: &str) -> Result<Tokenizer> {
    Ok(match config.tokenizer.as_str() {
        "char" => Tokenizer::build_char(
            &[text],
            &CharOptions {
                lowercase: config.lowercase,
                min_freq: config.min_freq,
                max_size: config.max_vocab,
                ..CharOptions::default()
            },
        )?,
        "word" => Tokenizer::build_word(
            &[text],
            &WordOptions {
                lowercase: config.lowercase,
                min_freq: config.min_freq,
                max_size: config.max_vocab,
                ..WordOptions::default()
            },
        )?,
        path => Tokenizer::from_file(Path::new(path))?,
    })
}

/// What [`train_lm`] reports beside the loop's summary.
#[derive(Debug, Clone)]
pub struct LmTrainReport {
    /// The loop's summary.
    pub summary: TrainSummary,
    /// Where the text came from.
    pub data: String,
    /// Tokens of the training stream.
    pub train_tokens: usize,
    /// Tokens of the validation stream (0 without validation).
    pub valid_tokens: usize,
    /// The tokenizer's vocabulary size.
    pub vocab_size: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// The validation loss of the unigram model of the training text (see [`unigram_loss`]): the baseline
    /// that a language model must beat. `None` without validation data.
    pub unigram_valid_loss: Option<f64>,
}

/// The mean loss per token on `eval` of a unigram model counted on `train`: each token's probability is its
/// frequency in `train`, add-one smoothed over the `vocab_size` tokens (so an unseen token costs
/// `ln(train.len() + vocab_size)` nats, not infinity). A model that uses no context at all does this well.
pub fn unigram_loss(train: &[u32], eval: &[u32], vocab_size: usize) -> f64 {
    let mut counts = vec![1.0f64; vocab_size];
    for &id in train {
        if let Some(c) = counts.get_mut(id as usize) {
            *c += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let sum: f64 = eval
        .iter()
        .map(|&id| -(counts.get(id as usize).copied().unwrap_or(1.0) / total).ln())
        .sum();
    sum / eval.len().max(1) as f64
}

/// Trains a language model into the model directory `out` (created if needed): writes `config.json` and
/// `tokenizer.json` first, then runs the loop ([`train`]). `model.vocab_size` is set from the tokenizer.
///
/// Without `options.resume`, `out` must not hold a model yet ([`Error::OutputExists`]). With it, the
/// settings, tokenizer and data come from `out/config.json` and `out/tokenizer.json`; `model` and `config`
/// are ignored but for `config.optim.steps` and `config.optim.epochs`, which, when set, extend or shorten the
/// run (unset, the run continues exactly as it was planned).
pub fn train_lm(
    model: &LanguageModelConfig,
    config: &LmTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<LmTrainReport> {
    let config_path = out.join("config.json");
    let (dir_config, prepared) = if options.resume {
        let mut saved = read_config(out)?;
        let optim = &mut saved.train.optim;
        optim.steps = config.optim.steps.or(optim.steps);
        optim.epochs = config.optim.epochs.or(optim.epochs);
        if config.optim.on_nonfinite == NonFinite::Skip {
            optim.on_nonfinite = NonFinite::Skip;
        }
        let tokenizer_path = out.join("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_path)?;
        let prepared = prepare(&saved.train, Some(tokenizer))?;
        (saved, prepared)
    } else {
        if config_path.exists() {
            return Err(Error::OutputExists {
                dir: out.to_path_buf(),
            });
        }
        config.optim.validate()?;
        // Local paths are saved absolute, so that --resume works from any directory.
        let config = &LmTrainConfig {
            data: config
                .data
                .iter()
                .map(|source| absolute_source(source))
                .collect(),
            valid: config.valid.as_deref().map(absolute_source),
            ..config.clone()
        };
        let prepared = prepare(config, None)?;
        let model = LanguageModelConfig {
            vocab_size: prepared.tokenizer.vocab_size(),
            ..model.clone()
        };
        let dir_config = LmDirConfig {
            format: FORMAT.to_string(),
            task: TASK.to_string(),
            model,
            train: config.clone(),
        };
        (dir_config, prepared)
    };
    let start = prepared.tokenizer.bos_id();
    let train_config = &dir_config.train;
    if let Some(valid) = &prepared.valid {
        StreamBatches::new(
            valid,
            start,
            train_config.batch,
            train_config.seq_len,
            0,
            "validation text",
        )?;
    }
    let batches = StreamBatches::for_epoch(
        &prepared.train,
        start,
        train_config.batch,
        train_config.seq_len,
        train_config.optim.seed,
        0,
        "training text",
    )?;
    // The model is built before anything is written, so that bad settings leave no directory behind.
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = LanguageModel::new(
        &dir_config.model,
        seeded_var_builder(&varmap, dir_config.train.optim.seed, &device),
    )?;
    std::fs::create_dir_all(out).map_err(Error::write(out))?;
    // config.json last: it marks a directory as holding a model, so everything it refers to exists first.
    let tokenizer_path = out.join("tokenizer.json");
    let tokenizer_json = prepared
        .tokenizer
        .as_hf()
        .to_string(true)
        .map_err(|e| Error::InvalidSetting(one_line(e)))?;
    write_bytes_atomically(&tokenizer_path, tokenizer_json.as_bytes())
        .map_err(Error::write(&tokenizer_path))?;
    let json = serde_json::to_string_pretty(&dir_config)
        .map_err(|e| Error::InvalidSetting(e.to_string()))?;
    write_bytes_atomically(&config_path, json.as_bytes()).map_err(Error::write(&config_path))?;

    if options.progress {
        eprintln!(
            "data: {} ({} training tokens, {} validation tokens, vocabulary {}); model: {} parameters",
            prepared.description,
            prepared.train.len(),
            prepared.valid.as_ref().map_or(0, Vec::len),
            prepared.tokenizer.vocab_size(),
            dir_config.model.num_parameters()
        );
    }
    let vocab_size = prepared.tokenizer.vocab_size();
    let train_tokens = prepared.train.len();
    let valid_tokens = prepared.valid.as_ref().map_or(0, Vec::len);
    let unigram_valid_loss = prepared
        .valid
        .as_ref()
        .map(|valid| unigram_loss(&prepared.train, valid, vocab_size));
    let mut task = LmTask {
        model: &model,
        train: prepared.train,
        valid: prepared.valid,
        start,
        config: train_config,
        batches,
        state: None,
    };
    let summary = train(
        &mut task,
        &varmap,
        &train_config.optim,
        out,
        &prepared.fingerprint,
        options,
    )?;
    Ok(LmTrainReport {
        summary,
        data: prepared.description,
        train_tokens,
        valid_tokens,
        vocab_size,
        parameters: dir_config.model.num_parameters(),
        unigram_valid_loss,
    })
}

/// A data source with a local path made absolute (canonical when the file exists); hub addresses as
/// they are.
fn absolute_source(source: &str) -> String {
    if source.starts_with(seqlab_data::HUB_SCHEME) {
        return source.to_string();
    }
    std::fs::canonicalize(source)
        .or_else(|_| std::path::absolute(source))
        .map_or_else(|_| source.to_string(), |path| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unigram_loss_is_the_cross_entropy_of_smoothed_frequencies() {
        // Counts + 1 over a vocabulary of 3: token 0 → 3, token 1 → 2, token 2 → 1; total 6.
        let loss = unigram_loss(&[0, 0, 1], &[0, 2], 3);
        let expected = -((3.0f64 / 6.0).ln() + (1.0f64 / 6.0).ln()) / 2.0;
        assert!((loss - expected).abs() < 1e-12);
    }
}
