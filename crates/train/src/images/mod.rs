//! The sequential image pipeline (cargo feature `images`): the recurrent-network papers' many-to-one
//! benchmarks — an image read row by row, pixel by pixel, or pixel by pixel in a fixed random order —
//! trained on MNIST-format data read and batched by candle-datasets ([`data`]).
//!
//! A model directory holds `config.json` (task `images`), `labels.json`, `model.safetensors`, `trainer/`,
//! `metrics.csv` and `loss.svg`. The data source (a directory of IDX files, or `hub:mnist`,
//! `hub:fashion-mnist`) is saved in `config.json`; its training images train, the last `valid` of them
//! validate, and its test images are what `seqlab images eval` measures.

pub mod data;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use seqlab_cells::RecurrentConfig;
use seqlab_data::bucket_batches;
use seqlab_models::{ImageClassifier, ImageClassifierConfig, Mode};
use serde::{Deserialize, Serialize};

use crate::classify::{read_labels, write_labels, ClassificationMetrics};
use crate::error::{Error, Result};
use crate::init::fnv1a;
use crate::model_dir::ModelDir;
use crate::pipeline::{load, Loaded, Pipeline, Prepared, Trained};
use crate::trainer::{has_loop, LoopConfig, Task, TrainSummary};
use data::{ImageSet, Splits};

/// The task of a sequential image classifier's directory.
pub const TASK: &str = "images";

/// How a sequential image classifier is trained: plain data, saved in `config.json` under `"train"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagesTrainConfig {
    /// A directory of MNIST-format IDX files (plain or gzipped), or `hub:mnist`, `hub:fashion-mnist`.
    pub data: String,
    /// The last this many training images are held out for validation (in file order). 5000: the split
    /// the MNIST papers use (55000 train, 5000 validation). 0 means no validation.
    pub valid: usize,
    /// A file of class names, one per line (class k is line k); `None` names the classes by their numbers.
    pub labels: Option<String>,
    /// Images per batch. 128: what the recurrent MNIST papers train with.
    pub batch: usize,
    /// The loop's settings: `eval_every` and `checkpoint_every` of 0 mean once per epoch (the default).
    #[serde(flatten)]
    pub optim: LoopConfig,
}

has_loop!(ImagesTrainConfig);

impl Default for ImagesTrainConfig {
    fn default() -> Self {
        Self {
            data: String::new(),
            valid: 5000,
            labels: None,
            batch: 128,
            optim: LoopConfig {
                eval_every: 0,
                checkpoint_every: 0,
                epochs: Some(10),
                ..LoopConfig::default()
            },
        }
    }
}

/// The sequential image pipeline: an [`ImageClassifier`] on MNIST-format images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImagesPipeline;

/// A sequential image classifier's `config.json`.
pub type ImagesDirConfig = ModelDir<ImagesPipeline>;

/// What a model directory holds beside `config.json` and the weights: `labels.json`; and the size of the
/// images, which completes a new run's model config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesFiles {
    /// `labels.json`: class `i` is `labels[i]`.
    pub labels: Vec<String>,
    /// Rows of every image.
    pub height: usize,
    /// Columns of every image.
    pub width: usize,
}

/// The training and validation images of a run.
#[derive(Debug)]
pub struct ImagesData {
    train: ImageSet,
    valid: Option<ImageSet>,
    height: usize,
    width: usize,
}

