//! Training a classifier: the labelled data, the tokenizer and labels, the loop's task, and what a run
//! reports.

use std::path::Path;

use candle_core::{Device, Tensor};
use seqlab_data::{
    assign_labels, bucket_batches, infer_labels, read_label_names, Example, LabelKind, LabelledRow,
    PaddedBatch,
};
use seqlab_models::{Classifier, Mode};
use seqlab_tokenize::{Tokenizer, VocabOptions};

use super::config::ClassifyTrainConfig;
use super::dir::{
    evaluate, load_classifier, read_rows, ClassifierFiles, ClassifyEvaluation, Encoded,
};
use super::ClassifyPipeline;
use crate::error::{Error, Result};
use crate::init::fnv1a;
use crate::model_dir::ModelDir;
use crate::pipeline::{Prepared, Trained};
use crate::trainer::{Task, TrainSummary};

/// One validation pass during training.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRecord {
    /// The step it followed.
    pub step: usize,
    /// Mean cross-entropy per example.
    pub loss: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// Macro-F1.
    pub macro_f1: f64,
}

/// What [`super::train_classifier`] reports beside the loop's summary.
#[derive(Debug, Clone)]
pub struct ClassifyTrainReport {
    /// The loop's summary.
    pub summary: TrainSummary,
    /// The class names.
    pub labels: Vec<String>,
    /// Training examples.
    pub train_examples: usize,
    /// Validation examples (0 without validation).
    pub valid_examples: usize,
    /// The tokenizer's vocabulary size.
    pub vocab_size: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// The validation passes of this invocation, in order.
    pub history: Vec<ValidRecord>,
    /// The saved model (`model.safetensors`, the best validation loss) measured on the validation data.
    pub best: Option<ClassifyEvaluation>,
}

/// The classifier as a [`Task`] of the training loop.
pub struct ClassifyTask {
    model: Classifier,
    train: Encoded,
    valid: Option<Encoded>,
    labels: Vec<String>,
    batch: usize,
    seed: u64,
    pad: u32,
    class_weights: Option<Tensor>,
    batches: Vec<Vec<usize>>,
    epoch: usize,
    last_step: usize,
    history: Vec<ValidRecord>,
}

impl std::fmt::Debug for ClassifyTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassifyTask")
            .field("train_examples", &self.train.sequences.len())
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Task for ClassifyTask {
    fn batches_per_epoch(&self) -> usize {
        self.train.sequences.len().div_ceil(self.batch)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<()> {
        let lengths: Vec<usize> = self.train.sequences.iter().map(Vec::len).collect();
        self.batches = bucket_batches(&lengths, self.batch, self.seed, epoch)?;
        self.epoch = epoch;
        Ok(())
    }

    fn train_batch(&mut self, index: usize, seed: u64) -> Result<(Tensor, usize)> {
        let indices = crate::trainer::epoch_batch(&self.batches, index)?;
        let batch =
            PaddedBatch::gather(&self.train.sequences, &self.train.labels, indices, self.pad)?;
        let (ids, targets) = batch.tensors(&Device::Cpu)?;
        let logits = self
            .model
            .forward(&ids, Some(&batch.lengths), Mode::Train { seed })?;
        let loss = match &self.class_weights {
            Some(weights) => weighted_cross_entropy(&logits, &targets, weights)?,
            None => seqlab_cells::cross_entropy(&logits, &targets, None)?,
        };
        self.last_step = self.epoch * self.batches_per_epoch() + index + 1;
        Ok((loss, batch.batch))
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
            macro_f1: eval.metrics.macro_f1,
        });
        Ok(Some(eval.loss))
    }
}

/// `Σ w[y_i]·(−log p_i(y_i)) / Σ w[y_i]`: PyTorch's `cross_entropy(logits, targets, weight=weights)`.
/// `logits` (n, classes), `targets` (n,) u32, `weights` (classes,).
fn weighted_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
) -> candle_core::Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
    let picked = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let w = weights.index_select(targets, 0)?;
    (picked * &w)?.sum_all()?.neg()? / w.sum_all()?.to_scalar::<f32>()? as f64
}

/// Balanced class weights `n / (classes · count_c)` (1 for a class without examples).
fn balanced_weights(labels: &[u32], classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                1.0
            } else {
                labels.len() as f32 / (classes * c) as f32
            }
        })
        .collect()
}

/// The encoded training and validation examples of a run.
#[derive(Debug)]
pub struct ClassifyData {
    train: Encoded,
    valid: Option<Encoded>,
}

