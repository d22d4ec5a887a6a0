//! The captioning pipeline: train a [`seqlab_models::Captioner`] on images with captions in the Flickr8k
//! layout ([`train_captioner`]), load its model directory ([`load_captioner`]), caption images
//! ([`LoadedCaptioner::caption`]) and score the captions against every reference of each image
//! ([`evaluate_captions`]: corpus BLEU-1..4 and exact match, from free-running decoding), and an HTML report
//! of images beside their captions ([`html_report`]).
//!
//! A captioner's directory holds `config.json` (task `caption`), `tokenizer.json`, `model.safetensors`
//! (batch norm's running statistics included), `trainer/`, `metrics.csv` and `loss.svg`.

mod config;
mod dir;
mod eval;
mod report;
mod train;

use std::path::Path;

use candle_nn::VarBuilder;
use seqlab_cells::RecurrentConfig;
use seqlab_models::{Captioner, CaptionerConfig};
use seqlab_tokenize::Tokenizer;

pub use config::{CaptionTrainConfig, Split};
pub use dir::{load_captioner, read_caption_config, CaptionDirConfig, LoadedCaptioner};
pub use eval::{
    baseline_caption, evaluate_captions, exact_match_normalise, CaptionEvaluation, CaptionedOutput,
};
pub use report::html_report;
pub use seqlab_decode::Decoding;
pub use train::{CaptionData, CaptionTask, CaptionTrainReport};

use crate::error::{Error, Result};
use crate::model_dir::{read_tokenizer, write_tokenizer, ModelDir};
use crate::pipeline::{Pipeline, Prepared, Trained};
use crate::trainer::RunOptions;

/// The task of a captioner's directory.
pub const CAPTION_TASK: &str = "caption";

/// The captioning pipeline (one-to-many): a [`Captioner`] on images with their captions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptionPipeline;

impl Pipeline for CaptionPipeline {
    const TASK: &'static str = CAPTION_TASK;
    const ROLES: &'static [&'static str] = &["image", "caption"];
    type ModelConfig = CaptionerConfig;
    type TrainConfig = CaptionTrainConfig;
    /// `tokenizer.json` (the words of the training captions).
    type Artifacts = Tokenizer;
    type Data = CaptionData;
    type Model = Captioner;
    type Task = CaptionTask;
    type Report = CaptionTrainReport;

    fn recurrent(model: &CaptionerConfig) -> RecurrentConfig {
        model.recurrent()
    }

    fn paths(train: &mut CaptionTrainConfig) -> Vec<&mut String> {
        vec![&mut train.images, &mut train.captions]
    }

    fn check(_model: &CaptionerConfig, train: &CaptionTrainConfig) -> Result<()> {
        if train.batch == 0 || train.max_words == 0 {
            return Err(Error::InvalidSetting(
                "--batch and --max-words must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    fn prepare(
        model: &CaptionerConfig,
        train: &CaptionTrainConfig,
        saved: Option<Tokenizer>,
    ) -> Result<Prepared<Self>> {
        train::prepare(model, train, saved)
    }

    fn complete(model: &CaptionerConfig, tokenizer: &Tokenizer) -> Result<CaptionerConfig> {
        Ok(CaptionerConfig {
            vocab_size: tokenizer.vocab_size(),
            ..model.clone()
        })
    }

    fn build(model: &CaptionerConfig, vb: VarBuilder) -> candle_core::Result<Captioner> {
        Captioner::new(model, vb)
    }

    fn write_artifacts(tokenizer: &Tokenizer, dir: &Path) -> Result<()> {
        write_tokenizer(tokenizer, &dir.join("tokenizer.json"))
    }

    fn read_artifacts(dir: &Path, config: &ModelDir<Self>) -> Result<Tokenizer> {
        read_tokenizer(dir, "tokenizer.json", config.model.vocab_size)
    }

    fn task(
        model: Captioner,
        config: &ModelDir<Self>,
        tokenizer: &Tokenizer,
        data: CaptionData,
    ) -> Result<CaptionTask> {
        train::task(model, config, tokenizer, data)
    }

    fn report(run: Trained<'_, Self>) -> Result<CaptionTrainReport> {
        train::report(run)
    }
}

/// Trains a captioner into the model directory `out` (created if needed), the [`Pipeline`] way (see
/// [`crate::pipeline::train`]): `tokenizer.json` (words of the training captions), then `config.json`, then
/// the loop. `model.vocab_size` is set from the tokenizer; `model.encoder.image_size` decides the size
/// images are resized to.
///
/// Without `options.resume`, `out` must not hold a model yet. With it, settings, tokenizer and data come from
/// `out/`; of `model` and `config` only the run's length and policies apply ([`crate::LoopConfig::resume_with`]).
pub fn train_captioner(
    model: &CaptionerConfig,
    config: &CaptionTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<CaptionTrainReport> {
    crate::pipeline::train::<CaptionPipeline>(model, config, out, options)
}