impl Pipeline for ImagesPipeline {
    const TASK: &'static str = TASK;
    const UNIT: &'static str = "images";
    const ROLES: &'static [&'static str] = &[];
    type ModelConfig = ImageClassifierConfig;
    type TrainConfig = ImagesTrainConfig;
    /// `labels.json`, and the image size the data has.
    type Artifacts = ImagesFiles;
    type Data = ImagesData;
    type Model = ImageClassifier;
    type Task = ImagesTask;
    type Report = ImagesTrainReport;

    fn recurrent(model: &ImageClassifierConfig) -> RecurrentConfig {
        model.recurrent()
    }

    fn paths(train: &mut ImagesTrainConfig) -> Vec<&mut String> {
        let ImagesTrainConfig { data, labels, .. } = train;
        let data = (!data.starts_with(data::HUB_PREFIX)).then_some(data);
        data.into_iter().chain(labels.as_mut()).collect()
    }

    fn check(_model: &ImageClassifierConfig, train: &ImagesTrainConfig) -> Result<()> {
        if train.batch == 0 {
            return Err(Error::InvalidSetting(
                "--batch must be at least 1".to_string(),
            ));
        }
        if train.data.is_empty() {
            return Err(Error::InvalidSetting(
                "--data is required: a directory of MNIST-format IDX files, or hub:mnist, hub:fashion-mnist"
                    .to_string(),
            ));
        }
        Ok(())
    }

    fn prepare(
        _model: &ImageClassifierConfig,
        train: &ImagesTrainConfig,
        saved: Option<ImagesFiles>,
    ) -> Result<Prepared<Self>> {
        let Splits {
            train: images,
            height,
            width,
            classes,
            ..
        } = data::load(&train.data)?;
        let labels = match saved {
            Some(files) => files.labels,
            None => match &train.labels {
                Some(path) => seqlab_data::read_label_names(Path::new(path))?,
                None => (0..classes).map(|c| c.to_string()).collect(),
            },
        };
        if labels.len() < classes.max(2) {
            return Err(Error::InvalidSetting(format!(
                "{} has labels up to {}, but {} class names are given{}",
                train.data,
                classes.saturating_sub(1),
                labels.len(),
                if classes < 2 {
                    " (a classifier needs at least 2 classes)"
                } else {
                    ""
                }
            )));
        }
        let n = images.len();
        if train.valid >= n {
            return Err(Error::InvalidSetting(format!(
                "{} holds {n} training images: --valid {} leaves none to train on",
                train.data, train.valid
            )));
        }
        let (train_set, valid) = if train.valid == 0 {
            (images, None)
        } else {
            let kept = n - train.valid;
            (
                images.slice(0, kept)?,
                Some(images.slice(kept, train.valid)?),
            )
        };
        let mut bytes = Vec::new();
        for set in std::iter::once(&train_set).chain(valid.as_ref()) {
            let pixels: Vec<f32> = set.images.flatten_all()?.to_vec1()?;
            bytes.extend(pixels.iter().flat_map(|p| p.to_le_bytes()));
            let labels: Vec<u32> = set.labels.to_vec1()?;
            bytes.extend(labels.iter().flat_map(|l| l.to_le_bytes()));
            bytes.push(0xff);
        }
        let description = format!(
            "{} ({} training images, {} validation images of {height}×{width}, {} classes)",
            train.data,
            train_set.len(),
            valid.as_ref().map_or(0, ImageSet::len),
            labels.len()
        );
        Ok(Prepared {
            fingerprint: format!("{:016x}-{}", fnv1a(&bytes), train_set.len()),
            artifacts: ImagesFiles {
                labels,
                height,
                width,
            },
            data: ImagesData {
                train: train_set,
                valid,
                height,
                width,
            },
            description,
        })
    }

    fn complete(
        model: &ImageClassifierConfig,
        files: &ImagesFiles,
    ) -> Result<ImageClassifierConfig> {
        Ok(ImageClassifierConfig {
            num_classes: files.labels.len(),
            height: files.height,
            width: files.width,
            ..model.clone()
        })
    }

    fn build(
        model: &ImageClassifierConfig,
        vb: VarBuilder,
    ) -> candle_core::Result<ImageClassifier> {
        ImageClassifier::new(model, vb)
    }

    fn write_artifacts(files: &ImagesFiles, dir: &Path) -> Result<()> {
        write_labels(dir, &files.labels)
    }

    fn read_artifacts(dir: &Path, config: &ModelDir<Self>) -> Result<ImagesFiles> {
        let labels = read_labels(dir)?;
        if labels.len() != config.model.num_classes {
            return Err(Error::InvalidSetting(format!(
                "{} names {} classes but the model has {} (config.json)",
                dir.join("labels.json").display(),
                labels.len(),
                config.model.num_classes
            )));
        }
        Ok(ImagesFiles {
            labels,
            height: config.model.height,
            width: config.model.width,
        })
    }

    fn task(
        model: ImageClassifier,
        config: &ModelDir<Self>,
        files: &ImagesFiles,
        data: ImagesData,
    ) -> Result<ImagesTask> {
        check_size(&config.model, data.height, data.width, &config.train.data)?;
        Ok(ImagesTask {
            model,
            train: data.train,
            valid: data.valid,
            labels: files.labels.clone(),
            batch: config.train.batch,
            seed: config.train.optim.seed,
            batches: Vec::new(),
            epoch: 0,
            last_step: 0,
            history: Vec::new(),
        })
    }

    fn report(run: Trained<'_, Self>) -> Result<ImagesTrainReport> {
        let task = run.task;
        let best = match &task.valid {
            Some(valid) => {
                let loaded = load_images_model(run.dir, &Device::Cpu)?;
                Some(evaluate(&loaded.model, valid, &task.labels, task.batch)?)
            }
            None => None,
        };
        Ok(ImagesTrainReport {
            summary: run.summary,
            labels: task.labels,
            train_images: task.train.len(),
            valid_images: task.valid.as_ref().map_or(0, ImageSet::len),
            parameters: run.parameters,
            history: task.history,
            best,
        })
    }
}

