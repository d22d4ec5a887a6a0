//! The classification pipeline: train on labelled text ([`train_classifier`]), load a model directory
//! ([`load_classifier`]), measure accuracy, macro-F1 and the confusion matrix ([`ClassificationMetrics`]),
//! predict ([`LoadedClassifier::predict`]).
//!
//! A classifier's directory holds `config.json` (task `classify`), `tokenizer.json`, `labels.json`,
//! `model.safetensors`, `trainer/`, `metrics.csv` and `loss.svg`.

mod config;
mod dir;
mod metrics;
mod train;

use std::path::Path;

use candle_nn::VarBuilder;
use seqlab_cells::RecurrentConfig;
use seqlab_models::{Classifier, ClassifierConfig};

pub use config::ClassifyTrainConfig;
pub use dir::{
    evaluate, load_classifier, probabilities, read_config, read_labels, write_labels,
    ClassifierFiles, ClassifyDirConfig, ClassifyEvaluation, Encoded, LoadedClassifier,
};
pub use metrics::{ClassMetrics, ClassificationMetrics};
pub use train::{ClassifyData, ClassifyTask, ClassifyTrainReport, ValidRecord};

use crate::error::{Error, Result};
use crate::model_dir::{tokenizer_path, ModelDir};
use crate::pipeline::{Pipeline, Prepared, Trained};
use crate::trainer::RunOptions;

/// The task of a classifier's directory.
pub const TASK: &str = "classify";

/// The classification pipeline (many-to-one): a [`Classifier`] on labelled texts, batched by length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassifyPipeline;

impl Pipeline for ClassifyPipeline {
    const TASK: &'static str = TASK;
    const ROLES: &'static [&'static str] = &["text", "label"];
    const UNIT: &'static str = "examples";
    type ModelConfig = ClassifierConfig;
    type TrainConfig = ClassifyTrainConfig;
    /// `tokenizer.json` and `labels.json`.
    type Artifacts = ClassifierFiles;
    type Data = ClassifyData;
    type Model = Classifier;
    type Task = ClassifyTask;
    type Report = ClassifyTrainReport;

    fn recurrent(model: &ClassifierConfig) -> RecurrentConfig {
        model.recurrent()
    }

    fn paths(train: &mut ClassifyTrainConfig) -> Vec<&mut String> {
        let ClassifyTrainConfig {
            data,
            valid,
            labels,
            tokenizer,
            ..
        } = train;
        std::iter::once(data)
            .chain(valid.as_mut())
            .chain(labels.as_mut())
            .chain(tokenizer_path(tokenizer))
            .collect()
    }

    fn check(_model: &ClassifierConfig, train: &ClassifyTrainConfig) -> Result<()> {
        if train.batch == 0 {
            return Err(Error::InvalidSetting(
                "--batch must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    fn prepare(
        _model: &ClassifierConfig,
        train: &ClassifyTrainConfig,
        saved: Option<ClassifierFiles>,
    ) -> Result<Prepared<Self>> {
        train::prepare(train, saved)
    }

    fn complete(model: &ClassifierConfig, files: &ClassifierFiles) -> Result<ClassifierConfig> {
        Ok(ClassifierConfig {
            vocab_size: files.tokenizer.vocab_size(),
            num_classes: files.labels.len(),
            ..model.clone()
        })
    }

    fn build(model: &ClassifierConfig, vb: VarBuilder) -> candle_core::Result<Classifier> {
        Classifier::new(model, vb)
    }

    fn write_artifacts(files: &ClassifierFiles, dir: &Path) -> Result<()> {
        dir::write_files(files, dir)
    }

    fn read_artifacts(dir: &Path, config: &ModelDir<Self>) -> Result<ClassifierFiles> {
        dir::read_files(dir, config)
    }

    fn task(
        model: Classifier,
        config: &ModelDir<Self>,
        files: &ClassifierFiles,
        data: ClassifyData,
    ) -> Result<ClassifyTask> {
        train::task(model, config, files, data)
    }

    fn report(run: Trained<'_, Self>) -> Result<ClassifyTrainReport> {
        train::report(run)
    }
}

/// Trains a classifier into the model directory `out` (created if needed), the [`Pipeline`] way (see
/// [`crate::pipeline::train`]): `tokenizer.json` and `labels.json`, then `config.json`, then the loop with
/// a validation pass each epoch (unless `eval_every` says otherwise); `model.safetensors` keeps the weights
/// of the best validation loss. `model.vocab_size` and `model.num_classes` are set from the tokenizer and
/// the labels.
///
/// Without `options.resume`, `out` must not hold a model yet ([`Error::OutputExists`]). With it, the
/// settings, tokenizer, labels and data come from `out`; of `model` and `config` only the run's length and
/// policies apply ([`crate::LoopConfig::resume_with`]).
pub fn train_classifier(
    model: &ClassifierConfig,
    config: &ClassifyTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<ClassifyTrainReport> {
    crate::pipeline::train::<ClassifyPipeline>(model, config, out, options)
}
