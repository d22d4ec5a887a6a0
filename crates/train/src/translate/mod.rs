//! The translation pipeline: train an encoder-decoder with attention on `source<TAB>target` pairs
//! ([`train_translator`]), load its model directory ([`load_translator`]), translate with greedy decoding or
//! beam search ([`LoadedTranslator::translate`]), measure corpus BLEU of free-running decodes
//! ([`LoadedTranslator::evaluate`]), and draw the attention as a heat map ([`attention_svg`]).
//!
//! A translator's directory holds `config.json` (task `translate`), `tokenizer.source.json`,
//! `tokenizer.target.json`, `model.safetensors`, `trainer/`, `metrics.csv` and `loss.svg`.

mod config;
mod data;
mod dir;
mod plot;
mod train;

use std::path::Path;

use candle_nn::VarBuilder;
use seqlab_cells::RecurrentConfig;
use seqlab_models::{Seq2Seq, Seq2SeqConfig};

pub use config::TranslateTrainConfig;
pub use data::{encode_pairs, EncodedPairs};
pub use dir::{
    load_translator, read_config, LoadedTranslator, TranslateDirConfig, TranslateEval, Translation,
    TranslatorFiles,
};
pub use plot::attention_svg;
pub use seqlab_decode::Decoding;
pub use train::{TranslateData, TranslateTask, TranslateTrainReport};

use crate::error::{one_line, Error, Result};
use crate::model_dir::ModelDir;
use crate::pipeline::{Pipeline, Prepared, Trained};
use crate::trainer::RunOptions;

/// The task of a translator's directory.
pub const TASK: &str = "translate";
/// The source side's tokenizer file in a model directory.
pub const SOURCE_TOKENIZER: &str = "tokenizer.source.json";
/// The target side's tokenizer file in a model directory.
pub const TARGET_TOKENIZER: &str = "tokenizer.target.json";

/// The translation pipeline (many-to-many, encoder-decoder): a [`Seq2Seq`] on sentence pairs, batched by
/// source length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranslatePipeline;

impl Pipeline for TranslatePipeline {
    const TASK: &'static str = TASK;
    const ROLES: &'static [&'static str] = &["source", "target"];
    const UNIT: &'static str = "target tokens";
    type ModelConfig = Seq2SeqConfig;
    type TrainConfig = TranslateTrainConfig;
    /// `tokenizer.source.json` and `tokenizer.target.json`.
    type Artifacts = TranslatorFiles;
    type Data = TranslateData;
    type Model = Seq2Seq;
    type Task = TranslateTask;
    type Report = TranslateTrainReport;

    fn recurrent(model: &Seq2SeqConfig) -> RecurrentConfig {
        model.decoder_rnn()
    }

    fn paths(train: &mut TranslateTrainConfig) -> Vec<&mut String> {
        std::iter::once(&mut train.data)
            .chain(train.valid.as_mut())
            .collect()
    }

    fn check(_model: &Seq2SeqConfig, train: &TranslateTrainConfig) -> Result<()> {
        train.validate()
    }

    fn prepare(
        _model: &Seq2SeqConfig,
        train: &TranslateTrainConfig,
        saved: Option<TranslatorFiles>,
    ) -> Result<Prepared<Self>> {
        train::prepare(train, saved)
    }

    fn complete(model: &Seq2SeqConfig, files: &TranslatorFiles) -> Result<Seq2SeqConfig> {
        let model = Seq2SeqConfig {
            source_vocab: files.source.vocab_size(),
            target_vocab: files.target.vocab_size(),
            ..model.clone()
        };
        model
            .validate()
            .map_err(|e| Error::InvalidSetting(one_line(e)))?;
        Ok(model)
    }

    fn build(model: &Seq2SeqConfig, vb: VarBuilder) -> candle_core::Result<Seq2Seq> {
        Seq2Seq::new(model, vb)
    }

    fn write_artifacts(files: &TranslatorFiles, dir: &Path) -> Result<()> {
        dir::write_files(files, dir)
    }

    fn read_artifacts(dir: &Path, config: &ModelDir<Self>) -> Result<TranslatorFiles> {
        dir::read_files(dir, config)
    }

    fn task(
        model: Seq2Seq,
        config: &ModelDir<Self>,
        files: &TranslatorFiles,
        data: TranslateData,
    ) -> Result<TranslateTask> {
        train::task(model, &config.train, files, data)
    }

    fn report(run: Trained<'_, Self>) -> Result<TranslateTrainReport> {
        train::report(run)
    }
}

/// Trains a translator into the model directory `out`, the [`Pipeline`] way (see
/// [`crate::pipeline::train`]): the two tokenizers, then `config.json`, then the loop. The vocabulary sizes
/// of `model` are set from the tokenizers.
///
/// Without `options.resume`, `out` must not hold a model yet. With it, the settings, tokenizers and data come
/// from `out`; of `model` and `config` only the run's length and policies apply
/// ([`crate::LoopConfig::resume_with`]).
pub fn train_translator(
    model: &Seq2SeqConfig,
    config: &TranslateTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<TranslateTrainReport> {
    crate::pipeline::train::<TranslatePipeline>(model, config, out, options)
}