/// An error unless the model reads images of `height`×`width`, the size of `source`'s.
fn check_size(
    model: &ImageClassifierConfig,
    height: usize,
    width: usize,
    source: &str,
) -> Result<()> {
    if (model.height, model.width) != (height, width) {
        return Err(Error::InvalidSetting(format!(
            "{source} holds images of {height}×{width}; the model reads {}×{}",
            model.height, model.width
        )));
    }
    Ok(())
}

/// The model on its images, for the loop.
pub struct ImagesTask {
    model: ImageClassifier,
    train: ImageSet,
    valid: Option<ImageSet>,
    labels: Vec<String>,
    batch: usize,
    seed: u64,
    batches: Vec<Vec<usize>>,
    epoch: usize,
    last_step: usize,
    history: Vec<ValidRecord>,
}

impl std::fmt::Debug for ImagesTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagesTask")
            .field("train_images", &self.train.len())
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Task for ImagesTask {
    fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.batch)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<()> {
        // Every image has the same length: the shared batching is a seeded shuffle cut into batches.
        self.batches = bucket_batches(&vec![1; self.train.len()], self.batch, self.seed, epoch)?;
        self.epoch = epoch;
        Ok(())
    }

    fn train_batch(&mut self, index: usize, seed: u64) -> Result<(Tensor, usize)> {
        let indices = crate::trainer::epoch_batch(&self.batches, index)?;
        let (images, labels) = self.train.batch(indices)?;
        let logits = self.model.forward(&images, Mode::Train { seed })?;
        let loss = seqlab_cells::cross_entropy(&logits, &labels, None)?;
        self.last_step = self.epoch * self.batches_per_epoch() + index + 1;
        Ok((loss, indices.len()))
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        let Some(valid) = &self.valid else {
            return Ok(None);
        };
        let eval = evaluate(&self.model, valid, &self.labels, self.batch)?;
        self.history.push(ValidRecord {
            step: self.last_step,
            loss: eval.loss,
            accuracy: eval.metrics.accuracy,
        });
        Ok(Some(eval.loss))
    }
}

/// One validation pass during training.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRecord {
    /// The step it followed.
    pub step: usize,
    /// Mean cross-entropy per image.
    pub loss: f64,
    /// Accuracy.
    pub accuracy: f64,
}

/// What a training run reports beside the loop's summary.
#[derive(Debug, Clone)]
pub struct ImagesTrainReport {
    /// The loop's summary.
    pub summary: TrainSummary,
    /// The class names.
    pub labels: Vec<String>,
    /// Training images.
    pub train_images: usize,
    /// Validation images (0 without validation).
    pub valid_images: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// The validation passes of this invocation, in order.
    pub history: Vec<ValidRecord>,
    /// The saved model (`model.safetensors`, the best validation loss) measured on the validation images.
    pub best: Option<ImagesEvaluation>,
}

/// A classifier's loss and metrics on a set of images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagesEvaluation {
    /// Mean cross-entropy per image, in nats.
    pub loss: f64,
    /// Accuracy, macro-F1, per-class precision and recall, confusion matrix.
    pub metrics: ClassificationMetrics,
}

