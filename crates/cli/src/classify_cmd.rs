//! `seqlab classify train|eval|predict`: the classification pipeline.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::Device;
use seqlab_data::{Columns, LabelledFormat, TextField};
use seqlab_models::{ClassifierConfig, Pooling};
use seqlab_train::classify::{load_classifier, ClassifyTrainConfig};
use seqlab_train::{ClassifyPipeline, Pipeline};

use crate::class_report::{metrics_json, print_accuracies, print_best, print_top};
use crate::train_args::{print_summary, set_stack, Loop, ModelDirArg, Stack};

/// Train, evaluate or apply a recurrent text classifier.
#[derive(clap::Subcommand, Debug)]
pub enum ClassifyCommand {
    /// Train a classifier on labelled text (AG News CSV or label<TAB>text TSV) and write a model directory.
    Train(Box<TrainArgs>),
    /// Measure accuracy, macro-F1, per-class precision and recall and the confusion matrix on labelled text.
    Eval(EvalArgs),
    /// Print the most probable label of each text, with its probability.
    Predict(PredictArgs),
}

/// Arguments of `seqlab classify train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The training file: AG News CSV ("class","title","description", class from 1), label<TAB>text TSV,
    /// a .parquet file or a hub split hf://datasets/OWNER/NAME[@REVISION][:SPLIT] (see `seqlab data list`).
    #[arg(long, value_name = "FILE")]
    data: String,
    /// A validation file or hub split; without it, --valid-fraction of each class of the training file.
    #[arg(long, value_name = "FILE")]
    valid: Option<String>,
    /// The column holding the text in tables (hub splits, .parquet files) [default: the catalogue's, else
    /// text].
    #[arg(long, value_name = "NAME")]
    text_column: Option<String>,
    /// The column holding the label in tables (hub splits, .parquet files) [default: the catalogue's, else
    /// label].
    #[arg(long, value_name = "NAME")]
    label_column: Option<String>,
    /// Share of each class held out for validation when there is no --valid file (0: no validation).
    #[arg(long, value_name = "F", default_value_t = ClassifyTrainConfig::default().valid_fraction, value_parser = crate::ranges::fraction("the validation share"))]
    valid_fraction: f64,
    /// agnews or tsv [default: by extension, .csv is agnews].
    #[arg(long, value_name = "agnews|tsv")]
    format: Option<LabelledFormat>,
    /// Which AG News columns make the text.
    #[arg(long, value_name = "title|description|both", default_value = "both")]
    text: TextField,
    /// Class names, one per line (class k of an AG News file is line k) [default: NAME-classes.txt or
    /// classes.txt beside an AG News file when there is one, else the class numbers; for TSV the labels].
    #[arg(long, value_name = "FILE")]
    labels: Option<String>,
    /// char, word, or the path of a tokenizer.json.
    #[arg(long, value_name = "char|word|PATH", default_value_t = ClassifyTrainConfig::default().tokenizer)]
    tokenizer: String,
    /// Keep the text's capitals (char and word tokenizers lowercase it by default).
    #[arg(long)]
    keep_case: bool,
    /// Keep only tokens seen at least N times in the training texts; the rest become <unk>.
    #[arg(long, value_name = "N", default_value_t = ClassifyTrainConfig::default().min_freq)]
    min_freq: usize,
    /// Keep at most N tokens, the 4 special tokens included.
    #[arg(long, value_name = "N", value_parser = crate::ranges::vocabulary("--max-vocab"))]
    max_vocab: Option<usize>,
    /// Keep at most the first N tokens of each text.
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--max-len"))]
    max_len: Option<usize>,
    #[command(flatten)]
    stack: Stack<ClassifyPipeline>,
    /// Embedding width; 0 feeds one-hot vectors instead.
    #[arg(long, value_name = "N", default_value_t = ClassifierConfig::default().embed)]
    embed: usize,
    /// Read each text in both directions [default: on; --bidirectional false turns it off].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    bidirectional: Option<bool>,
    /// Pooling over each text's steps: last, mean or max [default: max].
    #[arg(long, value_name = "last|mean|max")]
    pool: Option<Pooling>,
    /// Dropout on the embedded tokens, in training [default: 0].
    #[arg(long, value_name = "P", value_parser = crate::ranges::probability("the embedding dropout"))]
    embed_dropout: Option<f32>,
    /// Texts per batch.
    #[arg(long, value_name = "N", default_value_t = ClassifyTrainConfig::default().batch, value_parser = crate::ranges::at_least_one("--batch"))]
    batch: usize,
    /// Weight the loss of each class by n / (classes * count), so rare classes count as much as frequent ones.
    #[arg(long)]
    balanced: bool,
    #[command(flatten)]
    run: Loop<ClassifyPipeline>,
}

