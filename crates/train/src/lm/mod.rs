//! The language-model pipeline: train on a corpus ([`train_lm`]), load a model directory ([`load_lm`]),
//! measure a loss ([`evaluate`]), generate text ([`LoadedLm::generate`]).
//!
//! A language model's directory holds `config.json` (task `lm`), `tokenizer.json`, `model.safetensors`,
//! `trainer/`, `metrics.csv` and `loss.svg`.

mod config;
mod dir;
mod generate;
mod train;

use std::path::Path;

use candle_nn::VarBuilder;
use seqlab_cells::RecurrentConfig;
use seqlab_models::{LanguageModel, LanguageModelConfig};
use seqlab_tokenize::Tokenizer;

pub use config::LmTrainConfig;
pub use dir::{
    cross_entropy, eval_rows, evaluate, load_lm, read_config, Evaluation, LmDirConfig, LoadedLm,
    EVAL_ROW_TOKENS,
};
pub use generate::{Generated, TextStream};
pub use seqlab_decode::Decoding;
pub use train::{unigram_loss, LmData, LmTask, LmTrainReport};

use crate::error::Result;
use crate::model_dir::{read_tokenizer, tokenizer_path, write_tokenizer, ModelDir};
use crate::pipeline::{Pipeline, Prepared, Trained};
use crate::trainer::RunOptions;

/// The task of a language model's directory.
pub const TASK: &str = "lm";

/// The language-model pipeline (many-to-many): a [`LanguageModel`] on a token stream, with truncated
/// backpropagation through time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LmPipeline;

impl Pipeline for LmPipeline {
    const TASK: &'static str = TASK;
    const ROLES: &'static [&'static str] = &["text"];
    type ModelConfig = LanguageModelConfig;
    type TrainConfig = LmTrainConfig;
    /// `tokenizer.json`.
    type Artifacts = Tokenizer;
    type Data = LmData;
    type Model = LanguageModel;
    type Task = LmTask;
    type Report = LmTrainReport;

    fn recurrent(model: &LanguageModelConfig) -> RecurrentConfig {
        model.recurrent()
    }

    fn paths(train: &mut LmTrainConfig) -> Vec<&mut String> {
        let LmTrainConfig {
            data,
            valid,
            tokenizer,
            ..
        } = train;
        data.iter_mut()
            .chain(valid.as_mut())
            .chain(tokenizer_path(tokenizer))
            .collect()
    }

    fn prepare(
        _model: &LanguageModelConfig,
        train: &LmTrainConfig,
        saved: Option<Tokenizer>,
    ) -> Result<Prepared<Self>> {
        train::prepare(train, saved)
    }

    fn complete(model: &LanguageModelConfig, tokenizer: &Tokenizer) -> Result<LanguageModelConfig> {
        Ok(LanguageModelConfig {
            vocab_size: tokenizer.vocab_size(),
            ..model.clone()
        })
    }

    fn build(model: &LanguageModelConfig, vb: VarBuilder) -> candle_core::Result<LanguageModel> {
        LanguageModel::new(model, vb)
    }

    fn write_artifacts(tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
        write_tokenizer(tokenizer, &dir.join("tokenizer.json"))
    }

    fn read_artifacts(dir: &Path, config: &ModelDir<Self>) -> Result<Tokenizer> {
        read_tokenizer(dir, "tokenizer.json", config.model.vocab_size)
    }

    fn task(
        model: LanguageModel,
        config: &ModelDir<Self>,
        tokenizer: &Tokenizer,
        data: LmData,
    ) -> Result<LmTask> {
        train::task(model, &config.train, tokenizer, data)
    }

    fn report(run: Trained<'_, Self>) -> Result<LmTrainReport> {
        train::report(run)
    }
}

/// Trains a language model into the model directory `out` (created if needed), the [`Pipeline`] way (see
/// [`crate::pipeline::train`]): `tokenizer.json`, then `config.json`, then the loop. `model.vocab_size` is
/// set from the tokenizer.
///
/// Without `options.resume`, `out` must not hold a model yet ([`crate::Error::OutputExists`]). With it, the
/// settings, tokenizer and data come from `out/config.json` and `out/tokenizer.json`; of `model` and `config`
/// only the run's length and policies apply ([`crate::LoopConfig::resume_with`]).
pub fn train_lm(
    model: &LanguageModelConfig,
    config: &LmTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<LmTrainReport> {
    crate::pipeline::train::<LmPipeline>(model, config, out, options)
}
