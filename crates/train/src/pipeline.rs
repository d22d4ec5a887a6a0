//! One way in for every pipeline: the [`Pipeline`] trait, and [`train`] and [`load`] written once for all.
//!
//! A pipeline says what is particular to it — its model and training settings, how it reads and encodes its
//! data, what it keeps beside the weights (tokenizers, labels), how it builds its model and its [`Task`] for
//! the loop, and what it reports. Everything about the model directory is decided here, once: the
//! output-exists and resume checks, the one resume override policy ([`crate::LoopConfig::resume_with`]), local
//! paths made absolute, the seeded `VarBuilder`, the model built before anything is written (bad settings
//! leave no directory behind), the write order (artifacts first, `config.json` last: it marks the directory
//! as holding a model, so everything it refers to exists first), the parameter count read from the
//! `VarMap`, and loading it all back.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use seqlab_cells::RecurrentConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::{load_tensors, save_tensors};
use crate::error::{one_line, Error, Result};
use crate::init::seeded_var_builder;
use crate::lock::DirLock;
use crate::model_dir::{absolute_source, count_parameters, read_model_dir, write_json, ModelDir};
use crate::trainer::{HasLoop, RunOptions, Task, TrainSummary};

/// A pipeline: a model, the data it trains on, and the files of its model directory.
///
/// Implemented by [`crate::LmPipeline`], [`crate::ClassifyPipeline`], [`crate::TranslatePipeline`],
/// [`crate::CaptionPipeline`] and, with the cargo feature `images`, `ImagesPipeline`; [`train`] and [`load`]
/// do the rest. `docs/extending.md` walks through adding
/// one.
pub trait Pipeline: Sized + 'static {
    /// The task a model directory of this pipeline states in `config.json` (`lm`, `classify`, ...).
    const TASK: &'static str;
    /// What one training example counts as in throughput figures (`tokens`, `examples`, ...).
    const UNIT: &'static str = "tokens";
    /// The column roles it reads from a table (see [`seqlab_data::Columns`]): what a catalogue entry
    /// for its command must name.
    const ROLES: &'static [&'static str];

    /// The model's shape: `"model"` in `config.json`.
    type ModelConfig: Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned + Default;
    /// How it is trained: `"train"` in `config.json`; it holds the loop's [`crate::LoopConfig`].
    type TrainConfig: Clone
        + std::fmt::Debug
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Default
        + HasLoop;
    /// The files beside `config.json` and the weights (tokenizers, labels), in memory.
    type Artifacts;
    /// The encoded data a run trains and validates on.
    type Data;
    /// The model.
    type Model;
    /// The model on its data, for the loop.
    type Task: Task;
    /// What a run reports beside the loop's [`TrainSummary`].
    type Report;

    /// The model's recurrent stack (its cell, width, layers and dropout): what the command line's stack
    /// flags set, and what a model directory's description shows.
    fn recurrent(model: &Self::ModelConfig) -> RecurrentConfig;

    /// The local paths among the training settings (data files, folders, a tokenizer file), made absolute
    /// when a run starts so that `--resume` works from any directory. Hub addresses are left as they are.
    fn paths(train: &mut Self::TrainConfig) -> Vec<&mut String>;

    /// Checks the settings of a new run before any data is read. The default checks nothing beyond the
    /// loop's settings, which [`train`] checks itself.
    fn check(model: &Self::ModelConfig, train: &Self::TrainConfig) -> Result<()> {
        let _ = (model, train);
        Ok(())
    }

    /// Reads and encodes the data of a run for a model of shape `model` (the settings given for a new run,
    /// before [`Pipeline::complete`]; the saved ones on resume). `saved` holds the artifacts of the
    /// directory being resumed (tokenizers and labels are then read, not built again); without it, the
    /// artifacts are built from the training data.
    fn prepare(
        model: &Self::ModelConfig,
        train: &Self::TrainConfig,
        saved: Option<Self::Artifacts>,
    ) -> Result<Prepared<Self>>;

    /// The model config of a new run completed from the artifacts: vocabulary sizes, classes.
    fn complete(
        model: &Self::ModelConfig,
        artifacts: &Self::Artifacts,
    ) -> Result<Self::ModelConfig>;

    /// Builds the model from `vb`: fresh weights from a `VarMap`, or a model directory's.
    fn build(model: &Self::ModelConfig, vb: VarBuilder) -> candle_core::Result<Self::Model>;

    /// Writes the artifacts into `dir` (each file atomically).
    fn write_artifacts(artifacts: &Self::Artifacts, dir: &Path) -> Result<()>;

    /// Reads the artifacts of `dir`, checking them against its `config.json`.
    fn read_artifacts(dir: &Path, config: &ModelDir<Self>) -> Result<Self::Artifacts>;

    /// The model on its data, for the loop. Errors that the data and settings cause (a text shorter than a
    /// batch) come here, before anything is written.
    fn task(
        model: Self::Model,
        config: &ModelDir<Self>,
        artifacts: &Self::Artifacts,
        data: Self::Data,
    ) -> Result<Self::Task>;

    /// What the run reports, from its end.
    fn report(run: Trained<'_, Self>) -> Result<Self::Report>;
}

/// What [`Pipeline::prepare`] gives: the artifacts, the encoded data, and what identifies and describes
/// them.
#[derive(Debug)]
pub struct Prepared<P: Pipeline> {
    /// Tokenizers, labels.
    pub artifacts: P::Artifacts,
    /// The encoded data.
    pub data: P::Data,
    /// Identifies the encoded data: a resumed run must bring the same.
    pub fingerprint: String,
    /// The data, in a few words, for the line a run prints when it starts (`data: ...; model: N
    /// parameters`).
    pub description: String,
}