/// Arguments of `seqlab classify eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelDirArg<ClassifyPipeline>,
    /// Labelled text: AG News CSV, label<TAB>text TSV, a .parquet file or a hub split
    /// hf://datasets/OWNER/NAME[@REVISION][:SPLIT].
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// agnews or tsv [default: by extension].
    #[arg(long, value_name = "agnews|tsv")]
    format: Option<LabelledFormat>,
    /// Which AG News columns make the text [default: as in training].
    #[arg(long, value_name = "title|description|both")]
    text: Option<TextField>,
    /// The column holding the text in tables (hub splits, .parquet files) [default: as in training, else
    /// the catalogue's, else text].
    #[arg(long, value_name = "NAME")]
    text_column: Option<String>,
    /// The column holding the label in tables [default: as in training, else the catalogue's, else label].
    #[arg(long, value_name = "NAME")]
    label_column: Option<String>,
    /// Print one JSON object: {"accuracy", "macro_f1", "labels", "confusion", "per_class", "loss", "examples"}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `seqlab classify predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelDirArg<ClassifyPipeline>,
    /// Texts to classify (or --input).
    #[arg(value_name = "TEXT", conflicts_with = "input")]
    texts: Vec<String>,
    /// A UTF-8 file of texts, one per line.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print the N most probable labels of each text.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = crate::ranges::at_least_one("--top"))]
    top: usize,
}

/// Runs a `seqlab classify` command.
pub fn run(cmd: ClassifyCommand) -> anyhow::Result<()> {
    match cmd {
        ClassifyCommand::Train(args) => train(*args),
        ClassifyCommand::Eval(args) => eval(args),
        ClassifyCommand::Predict(args) => predict(args),
    }
}

