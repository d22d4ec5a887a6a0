//! Training a language model: the corpus, the tokenizer, the loop's task, and what a run reports.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use seqlab_cells::State;
use seqlab_data::{load_corpus_with, split_tail, StreamBatches};
use seqlab_models::{LanguageModel, Mode};
use seqlab_tokenize::{Tokenizer, VocabOptions};

use super::config::LmTrainConfig;
use super::dir::{eval_rows, evaluate};
use super::LmPipeline;
use crate::error::{Error, Result};
use crate::init::fnv1a;
use crate::pipeline::{Prepared, Trained};
use crate::trainer::{Task, TrainSummary};

/// The language model as a [`Task`] of the training loop.
pub struct LmTask {
    model: LanguageModel,
    train: Vec<u32>,
    valid: Option<Vec<u32>>,
    start: Option<u32>,
    config: LmTrainConfig,
    /// Names of the state's memory tensors beside `h` (an LSTM's `c`): the carry's names in a checkpoint.
    memory: Vec<&'static str>,
    /// Where the text came from.
    source: String,
    batches: StreamBatches,
    state: Option<State>,
}

impl std::fmt::Debug for LmTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmTask")
            .field("train_tokens", &self.train.len())
            .field("batches", &self.batches.len())
            .finish_non_exhaustive()
    }
}

impl Task for LmTask {
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
                    &self.model,
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
            for (name, tensor) in self.memory.iter().zip(&state.memory) {
                carry.insert(name.to_string(), tensor.clone());
            }
        }
        Ok(carry)
    }

    fn restore_carry(&mut self, carry: &HashMap<String, Tensor>) -> Result<()> {
        self.state = match carry.get("h") {
            Some(h) => {
                let memory = self
                    .memory
                    .iter()
                    .map(|name| {
                        carry.get(*name).cloned().ok_or_else(|| {
                            Error::ResumeMismatch(format!("the checkpoint's carry has no {name}"))
                        })
                    })
                    .collect::<Result<_>>()?;
                Some(State::new(h.clone(), memory))
            }
            None => None,
        };
        Ok(())
    }

    fn discard_batch(&mut self) -> Result<()> {
        // A non-finite loss may come with a non-finite state: the rows start again from zero.
        self.state = None;
        Ok(())
    }
}

/// The token streams of a run, and the corpus's name.
#[derive(Debug)]
pub struct LmData {
    train: Vec<u32>,
    valid: Option<Vec<u32>>,
    description: String,
}

/// Reads the corpus (and the validation text or the corpus's tail), builds the tokenizer unless one is
/// `saved`, and encodes both.
pub(super) fn prepare(
    config: &LmTrainConfig,
    saved: Option<Tokenizer>,
) -> Result<Prepared<LmPipeline>> {
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
    let tokenizer = match saved {
        Some(tokenizer) => tokenizer,
        None => Tokenizer::build_named(
            &config.tokenizer,
            &[train_text],
            &VocabOptions {
                lowercase: config.lowercase,
                min_freq: config.min_freq,
                max_size: config.max_vocab,
            },
        )?,
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
    let description = format!(
        "{} ({} training tokens, {} validation tokens, vocabulary {})",
        corpus.description,
        train.len(),
        valid.as_ref().map_or(0, Vec::len),
        tokenizer.vocab_size()
    );
    Ok(Prepared {
        fingerprint: format!("{:016x}-{}", fnv1a(&bytes), train.len()),
        artifacts: tokenizer,
        description,
        data: LmData {
            train,
            valid,
            description: corpus.description,
        },
    })
}

/// The task of a run: the streams laid out in batches, checked against the batch and sequence length
/// (a text too short for one batch is an error here, before anything is written).
pub(super) fn task(
    model: LanguageModel,
    config: &LmTrainConfig,
    tokenizer: &Tokenizer,
    data: LmData,
) -> Result<LmTask> {
    let start = tokenizer.bos_id();
    if let Some(valid) = &data.valid {
        StreamBatches::new(
            valid,
            start,
            config.batch,
            config.seq_len,
            0,
            "validation text",
        )?;
    }
    let batches = StreamBatches::for_epoch(
        &data.train,
        start,
        config.batch,
        config.seq_len,
        config.optim.seed,
        0,
        "training text",
    )?;
    let memory = model.rnn().memory().iter().map(|slot| slot.name).collect();
    Ok(LmTask {
        model,
        train: data.train,
        valid: data.valid,
        start,
        config: config.clone(),
        memory,
        source: data.description,
        batches,
        state: None,
    })
}

/// What [`super::train_lm`] reports beside the loop's summary.
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

/// The report of a finished run.
pub(super) fn report(run: Trained<'_, LmPipeline>) -> Result<LmTrainReport> {
    let task = &run.task;
    let vocab_size = run.artifacts.vocab_size();
    Ok(LmTrainReport {
        data: task.source.clone(),
        train_tokens: task.train.len(),
        valid_tokens: task.valid.as_ref().map_or(0, Vec::len),
        vocab_size,
        parameters: run.parameters,
        unigram_valid_loss: task
            .valid
            .as_ref()
            .map(|valid| unigram_loss(&task.train, valid, vocab_size)),
        summary: run.summary,
    })
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
