//! A classifier's directory: `config.json`, `tokenizer.json`, `labels.json`, `model.safetensors`; loading
//! it, evaluating it on labelled data and predicting.

use std::path::Path;

use candle_core::{Device, Tensor};
use seqlab_data::{
    assign_labels, is_labelled_table, labelled_table_rows, read_labelled, sorted_batches, Columns,
    Example, Hub, LabelledFormat, LabelledRow, PaddedBatch, TextField,
};
use seqlab_models::{Classifier, Mode};
use seqlab_tokenize::Tokenizer;

use super::metrics::ClassificationMetrics;
use super::ClassifyPipeline;
use crate::atomic::write_bytes_atomically;
use crate::error::{one_line, Error, Result};
use crate::model_dir::{read_model_dir, read_tokenizer, write_tokenizer, ModelDir};
use crate::pipeline::{load, Loaded};

/// A classifier's `config.json`.
pub type ClassifyDirConfig = ModelDir<ClassifyPipeline>;

/// What a classifier's directory holds beside `config.json` and the weights: `tokenizer.json` and
/// `labels.json`.
#[derive(Debug, Clone)]
pub struct ClassifierFiles {
    /// `tokenizer.json`.
    pub tokenizer: Tokenizer,
    /// `labels.json`: class `i` is `labels[i]`.
    pub labels: Vec<String>,
}

/// Texts encoded for a classifier, with their class indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids of each text (none empty).
    pub sequences: Vec<Vec<u32>>,
    /// The class of each text.
    pub labels: Vec<u32>,
}

impl Encoded {
    /// Encodes `examples` with `tokenizer` (no special tokens), keeping at most `max_len` tokens of each.
    /// A text that gives no token is [`seqlab_data::Error::EmptyText`] naming `file` and its line.
    pub fn new(
        tokenizer: &Tokenizer,
        examples: &[Example],
        max_len: Option<usize>,
        file: &str,
    ) -> Result<Encoded> {
        let mut sequences = Vec::with_capacity(examples.len());
        for e in examples {
            let mut ids = tokenizer.encode(&e.text)?;
            if let Some(max) = max_len {
                ids.truncate(max.max(1));
            }
            if ids.is_empty() {
                return Err(Error::Data(seqlab_data::Error::EmptyText {
                    file: file.to_string(),
                    line: e.line,
                }));
            }
            sequences.push(ids);
        }
        Ok(Encoded {
            sequences,
            labels: examples.iter().map(|e| e.label as u32).collect(),
        })
    }
}

/// A classifier's loss and metrics on labelled data.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyEvaluation {
    /// Mean cross-entropy per example, in nats.
    pub loss: f64,
    /// Accuracy, macro-F1, per-class precision and recall, confusion matrix.
    pub metrics: ClassificationMetrics,
}

/// The probabilities of every class for each of `sequences`, in their order, (n, classes) as rows: the
/// sequences are batched `batch` at a time, sorted by length (padding never changes a prediction).
pub fn probabilities(
    model: &Classifier,
    sequences: &[Vec<u32>],
    batch: usize,
) -> Result<Vec<Vec<f32>>> {
    let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
    let mut out = vec![Vec::new(); sequences.len()];
    let no_labels = vec![0u32; sequences.len()];
    for indices in sorted_batches(&lengths, batch.max(1))? {
        let b = PaddedBatch::gather(sequences, &no_labels, &indices, 0)?;
        let (ids, _) = b.tensors(&Device::Cpu)?;
        let p: Vec<Vec<f32>> = model.probabilities(&ids, Some(&b.lengths))?.to_vec2()?;
        for (i, row) in indices.into_iter().zip(p) {
            out[i] = row;
        }
    }
    Ok(out)
}