/// The class names beside an AG News file, when there are: `NAME-classes.txt` for `NAME-train.csv` (or
/// `-test`, `-valid`), else `classes.txt` in the same folder.
fn names_beside(data: &Path) -> Option<PathBuf> {
    let dir = data.parent()?;
    let stem = data.file_stem()?.to_str()?;
    let base = ["-train", "_train", "-test", "_test", "-valid", "_valid"]
        .iter()
        .find_map(|suffix| stem.strip_suffix(suffix))
        .unwrap_or(stem);
    [format!("{base}-classes.txt"), "classes.txt".to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Column flags name columns of tables only: given for a CSV or TSV file (which has its own layout), they
/// are an error rather than ignored.
fn check_columns(
    columns: &Columns,
    sources: &[&str],
    format: LabelledFormat,
) -> anyhow::Result<()> {
    let layout = match format {
        LabelledFormat::AgNews => "AG News CSV (--text chooses its columns)",
        LabelledFormat::Tsv => "label<TAB>text TSV",
    };
    Ok(columns.check_tables(sources, layout)?)
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    // --threads first: before anything starts a worker thread.
    args.run.start()?;
    if let Some(0) = args.max_len {
        bail!("--max-len must be at least 1");
    }
    let defaults = ClassifierConfig::default();
    let mut model = ClassifierConfig {
        vocab_size: 0,
        num_classes: 0,
        embed: args.embed,
        bidirectional: args.bidirectional.unwrap_or(defaults.bidirectional),
        pool: args.pool.unwrap_or(defaults.pool),
        embed_dropout: args.embed_dropout.unwrap_or(defaults.embed_dropout),
        ..defaults
    };
    set_stack!(args.stack, model);
    let resume = args.run.resume;
    let format = args
        .format
        .unwrap_or_else(|| LabelledFormat::detect(Path::new(&args.data)));
    let labels = match args.labels {
        Some(labels) => Some(labels),
        None if format == LabelledFormat::AgNews && !resume => names_beside(Path::new(&args.data))
            .map(|path| {
                eprintln!("note: class names from {}", path.display());
                path.display().to_string()
            }),
        None => None,
    };
    let columns = Columns::new()
        .with("text", args.text_column.clone())
        .with("label", args.label_column.clone());
    if !resume {
        let sources: Vec<&str> = std::iter::once(args.data.as_str())
            .chain(args.valid.as_deref())
            .collect();
        check_columns(&columns, &sources, format)?;
    }
    let config = ClassifyTrainConfig {
        data: args.data,
        valid: args.valid,
        text_column: args.text_column,
        label_column: args.label_column,
        valid_fraction: args.valid_fraction,
        format: args.format.map(|f| f.as_str().to_string()),
        text: args.text.as_str().to_string(),
        labels,
        tokenizer: args.tokenizer,
        lowercase: !args.keep_case,
        min_freq: args.min_freq,
        max_vocab: args.max_vocab,
        max_len: args.max_len,
        batch: args.batch,
        balanced: args.balanced,
        optim: args.run.config()?,
    };
    let report = args.run.train(&model, &config)?;
    let out_dir = &args.run.out;
    let s = &report.summary;
    print_accuracies(report.history.iter().map(|r| (r.step, r.accuracy)));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "data: {} training examples, {} validation examples, {} classes ({}), vocabulary {}",
        report.train_examples,
        report.valid_examples,
        report.labels.len(),
        report.labels.join(", "),
        report.vocab_size
    )?;
    print_summary(&mut out, s, report.parameters, ClassifyPipeline::UNIT)?;
    print_best(&mut out, s, report.best.as_ref().map(|b| &b.metrics))?;
    writeln!(
        out,
        "model directory: {} (seqlab classify eval --model {} --data FILE)",
        out_dir.display(),
        out_dir.display()
    )?;
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let classifier = load_classifier(&args.model.model, &Device::Cpu)?;
    let columns = Columns::new()
        .with("text", args.text_column.clone())
        .with("label", args.label_column.clone());
    let format = args
        .format
        .unwrap_or_else(|| LabelledFormat::detect(&args.data));
    check_columns(&columns, &[&args.data.to_string_lossy()], format)?;
    let result =
        classifier.evaluate_file_with_columns(&args.data, args.format, args.text, &columns)?;
    let m = &result.metrics;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", metrics_json(m, result.loss))?;
    } else {
        writeln!(out, "{}: {}", args.data.display(), m.report().trim_end())?;
    }
    Ok(())
}

fn predict(args: PredictArgs) -> anyhow::Result<()> {
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    let classifier = load_classifier(&args.model.model, &Device::Cpu)?;
    let texts: Vec<String> = match &args.input {
        Some(path) => {
            let content = seqlab_tokenize::read_text(path)?;
            let lines: Vec<String> = content.lines().map(str::to_string).collect();
            if let Some(i) = lines.iter().position(|l| l.trim().is_empty()) {
                bail!("{}, line {}: the text is empty", path.display(), i + 1);
            }
            lines
        }
        None => {
            if args.texts.is_empty() {
                bail!("nothing to classify: give texts as arguments or --input FILE");
            }
            if let Some(i) = args.texts.iter().position(|t| t.trim().is_empty()) {
                bail!("text {} is empty: there is nothing to classify", i + 1);
            }
            args.texts.clone()
        }
    };
    let probabilities = classifier
        .predict(&texts)
        .with_context(|| format!("cannot classify with {}", args.model.model.display()))?;
    let mut out = std::io::stdout().lock();
    print_top(
        &mut out,
        &probabilities,
        &classifier.labels,
        args.top,
        |_| None,
    )?;
    Ok(())
}