/// A finished run, for [`Pipeline::report`].
#[derive(Debug)]
pub struct Trained<'a, P: Pipeline> {
    /// The loop's summary.
    pub summary: TrainSummary,
    /// Trainable parameters.
    pub parameters: usize,
    /// The model directory.
    pub dir: &'a Path,
    /// Its `config.json`.
    pub config: ModelDir<P>,
    /// Its artifacts.
    pub artifacts: P::Artifacts,
    /// The task as the loop left it.
    pub task: P::Task,
}

/// A model directory loaded: its `config.json`, its artifacts and the model with the weights of
/// `model.safetensors` (the best checkpoint).
#[derive(Debug)]
pub struct Loaded<P: Pipeline> {
    /// `config.json`.
    pub config: ModelDir<P>,
    /// Tokenizers, labels.
    pub artifacts: P::Artifacts,
    /// The model.
    pub model: P::Model,
}

/// Trains a model of pipeline `P` into the model directory `out` (created if needed).
///
/// Without `options.resume`, `out` must not hold a model yet ([`Error::OutputExists`]); the model config is
/// completed from the data (vocabulary sizes, classes). With it, the settings, artifacts and data come from
/// `out`; of `model` and `config` only what [`crate::LoopConfig::resume_with`] names applies (the run's length,
/// patience, skipping non-finite batches). A loop setting of `eval_every` or `checkpoint_every` of 0 means
/// once per epoch, and is saved resolved.
pub fn train<P: Pipeline>(
    model: &P::ModelConfig,
    config: &P::TrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<P::Report> {
    // One writer per directory, from before the first check to the end of the run.
    let mut lock = DirLock::acquire(out)?;
    let (mut dir_config, prepared) = if options.resume {
        let mut saved = read_model_dir::<P>(out)?;
        saved
            .train
            .loop_config_mut()
            .resume_with(config.loop_config());
        let artifacts = P::read_artifacts(out, &saved)?;
        let prepared = P::prepare(&saved.model, &saved.train, Some(artifacts))?;
        (saved, prepared)
    } else {
        if out.join("config.json").exists() {
            return Err(Error::OutputExists {
                dir: out.to_path_buf(),
            });
        }
        let mut config = config.clone();
        for path in P::paths(&mut config) {
            *path = absolute_source(path);
        }
        config.loop_config().validate()?;
        P::check(model, &config)?;
        let prepared = P::prepare(model, &config, None)?;
        let model = P::complete(model, &prepared.artifacts)?;
        (ModelDir::new(model, config), prepared)
    };
    let Prepared {
        artifacts,
        data,
        fingerprint,
        description,
    } = prepared;

    // The model and its task before anything is written, so that bad settings leave no directory behind.
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let seed = dir_config.train.loop_config().seed;
    let model = P::build(
        &dir_config.model,
        seeded_var_builder(&varmap, seed, &device),
    )
    .map_err(|e| Error::InvalidSetting(one_line(e)))?;
    let parameters = count_parameters(&varmap);
    let task = P::task(model, &dir_config, &artifacts, data)?;
    let per_epoch = task.batches_per_epoch().max(1);
    let optim = dir_config.train.loop_config_mut();
    for every in [&mut optim.eval_every, &mut optim.checkpoint_every] {
        if *every == 0 {
            *every = per_epoch;
        }
    }
    optim.validate()?;

    lock.keep();
    P::write_artifacts(&artifacts, out)?;
    if !options.resume {
        // The initial weights, so that a directory with a config.json always holds a whole model.
        save_tensors(&out.join("model.safetensors"), &tensors_of(&varmap))?;
    }
    write_json(&out.join("config.json"), &dir_config)?;

    if options.progress {
        eprintln!("data: {description}; model: {parameters} parameters");
    }
    let mut task = task;
    let summary = crate::trainer::train(
        &mut task,
        &varmap,
        dir_config.train.loop_config(),
        out,
        &fingerprint,
        options,
    )?;
    // The lock is held until the report is made (it may read the directory back).
    P::report(Trained {
        summary,
        parameters,
        dir: out,
        config: dir_config,
        artifacts,
        task,
    })
}

/// Loads the model directory `dir` of pipeline `P`: `config.json` (format and task checked), the artifacts
/// (checked against it) and the weights of `model.safetensors`. Errors name the file and, for weights, the
/// tensor.
pub fn load<P: Pipeline>(dir: &Path, device: &Device) -> Result<Loaded<P>> {
    let config = read_model_dir::<P>(dir)?;
    let artifacts = P::read_artifacts(dir, &config)?;
    let weights_path = dir.join("model.safetensors");
    let weights = load_tensors(&weights_path, device)?;
    let vb = VarBuilder::from_tensors(weights, DType::F32, device);
    let model = P::build(&config.model, vb).map_err(|e| Error::Weights {
        path: weights_path,
        reason: one_line(e),
    })?;
    Ok(Loaded {
        config,
        artifacts,
        model,
    })
}

/// The current values of the variables of `varmap`, by name.
fn tensors_of(varmap: &VarMap) -> std::collections::HashMap<String, candle_core::Tensor> {
    varmap
        .data()
        .lock()
        .map(|vars| {
            vars.iter()
                .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
                .collect()
        })
        .unwrap_or_default()
}
