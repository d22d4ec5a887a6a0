//! Training a classifier: the labelled data, the tokenizer, the model, and the loop.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use seqlab_data::{
    assign_labels, bucket_batches, infer_labels, read_label_names, ColumnFlags, Example, LabelKind,
    LabelledFormat, LabelledRow, PaddedBatch, TextField,
};
use seqlab_models::{Classifier, ClassifierConfig, Mode};
use seqlab_tokenize::{CharOptions, Tokenizer, WordOptions};
use serde::{Deserialize, Serialize};

use super::dir::{
    evaluate, load_classifier, read_rows, write_labels, ClassifyDirConfig, ClassifyEvaluation,
    Encoded,
};
use super::TASK;
use crate::atomic::write_bytes_atomically;
use crate::error::{one_line, Error, Result};
use crate::init::{fnv1a, seeded_var_builder};
use crate::lm::FORMAT;
use crate::trainer::{train, LoopConfig, RunOptions, Task, TrainSummary};

/// How a classifier is trained: plain data, saved in `config.json` under `"train"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifyTrainConfig {
    /// The training data: AG News CSV, `label<TAB>text` TSV, a `.parquet` file or a hub split
    /// (`hf://datasets/OWNER/NAME[:SPLIT]`).
    pub data: String,
    /// A validation file; when `None`, `valid_fraction` of the training examples, per class.
    pub valid: Option<String>,
    /// The share of each class's training examples held out for validation when there is no validation
    /// file (chosen from the seed). 0.1: enough to pick the best epoch, little taken from training. 0 means
    /// no validation (the latest weights are kept).
    pub valid_fraction: f64,
    /// `agnews` or `tsv`; `None` picks by each file's extension (`.csv` is AG News).
    pub format: Option<String>,
    /// Which AG News columns make the text: `title`, `description` or `both`.
    pub text: String,
    /// The text column of tables (hub splits, `.parquet` files); `None`: the catalogue's column for the
    /// dataset, else `text`. CSV and TSV files are read by `format` and do not use it.
    pub text_column: Option<String>,
    /// The label column of tables; `None`: the catalogue's column for the dataset, else `label`.
    pub label_column: Option<String>,
    /// A file of class names, one per line (class k of an AG News file is line k); `None` names the
    /// classes by their numbers (AG News) or takes the distinct labels in sorted order (TSV).
    pub labels: Option<String>,
    /// `char`, `word`, or the path of a tokenizer.json.
    pub tokenizer: String,
    /// Lowercase the text (char and word tokenizers). Default true: a topic does not depend on capitals.
    pub lowercase: bool,
    /// Keep only tokens seen at least this often in the training texts; rarer ones become `<unk>`.
    /// Default 2: a word seen once teaches nothing but noise (measured: better than 1 and 3 on BBC news).
    pub min_freq: usize,
    /// Keep at most this many tokens, specials included (char and word tokenizers).
    pub max_vocab: Option<usize>,
    /// Keep at most this many tokens of each text (the first ones); `None` keeps all.
    pub max_len: Option<usize>,
    /// Texts per batch. 32: small batches help a few thousand examples generalise.
    pub batch: usize,
    /// Weight each class's loss by `n / (classes * count)` (scikit-learn's "balanced"), so that rare classes
    /// count as much as frequent ones.
    pub balanced: bool,
    /// The loop's settings. Here `eval_every` and `checkpoint_every` of 0 mean once per epoch (the default),
    /// and the defaults are those measured on BBC news: peak learning rate 2e-2 (the embeddings of a few
    /// thousand texts learn too slowly at the language model's 2e-3: 0.84 against 0.91 test accuracy),
    /// weight decay 0.1, 10 epochs.
    #[serde(flatten)]
    pub optim: LoopConfig,
}

impl Default for ClassifyTrainConfig {
    fn default() -> Self {
        Self {
            data: String::new(),
            valid: None,
            valid_fraction: 0.1,
            format: None,
            text: "both".to_string(),
            text_column: None,
            label_column: None,
            labels: None,
            tokenizer: "word".to_string(),
            lowercase: true,
            min_freq: 2,
            max_vocab: None,
            max_len: None,
            batch: 32,
            balanced: false,
            optim: LoopConfig {
                lr: 2e-2,
                weight_decay: 0.1,
                eval_every: 0,
                checkpoint_every: 0,
                epochs: Some(10),
                ..LoopConfig::default()
            },
        }
    }
}

impl ClassifyTrainConfig {
    /// The format of `path`: the configured one, else by its extension.
    pub fn format_of(&self, path: &Path) -> Result<LabelledFormat> {
        match &self.format {
            Some(name) => name.parse().map_err(Error::InvalidSetting),
            None => Ok(LabelledFormat::detect(path)),
        }
    }