/// Holds out `fraction` of each class's examples (at least one of a class with two or more, chosen from
/// `seed`); returns (train, valid).
fn split_per_class(
    examples: Vec<Example>,
    classes: usize,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::Data(seqlab_data::Error::InvalidFraction(fraction)));
    }
    if fraction == 0.0 {
        return Ok((examples, Vec::new()));
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, e) in examples.iter().enumerate() {
        by_class[e.label].push(i);
    }
    let mut held = vec![false; examples.len()];
    for (class, members) in by_class.iter_mut().enumerate() {
        // A seeded order of the class's examples: sort by a hash of (seed, class, index).
        members.sort_by_key(|&i| {
            fnv1a(
                &[
                    seed.to_le_bytes(),
                    (class as u64).to_le_bytes(),
                    (i as u64).to_le_bytes(),
                ]
                .concat(),
            )
        });
        let n = members.len();
        let take = if n >= 2 {
            ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
        } else {
            0
        };
        for &i in &members[..take] {
            held[i] = true;
        }
    }
    let (valid, train): (Vec<_>, Vec<_>) =
        examples.into_iter().zip(held).partition(|(_, held)| *held);
    Ok((
        train.into_iter().map(|(e, _)| e).collect(),
        valid.into_iter().map(|(e, _)| e).collect(),
    ))
}

/// The labelled rows of one data source, how their labels are written, and its name for errors: the one
/// place a training run reads labelled data (a hub split or a parquet file is read as a table, by the
/// configured columns).
fn load_rows(
    config: &ClassifyTrainConfig,
    source: &str,
) -> Result<(Vec<LabelledRow>, LabelKind, String)> {
    let path = Path::new(source);
    let format = config.format_of(path)?;
    let rows = read_rows(path, format, config.text_field()?, &config.columns())?;
    Ok((rows, format.label_kind(), path.display().to_string()))
}

pub(super) fn prepare(
    config: &ClassifyTrainConfig,
    saved: Option<ClassifierFiles>,
) -> Result<Prepared<ClassifyPipeline>> {
    let (rows, train_kind, train_file) = load_rows(config, &config.data)?;
    let (saved_tokenizer, labels) = match saved {
        Some(files) => (Some(files.tokenizer), files.labels),
        None => {
            let labels = match &config.labels {
                Some(path) => read_label_names(Path::new(path))?,
                None => infer_labels(&rows, train_kind),
            };
            (None, labels)
        }
    };
    if labels.len() < 2 {
        return Err(Error::InvalidSetting(format!(
            "{train_file} has {} class(es); a classifier needs at least 2",
            labels.len()
        )));
    }
    let train = assign_labels(rows, train_kind, &labels, &train_file)?.examples;
    let (train, valid) = match &config.valid {
        Some(source) => {
            let (rows, kind, file) = load_rows(config, source)?;
            let valid = assign_labels(rows, kind, &labels, &file)?.examples;
            (train, valid)
        }
        None => split_per_class(
            train,
            labels.len(),
            config.valid_fraction,
            config.optim.seed,
        )?,
    };
    let tokenizer = match saved_tokenizer {
        Some(tokenizer) => tokenizer,
        None => {
            let texts: Vec<&str> = train.iter().map(|e| e.text.as_str()).collect();
            Tokenizer::build_named(
                &config.tokenizer,
                &texts,
                &VocabOptions {
                    lowercase: config.lowercase,
                    min_freq: config.min_freq,
                    max_size: config.max_vocab,
                },
            )?
        }
    };
    let train = Encoded::new(&tokenizer, &train, config.max_len, &train_file)?;
    let valid_file = config.valid.as_deref().unwrap_or(&config.data);
    let valid = if valid.is_empty() {
        None
    } else {
        Some(Encoded::new(
            &tokenizer,
            &valid,
            config.max_len,
            valid_file,
        )?)
    };
    let mut bytes = Vec::new();
    for part in std::iter::once(&train).chain(valid.as_ref()) {
        for (sequence, label) in part.sequences.iter().zip(&part.labels) {
            bytes.extend(label.to_le_bytes());
            bytes.extend((sequence.len() as u32).to_le_bytes());
            bytes.extend(sequence.iter().flat_map(|id| id.to_le_bytes()));
        }
        bytes.push(0xff);
    }
    let description = format!(
        "{} ({} training examples, {} validation examples, {} classes, vocabulary {})",
        config.data,
        train.sequences.len(),
        valid.as_ref().map_or(0, |v| v.sequences.len()),
        labels.len(),
        tokenizer.vocab_size()
    );
    Ok(Prepared {
        fingerprint: format!("{:016x}-{}", fnv1a(&bytes), train.sequences.len()),
        artifacts: ClassifierFiles { tokenizer, labels },
        data: ClassifyData { train, valid },
        description,
    })
}

