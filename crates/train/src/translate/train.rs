//! Training a translator: the parallel data, the two tokenizers, the loop's task, and what a run reports.

use candle_core::{Device, Tensor};
use seqlab_data::{bucket_batches, sorted_batches, Pair};
use seqlab_models::{Mode, Seq2Seq, TeacherForcing};
use seqlab_tokenize::{Framing, Tokenizer, VocabOptions};

use super::config::TranslateTrainConfig;
use super::data::{encode_pairs, gather, EncodedPairs};
use super::dir::TranslatorFiles;
use super::TranslatePipeline;
use crate::error::{Error, Result};
use crate::init::fnv1a;
use crate::model_dir::framing;
use crate::pipeline::{Prepared, Trained};
use crate::trainer::{Task, TrainSummary};

/// The translator as a [`Task`] of the training loop.
pub struct TranslateTask {
    model: Seq2Seq,
    train: EncodedPairs,
    valid: Option<EncodedPairs>,
    config: TranslateTrainConfig,
    /// Lines skipped as malformed, pairs left out as too long.
    malformed: usize,
    too_long: usize,
    specials: Framing,
    batches: Vec<Vec<usize>>,
}

impl std::fmt::Debug for TranslateTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslateTask")
            .field("train_pairs", &self.train.len())
            .finish_non_exhaustive()
    }
}

impl TranslateTask {
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

impl Task for TranslateTask {
    fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.config.batch)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<()> {
        let lengths: Vec<usize> = self.train.sources.iter().map(Vec::len).collect();
        self.batches = bucket_batches(&lengths, self.config.batch, self.config.optim.seed, epoch)?;
        Ok(())
    }

    fn train_batch(&mut self, index: usize, seed: u64) -> Result<(Tensor, usize)> {
        let indices = crate::trainer::epoch_batch(&self.batches, index)?.clone();
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
}

/// What [`super::train_translator`] reports beside the loop's summary.
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

/// The encoded pairs of a run, and what reading them left out.
#[derive(Debug)]
pub struct TranslateData {
    train: EncodedPairs,
    valid: Option<EncodedPairs>,
    malformed: usize,
    too_long: usize,
}

/// A tokenizer of one side built from its training `texts`: `word` or `char` (a tokenizer file does not
/// fit two vocabularies).
fn build_tokenizer(config: &TranslateTrainConfig, texts: &[&str]) -> Result<Tokenizer> {
    if !matches!(config.tokenizer.as_str(), "word" | "char") {
        return Err(Error::InvalidSetting(format!(
            "unknown --tokenizer {:?}: expected word or char",
            config.tokenizer
        )));
    }
    Ok(Tokenizer::build_named(
        &config.tokenizer,
        texts,
        &VocabOptions {
            lowercase: config.lowercase,
            min_freq: config.min_freq,
            max_size: config.max_vocab,
        },
    )?)
}

pub(super) fn prepare(
    config: &TranslateTrainConfig,
    tokenizers: Option<TranslatorFiles>,
) -> Result<Prepared<TranslatePipeline>> {
    let (train_pairs, valid_pairs, malformed, too_long) = config.read_pairs()?;
    let (source, target) = match tokenizers {
        Some(files) => (files.source, files.target),
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
    let description = format!(
        "{} training pairs, {} validation pairs ({} lines skipped as malformed, {} pairs too long); \
         vocabulary {} source / {} target",
        train.len(),
        valid.as_ref().map_or(0, EncodedPairs::len),
        malformed,
        too_long,
        source.vocab_size(),
        target.vocab_size(),
    );
    Ok(Prepared {
        fingerprint: format!("{:016x}-{}", fnv1a(&bytes), train.len()),
        artifacts: TranslatorFiles { source, target },
        data: TranslateData {
            train,
            valid,
            malformed,
            too_long,
        },
        description,
    })
}

/// The task of a run.
pub(super) fn task(
    model: Seq2Seq,
    config: &TranslateTrainConfig,
    files: &TranslatorFiles,
    data: TranslateData,
) -> Result<TranslateTask> {
    Ok(TranslateTask {
        model,
        train: data.train,
        valid: data.valid,
        config: config.clone(),
        malformed: data.malformed,
        too_long: data.too_long,
        specials: framing(&files.target, "the target tokenizer")?,
        batches: Vec::new(),
    })
}

/// The report of a finished run.
pub(super) fn report(run: Trained<'_, TranslatePipeline>) -> Result<TranslateTrainReport> {
    let task = &run.task;
    Ok(TranslateTrainReport {
        train_pairs: task.train.len(),
        valid_pairs: task.valid.as_ref().map_or(0, EncodedPairs::len),
        malformed: task.malformed,
        too_long: task.too_long,
        vocab: (
            run.artifacts.source.vocab_size(),
            run.artifacts.target.vocab_size(),
        ),
        parameters: run.parameters,
        summary: run.summary,
    })
}