/// The loss and metrics of `model` on `set` over the classes `labels`, `batch` images at a time.
pub fn evaluate(
    model: &ImageClassifier,
    set: &ImageSet,
    labels: &[String],
    batch: usize,
) -> Result<ImagesEvaluation> {
    let mut loss_sum = 0.0f64;
    let mut truth = Vec::with_capacity(set.len());
    let mut predicted = Vec::with_capacity(set.len());
    for b in set.batches(batch) {
        let (images, targets) = b?;
        let classes: Vec<u32> = targets.to_vec1()?;
        if let Some(&bad) = classes.iter().find(|&&t| t as usize >= labels.len()) {
            return Err(Error::InvalidSetting(format!(
                "an image of class {bad}, but the model knows {} classes",
                labels.len()
            )));
        }
        let logits = model.forward(&images, Mode::Eval)?;
        let loss = seqlab_cells::cross_entropy(&logits, &targets, None)?.to_scalar::<f32>()?;
        loss_sum += loss as f64 * images.dim(0)? as f64;
        predicted.extend(
            logits
                .argmax(1)?
                .to_vec1::<u32>()?
                .into_iter()
                .map(|p| p as usize),
        );
        truth.extend(classes.into_iter().map(|t| t as usize));
    }
    Ok(ImagesEvaluation {
        loss: loss_sum / set.len().max(1) as f64,
        metrics: ClassificationMetrics::new(labels, &truth, &predicted),
    })
}

/// A sequential image classifier loaded from its directory.
#[derive(Debug)]
pub struct LoadedImages {
    /// Its `config.json`.
    pub config: ImagesDirConfig,
    /// Its `labels.json`: class `i` is `labels[i]`.
    pub labels: Vec<String>,
    /// The weights of `model.safetensors`.
    pub model: ImageClassifier,
}

/// Loads a sequential image classifier's directory. Errors name the file and, for weights, the tensor; a
/// directory of another task is [`Error::WrongTask`].
pub fn load_images_model(dir: &Path, device: &Device) -> Result<LoadedImages> {
    let Loaded {
        config,
        artifacts,
        model,
    } = load::<ImagesPipeline>(dir, device)?;
    Ok(LoadedImages {
        config,
        labels: artifacts.labels,
        model,
    })
}

impl LoadedImages {
    /// The loss and metrics on the test images of `source` (a directory of IDX files or a hub set; `None`:
    /// the training run's source).
    pub fn evaluate_test(&self, source: Option<&str>) -> Result<ImagesEvaluation> {
        let source = source.unwrap_or(&self.config.train.data);
        let splits = data::load(source)?;
        check_size(&self.config.model, splits.height, splits.width, source)?;
        if splits.test.is_empty() {
            return Err(Error::InvalidSetting(format!(
                "{source} holds no test image"
            )));
        }
        evaluate(
            &self.model,
            &splits.test,
            &self.labels,
            self.config.train.batch,
        )
    }

    /// The class probabilities of each image file (PNG or JPEG), in order: one row of `labels.len()` per
    /// image.
    pub fn predict_files(&self, paths: &[PathBuf]) -> Result<Vec<Vec<f32>>> {
        let images =
            data::read_image_files(paths, self.config.model.height, self.config.model.width)?;
        self.predict(&images)
    }

    /// The class probabilities of images (n, height · width) in [0, 1].
    pub fn predict(&self, images: &Tensor) -> Result<Vec<Vec<f32>>> {
        let mut rows = Vec::with_capacity(images.dim(0)?);
        let n = images.dim(0)?;
        let batch = self.config.train.batch.max(1);
        for start in (0..n).step_by(batch) {
            let part = images.narrow(0, start, batch.min(n - start))?;
            rows.extend(self.model.probabilities(&part)?.to_vec2::<f32>()?);
        }
        Ok(rows)
    }

    /// The images `start..start + len` of the test set of the training run's source, for prediction.
    pub fn test_images(&self, start: usize, len: usize) -> Result<ImageSet> {
        let splits = data::load(&self.config.train.data)?;
        if start + len > splits.test.len() {
            return Err(Error::InvalidSetting(format!(
                "{} holds {} test images; images {start}..{} do not exist",
                self.config.train.data,
                splits.test.len(),
                start + len
            )));
        }
        splits.test.slice(start, len)
    }
}