/// The task of a run.
pub(super) fn task(
    model: Classifier,
    config: &ModelDir<ClassifyPipeline>,
    files: &ClassifierFiles,
    data: ClassifyData,
) -> Result<ClassifyTask> {
    let train_config = &config.train;
    let class_weights = if train_config.balanced {
        let w = balanced_weights(&data.train.labels, files.labels.len());
        Some(Tensor::new(w, &Device::Cpu)?)
    } else {
        None
    };
    Ok(ClassifyTask {
        model,
        train: data.train,
        valid: data.valid,
        labels: files.labels.clone(),
        batch: train_config.batch,
        seed: train_config.optim.seed,
        pad: files.tokenizer.pad_id().unwrap_or(0),
        class_weights,
        batches: Vec::new(),
        epoch: 0,
        last_step: 0,
        history: Vec::new(),
    })
}

/// The report of a finished run: the saved model (the best validation loss) measured on the validation
/// data.
pub(super) fn report(run: Trained<'_, ClassifyPipeline>) -> Result<ClassifyTrainReport> {
    let task = run.task;
    let best = match &task.valid {
        Some(valid) => {
            let loaded = load_classifier(run.dir, &Device::Cpu)?;
            Some(evaluate(
                &loaded.model,
                valid,
                &task.labels,
                run.config.train.batch,
            )?)
        }
        None => None,
    };
    Ok(ClassifyTrainReport {
        summary: run.summary,
        labels: task.labels,
        train_examples: task.train.sequences.len(),
        valid_examples: task.valid.as_ref().map_or(0, |v| v.sequences.len()),
        vocab_size: run.artifacts.tokenizer.vocab_size(),
        parameters: run.parameters,
        history: task.history,
        best,
    })
}

#[cfg(test)]
mod tests {
    use seqlab_data::Columns;

    use super::*;

    #[test]
    fn a_config_without_the_column_settings_still_loads() {
        // config.json files written before --text-column and --label-column existed.
        let config: ClassifyTrainConfig =
            serde_json::from_str(r#"{"data": "news.tsv", "text": "both", "batch": 4}"#).unwrap();
        assert_eq!((&config.text_column, &config.label_column), (&None, &None));
        assert_eq!(config.columns(), Columns::new());
        let config = ClassifyTrainConfig {
            text_column: Some("body".into()),
            label_column: Some("topic".into()),
            ..config
        };
        let json = serde_json::to_string(&config).unwrap();
        let back: ClassifyTrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.columns().get("text"), Some("body"));
        assert_eq!(back.columns().get("label"), Some("topic"));
    }

    #[test]
    fn balanced_weights_equalise_the_classes() {
        let w = balanced_weights(&[0, 0, 0, 1], 3);
        assert_eq!(w, [4.0 / 9.0, 4.0 / 3.0, 1.0]);
    }

    #[test]
    fn the_weighted_loss_is_torchs() {
        // torch.nn.functional.cross_entropy(torch.tensor([[1., 2.], [0., 0.], [3., -1.]]),
        //     torch.tensor([0, 1, 0]), weight=torch.tensor([0.5, 2.0])).item() = 0.6840000152587891
        let logits = Tensor::new(&[[1f32, 2.], [0., 0.], [3., -1.]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 1, 0], &Device::Cpu).unwrap();
        let weights = Tensor::new(&[0.5f32, 2.0], &Device::Cpu).unwrap();
        let loss = weighted_cross_entropy(&logits, &targets, &weights)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let l0 = (1f32.exp() + 2f32.exp()).ln() - 1.0;
        let l1 = 2f32.ln();
        let l2 = (3f32.exp() + (-1f32).exp()).ln() - 3.0;
        let want = (0.5 * l0 + 2.0 * l1 + 0.5 * l2) / 3.0;
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
        assert!((loss - 0.684).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn the_split_holds_out_a_share_of_every_class() {
        let examples: Vec<Example> = (0..50)
            .map(|i| Example {
                line: i + 1,
                label: usize::from(i >= 40),
                text: format!("t{i}"),
            })
            .collect();
        let (train, valid) = split_per_class(examples.clone(), 2, 0.2, 7).unwrap();
        assert_eq!((train.len(), valid.len()), (40, 10));
        assert_eq!(valid.iter().filter(|e| e.label == 1).count(), 2);
        let (_, again) = split_per_class(examples.clone(), 2, 0.2, 7).unwrap();
        assert_eq!(valid, again);
        let (_, other) = split_per_class(examples, 2, 0.2, 8).unwrap();
        assert_ne!(valid, other);
    }
}