/// The loss and metrics of `model` on `data` over the classes `labels`, `batch` texts at a time.
pub fn evaluate(
    model: &Classifier,
    data: &Encoded,
    labels: &[String],
    batch: usize,
) -> Result<ClassifyEvaluation> {
    let lengths: Vec<usize> = data.sequences.iter().map(Vec::len).collect();
    let mut predicted = vec![0usize; data.sequences.len()];
    let mut loss_sum = 0.0f64;
    for indices in sorted_batches(&lengths, batch.max(1))? {
        let b = PaddedBatch::gather(&data.sequences, &data.labels, &indices, 0)?;
        let (ids, targets) = b.tensors(&Device::Cpu)?;
        let logits = model.forward(&ids, Some(&b.lengths), Mode::Eval)?;
        let loss = seqlab_cells::cross_entropy(&logits, &targets, None)?.to_scalar::<f32>()?;
        loss_sum += loss as f64 * b.batch as f64;
        let best: Vec<u32> = logits.argmax(1)?.to_vec1()?;
        for (i, p) in indices.into_iter().zip(best) {
            predicted[i] = p as usize;
        }
    }
    let truth: Vec<usize> = data.labels.iter().map(|&l| l as usize).collect();
    Ok(ClassifyEvaluation {
        loss: loss_sum / data.sequences.len().max(1) as f64,
        metrics: ClassificationMetrics::new(labels, &truth, &predicted),
    })
}

/// The labelled rows of `path`: a table (a hub split or a `.parquet` file) by its `columns` (a column not
/// named is the catalogue's, else `text` and `label`), any other file as AG News CSV or TSV (`format`,
/// `text`). A missing column is an error naming the source, the column and the flag that chooses it.
pub(crate) fn read_rows(
    path: &Path,
    format: LabelledFormat,
    text: TextField,
    columns: &Columns,
) -> Result<Vec<LabelledRow>> {
    match path.to_str().filter(|s| is_labelled_table(s)) {
        Some(source) => Ok(labelled_table_rows(&Hub::from_env(), source, columns)?),
        None => Ok(read_labelled(path, format, text)?),
    }
}

/// Reads and checks `dir/config.json`: format `seqlab/1`, task `classify`. A directory of another task is
/// [`Error::WrongTask`].
pub fn read_config(dir: &Path) -> Result<ClassifyDirConfig> {
    read_model_dir(dir)
}

/// Writes `dir/labels.json`: the class names as a JSON array, class `i` at position `i`.
pub fn write_labels(dir: &Path, labels: &[String]) -> Result<()> {
    let path = dir.join("labels.json");
    let json =
        serde_json::to_string_pretty(labels).map_err(|e| Error::InvalidSetting(e.to_string()))?;
    write_bytes_atomically(&path, json.as_bytes()).map_err(Error::write(&path))
}

/// Reads `dir/labels.json` (a JSON array of distinct class names).
pub fn read_labels(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("labels.json");
    let text = std::fs::read_to_string(&path).map_err(Error::read(&path))?;
    let labels: Vec<String> = serde_json::from_str(&text).map_err(|e| Error::BadJson {
        path: path.clone(),
        what: "labels.json (a JSON array of class names)",
        reason: one_line(e),
    })?;
    let mut sorted = labels.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != labels.len() {
        return Err(Error::BadJson {
            path,
            what: "labels.json (a JSON array of class names)",
            reason: "a class name is listed twice".to_string(),
        });
    }
    Ok(labels)
}

/// `tokenizer.json` and `labels.json` of a classifier's directory, checked against its `config.json`.
pub(super) fn read_files(dir: &Path, config: &ClassifyDirConfig) -> Result<ClassifierFiles> {
    let tokenizer = read_tokenizer(dir, "tokenizer.json", config.model.vocab_size)?;
    let labels = read_labels(dir)?;
    if labels.len() != config.model.num_classes {
        return Err(Error::InvalidSetting(format!(
            "{} names {} classes but the model has {} (config.json)",
            dir.join("labels.json").display(),
            labels.len(),
            config.model.num_classes
        )));
    }
    Ok(ClassifierFiles { tokenizer, labels })
}