    /// The AG News columns that make the text.
    pub fn text_field(&self) -> Result<TextField> {
        self.text.parse().map_err(Error::InvalidSetting)
    }

    /// The columns a table is read by: `text_column` and `label_column`.
    pub fn columns(&self) -> ColumnFlags {
        ColumnFlags {
            text: self.text_column.clone(),
            label: self.label_column.clone(),
            ..ColumnFlags::default()
        }
    }
}

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

/// What [`train_classifier`] reports beside the loop's summary.
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
struct ClassifyTask<'a> {
    model: &'a Classifier,
    train: Encoded,
    valid: Option<Encoded>,
    labels: &'a [String],
    batch: usize,
    seed: u64,
    pad: u32,
    class_weights: Option<Tensor>,
    batches: Vec<Vec<usize>>,
    epoch: usize,
    last_step: usize,
    history: Vec<ValidRecord>,
}

impl Task for ClassifyTask<'_> {
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
        let indices = self.batches.get(index).ok_or_else(|| {
            Error::InvalidSetting(format!(
                "batch {index} is beyond the epoch's {} batches",
                self.batches.len()
            ))
        })?;
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
        let eval = evaluate(self.model, valid, self.labels, self.batch)?;
        self.history.push(ValidRecord {
            step: self.last_step,
            loss: eval.loss,
            accuracy: eval.metrics.accuracy,
            macro_f1: eval.metrics.macro_f1,
        });
        Ok(Some(eval.loss))
    }

    fn carry(&self) -> Result<std::collections::HashMap<String, Tensor>> {
        Ok(Default::default()) // every batch starts from the zero state
    }

    fn restore_carry(&mut self, _: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        Ok(())
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

/// What a training run reads.
struct Prepared {
    tokenizer: Tokenizer,
    labels: Vec<String>,
    train: Encoded,
    valid: Option<Encoded>,
    fingerprint: String,
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

fn build_tokenizer(config: &ClassifyTrainConfig, texts: &[&str]) -> Result<Tokenizer> {
    Ok(match config.tokenizer.as_str() {
        "char" => Tokenizer::build_char(
            texts,
            &CharOptions {
                lowercase: config.lowercase,
                min_freq: config.min_freq,
                max_size: config.max_vocab,
                ..CharOptions::default()
            },
        )?,
        "word" => Tokenizer::build_word(
            texts,
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

fn prepare(
    config: &ClassifyTrainConfig,
    saved: Option<(Tokenizer, Vec<String>)>,
) -> Result<Prepared> {
    let (rows, train_kind, train_file) = load_rows(config, &config.data)?;
    let (saved_tokenizer, labels) = match saved {
        Some((tokenizer, labels)) => (Some(tokenizer), labels),
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
            build_tokenizer(config, &texts)?
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
    Ok(Prepared {
        fingerprint: format!("{:016x}-{}", fnv1a(&bytes), train.sequences.len()),
        tokenizer,
        labels,
        train,
        valid,
    })
}

/// Trains a classifier into the model directory `out` (created if needed): writes `config.json`,
/// `tokenizer.json` and `labels.json` first, then runs the loop ([`train`]) with a validation pass each
/// epoch (unless `eval_every` says otherwise); `model.safetensors` keeps the weights of the best validation
/// loss. `model.vocab_size` and `model.num_classes` are set from the tokenizer and the labels.
///
/// Without `options.resume`, `out` must not hold a model yet ([`Error::OutputExists`]). With it, the
/// settings, tokenizer, labels and data come from `out`; `model` and `config` are ignored but for
/// `config.optim.steps`, `epochs` and `patience`, which apply when set.
pub fn train_classifier(
    model: &ClassifierConfig,
    config: &ClassifyTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> Result<ClassifyTrainReport> {
    let config_path = out.join("config.json");
    let (mut dir_config, prepared) = if options.resume {
        let loaded = super::dir::read_dir_files(out)?;
        let mut saved = loaded.0;
        let optim = &mut saved.train.optim;
        if config.optim.steps.is_some() || config.optim.epochs.is_some() {
            optim.steps = config.optim.steps;
            optim.epochs = config.optim.epochs.or(optim.epochs);
        }
        optim.patience = config.optim.patience.or(optim.patience);
        let prepared = prepare(&saved.train, Some((loaded.1, loaded.2)))?;
        (saved, prepared)
    } else {
        if config_path.exists() {
            return Err(Error::OutputExists {
                dir: out.to_path_buf(),
            });
        }
        let config = ClassifyTrainConfig {
            data: absolute_path(&config.data),
            valid: config.valid.as_deref().map(absolute_path),
            labels: config.labels.as_deref().map(absolute_path),
            tokenizer: match config.tokenizer.as_str() {
                "char" | "word" => config.tokenizer.clone(),
                path => absolute_path(path),
            },
            ..config.clone()
        };
        let prepared = prepare(&config, None)?;
        let model = ClassifierConfig {
            vocab_size: prepared.tokenizer.vocab_size(),
            num_classes: prepared.labels.len(),
            ..model.clone()
        };
        let dir_config = ClassifyDirConfig {
            format: FORMAT.to_string(),
            task: TASK.to_string(),
            model,
            train: config,
        };
        (dir_config, prepared)
    };
    let batches_per_epoch = prepared
        .train
        .sequences
        .len()
        .div_ceil(dir_config.train.batch.max(1));
    let optim = &mut dir_config.train.optim;
    if optim.eval_every == 0 {
        optim.eval_every = batches_per_epoch.max(1);
    }
    if optim.checkpoint_every == 0 {
        optim.checkpoint_every = batches_per_epoch.max(1);
    }
    if dir_config.train.batch == 0 {
        return Err(Error::InvalidSetting(
            "--batch must be at least 1".to_string(),
        ));
    }
    dir_config.train.optim.validate()?;
    std::fs::create_dir_all(out).map_err(Error::write(out))?;
    let json = serde_json::to_string_pretty(&dir_config)
        .map_err(|e| Error::InvalidSetting(e.to_string()))?;
    write_bytes_atomically(&config_path, json.as_bytes()).map_err(Error::write(&config_path))?;
    let tokenizer_path = out.join("tokenizer.json");
    let tokenizer_json = prepared
        .tokenizer
        .as_hf()
        .to_string(true)
        .map_err(|e| Error::InvalidSetting(one_line(e)))?;
    write_bytes_atomically(&tokenizer_path, tokenizer_json.as_bytes())
        .map_err(Error::write(&tokenizer_path))?;
    write_labels(out, &prepared.labels)?;

    let train_config = &dir_config.train;
    let parameters = dir_config.model.num_parameters();
    if options.progress {
        eprintln!(
            "data: {} ({} training examples, {} validation examples, {} classes, vocabulary {}); model: {} parameters",
            train_config.data,
            prepared.train.sequences.len(),
            prepared.valid.as_ref().map_or(0, |v| v.sequences.len()),
            prepared.labels.len(),
            prepared.tokenizer.vocab_size(),
            parameters
        );
    }
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = Classifier::new(
        &dir_config.model,
        seeded_var_builder(&varmap, train_config.optim.seed, &device),
    )?;
    let class_weights = if train_config.balanced {
        let w = balanced_weights(&prepared.train.labels, prepared.labels.len());
        Some(Tensor::new(w, &device)?)
    } else {
        None
    };
    let train_examples = prepared.train.sequences.len();
    let valid_examples = prepared.valid.as_ref().map_or(0, |v| v.sequences.len());
    let mut task = ClassifyTask {
        model: &model,
        train: prepared.train,
        valid: prepared.valid,
        labels: &prepared.labels,
        batch: train_config.batch,
        seed: train_config.optim.seed,
        pad: prepared.tokenizer.pad_id().unwrap_or(0),
        class_weights,
        batches: Vec::new(),
        epoch: 0,
        last_step: 0,
        history: Vec::new(),
    };
    let summary = train(
        &mut task,
        &varmap,
        &train_config.optim,
        out,
        &prepared.fingerprint,
        options,
    )?;
    let best = match &task.valid {
        Some(valid) => {
            let loaded = load_classifier(out, &device)?;
            Some(evaluate(
                &loaded.model,
                valid,
                &prepared.labels,
                train_config.batch,
            )?)
        }
        None => None,
    };
    Ok(ClassifyTrainReport {
        summary,
        labels: prepared.labels.clone(),
        train_examples,
        valid_examples,
        vocab_size: prepared.tokenizer.vocab_size(),
        parameters,
        history: task.history,
        best,
    })
}

/// A local path made absolute (canonical when it exists), so that `--resume` works from any directory.
fn absolute_path(path: &str) -> String {
    // Hub addresses (issue 11) are kept as they are.
    if path.starts_with(seqlab_data::HUB_SCHEME) {
        return path.to_string();
    }
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .map_or_else(|_| path.to_string(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_without_the_column_settings_still_loads() {
        // config.json files written before --text-column and --label-column existed.
        let config: ClassifyTrainConfig =
            serde_json::from_str(r#"{"data": "news.tsv", "text": "both", "batch": 4}"#).unwrap();
        assert_eq!((&config.text_column, &config.label_column), (&None, &None));
        assert_eq!(config.columns(), ColumnFlags::default());
        let config = ClassifyTrainConfig {
            text_column: Some("body".into()),
            label_column: Some("topic".into()),
            ..config
        };
        let json = serde_json::to_string(&config).unwrap();
        let back: ClassifyTrainConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.columns().text.as_deref(), Some("body"));
        assert_eq!(back.columns().label.as_deref(), Some("topic"));
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