/// Writes `tokenizer.json` and `labels.json` into `dir`.
pub(super) fn write_files(files: &ClassifierFiles, dir: &Path) -> Result<()> {
    write_tokenizer(&files.tokenizer, &dir.join("tokenizer.json"))?;
    write_labels(dir, &files.labels)
}

/// A classifier loaded from its directory.
#[derive(Debug)]
pub struct LoadedClassifier {
    /// Its `config.json`.
    pub config: ClassifyDirConfig,
    /// Its `tokenizer.json`.
    pub tokenizer: Tokenizer,
    /// Its `labels.json`: class `i` is `labels[i]`.
    pub labels: Vec<String>,
    /// The weights of `model.safetensors`.
    pub model: Classifier,
}

/// Loads a classifier's directory, checking that its files agree. Errors name the file and, for weights,
/// the tensor; a directory of another task is [`Error::WrongTask`].
pub fn load_classifier(dir: &Path, device: &Device) -> Result<LoadedClassifier> {
    let Loaded {
        config,
        artifacts,
        model,
    } = load::<ClassifyPipeline>(dir, device)?;
    Ok(LoadedClassifier {
        config,
        tokenizer: artifacts.tokenizer,
        labels: artifacts.labels,
        model,
    })
}

impl LoadedClassifier {
    /// The class probabilities of each text, in order: one row of `labels.len()` per text. An empty text
    /// (or one that gives no token) is an error naming its position, 1-based.
    pub fn predict(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut sequences = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let mut ids = self.tokenizer.encode(text)?;
            if let Some(max) = self.config.train.max_len {
                ids.truncate(max.max(1));
            }
            if ids.is_empty() {
                return Err(Error::InvalidSetting(format!(
                    "text {} is empty: there is nothing to classify",
                    i + 1
                )));
            }
            sequences.push(ids);
        }
        probabilities(&self.model, &sequences, self.config.train.batch)
    }

    /// The loss and metrics on labelled data: AG News CSV or TSV (`format`, else by its extension),
    /// `text` the AG News columns (else the training setting), or a table (a hub split, a `.parquet` file)
    /// read by the training run's columns. Labels map onto `labels.json`: class numbers by position, names
    /// by name; an unknown label is an error naming the file and the line.
    pub fn evaluate_file(
        &self,
        path: &Path,
        format: Option<LabelledFormat>,
        text: Option<TextField>,
    ) -> Result<ClassifyEvaluation> {
        self.evaluate_file_with_columns(path, format, text, &Columns::new())
    }

    /// [`LoadedClassifier::evaluate_file`] reading a table by `columns`: a column they do not name is the
    /// training run's (`text_column`, `label_column` of `config.json`), else the catalogue's, else `text`
    /// and `label`.
    pub fn evaluate_file_with_columns(
        &self,
        path: &Path,
        format: Option<LabelledFormat>,
        text: Option<TextField>,
        columns: &Columns,
    ) -> Result<ClassifyEvaluation> {
        let format = format.unwrap_or_else(|| LabelledFormat::detect(path));
        let text = match text {
            Some(text) => text,
            None => self.config.train.text_field()?,
        };
        let columns = columns.or(&self.config.train.columns());
        let rows = read_rows(path, format, text, &columns)?;
        let file = path.display().to_string();
        let examples = assign_labels(rows, format.label_kind(), &self.labels, &file)?.examples;
        let data = Encoded::new(&self.tokenizer, &examples, self.config.train.max_len, &file)?;
        evaluate(&self.model, &data, &self.labels, self.config.train.batch)
    }

    /// The logits of padded ids (batch, seq) u32 with their lengths, as [`Classifier::forward`].
    pub fn logits(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        Ok(self.model.forward(ids, Some(lengths), Mode::Eval)?)
    }
}
