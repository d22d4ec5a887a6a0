//! `seqlab images train|eval|predict`: the sequential image pipeline (cargo feature `images`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use candle_core::Device;
use seqlab_models::{ImageClassifierConfig, PixelOrder, Pooling};
use seqlab_train::images::{load_images_model, ImagesTrainConfig};
use seqlab_train::{ImagesPipeline, Pipeline};

use crate::class_report::{metrics_json, print_accuracies, print_best, print_top};
use crate::train_args::{print_summary, set_stack, Loop, ModelDirArg, Stack};

/// Train, evaluate or apply a recurrent classifier of images read as sequences (sequential MNIST).
#[derive(clap::Subcommand, Debug)]
pub enum ImagesCommand {
    /// Train on MNIST-format images (a directory of IDX files, or hub:mnist, hub:fashion-mnist) and write a
    /// model directory.
    Train(Box<TrainArgs>),
    /// Measure accuracy, macro-F1, per-class precision and recall and the confusion matrix on test images.
    Eval(EvalArgs),
    /// Print the most probable class of each image, with its probability.
    Predict(PredictArgs),
}

/// Arguments of `seqlab images train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// A directory of MNIST-format IDX files, plain or gzipped (train-images-idx3-ubyte[.gz],
    /// train-labels-idx1-ubyte[.gz], t10k-...; Debian's dataset-fashion-mnist puts them in
    /// /usr/share/datasets/fashion-mnist), or hub:mnist, hub:fashion-mnist.
    #[arg(long, value_name = "DIR|hub:NAME")]
    data: String,
    /// Hold out the last N training images for validation (0: no validation).
    #[arg(long, value_name = "N", default_value_t = ImagesTrainConfig::default().valid)]
    valid: usize,
    /// Class names, one per line (class k is line k) [default: the class numbers].
    #[arg(long, value_name = "FILE")]
    labels: Option<String>,
    /// How an image becomes a sequence: rows (H steps of W pixels), pixels (H·W steps of one pixel) or
    /// permuted (pixels in a fixed random order, drawn from --permutation-seed).
    #[arg(long, value_name = "rows|pixels|permuted", default_value = "rows")]
    order: PixelOrder,
    /// The seed of the pixel order of --order permuted.
    #[arg(long, value_name = "N", default_value_t = 0)]
    permutation_seed: u64,
    #[command(flatten)]
    stack: Stack<ImagesPipeline>,
    /// Read each sequence in both directions.
    #[arg(long)]
    bidirectional: bool,
    /// Pooling over the steps: last, mean or max.
    #[arg(long, value_name = "last|mean|max", default_value = "last")]
    pool: Pooling,
    /// Images per batch.
    #[arg(long, value_name = "N", default_value_t = ImagesTrainConfig::default().batch, value_parser = crate::ranges::at_least_one("--batch"))]
    batch: usize,
    #[command(flatten)]
    run: Loop<ImagesPipeline>,
}

/// Arguments of `seqlab images eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelDirArg<ImagesPipeline>,
    /// The test images of this source (a directory of IDX files, or hub:NAME) [default: the training
    /// run's].
    #[arg(long, value_name = "DIR|hub:NAME")]
    data: Option<String>,
    /// Print one JSON object: {"accuracy", "macro_f1", "labels", "confusion", "per_class", "loss", "examples"}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `seqlab images predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelDirArg<ImagesPipeline>,
    /// PNG or JPEG images to classify (made grey and resized to the model's size), or --test.
    #[arg(value_name = "IMAGE", conflicts_with = "test")]
    images: Vec<PathBuf>,
    /// Classify test images of the training run's data instead: START..END (0-based, END excluded) or one
    /// index; each line then ends with the image's true class.
    #[arg(long, value_name = "START..END")]
    test: Option<String>,
    /// Print the N most probable classes of each image.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = crate::ranges::at_least_one("--top"))]
    top: usize,
}

/// Runs a `seqlab images` command.
pub fn run(cmd: ImagesCommand) -> anyhow::Result<()> {
    match cmd {
        ImagesCommand::Train(args) => train(*args),
        ImagesCommand::Eval(args) => eval(args),
        ImagesCommand::Predict(args) => predict(args),
    }
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    // --threads first: before anything starts a worker thread.
    args.run.start()?;
    let mut model = ImageClassifierConfig {
        order: args.order,
        permutation_seed: args.permutation_seed,
        bidirectional: args.bidirectional,
        pool: args.pool,
        ..ImageClassifierConfig::default()
    };
    set_stack!(args.stack, model);
    let config = ImagesTrainConfig {
        data: args.data,
        valid: args.valid,
        labels: args.labels,
        batch: args.batch,
        optim: args.run.config()?,
    };
    let report = args.run.train(&model, &config)?;
    let out_dir = &args.run.out;
    let s = &report.summary;
    print_accuracies(report.history.iter().map(|r| (r.step, r.accuracy)));
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "data: {} training images, {} validation images, {} classes ({})",
        report.train_images,
        report.valid_images,
        report.labels.len(),
        report.labels.join(", "),
    )?;
    print_summary(&mut out, s, report.parameters, ImagesPipeline::UNIT)?;
    print_best(&mut out, s, report.best.as_ref().map(|b| &b.metrics))?;
    writeln!(
        out,
        "model directory: {} (seqlab images eval --model {})",
        out_dir.display(),
        out_dir.display()
    )?;
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let model = load_images_model(&args.model.model, &Device::Cpu)?;
    let result = model.evaluate_test(args.data.as_deref())?;
    let m = &result.metrics;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", metrics_json(m, result.loss))?;
    } else {
        let source = args.data.as_deref().unwrap_or(&model.config.train.data);
        writeln!(out, "{source} (test images): {}", m.report().trim_end())?;
    }
    Ok(())
}

/// `START..END` or `INDEX` as a range of test images.
fn test_range(text: &str) -> anyhow::Result<(usize, usize)> {
    let parse = |s: &str| {
        s.trim().parse::<usize>().map_err(|_| {
            anyhow::anyhow!("--test {text}: expected START..END or an index, as 0..10")
        })
    };
    let (start, end) = match text.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let i = parse(text)?;
            (i, i + 1)
        }
    };
    if end <= start {
        bail!("--test {text}: the range holds no image");
    }
    Ok((start, end - start))
}

fn predict(args: PredictArgs) -> anyhow::Result<()> {
    let model = load_images_model(&args.model.model, &Device::Cpu)?;
    let (probabilities, truth) = match &args.test {
        Some(range) => {
            let (start, len) = test_range(range)?;
            let set = model.test_images(start, len)?;
            let truth: Vec<u32> = set.labels.to_vec1()?;
            (model.predict(&set.images)?, Some(truth))
        }
        None => {
            if args.images.is_empty() {
                bail!("nothing to classify: give image files as arguments, or --test START..END");
            }
            (model.predict_files(&args.images)?, None)
        }
    };
    let mut out = std::io::stdout().lock();
    print_top(&mut out, &probabilities, &model.labels, args.top, |i| {
        let truth = truth.as_ref()?;
        let label = model
            .labels
            .get(truth[i] as usize)
            .map_or("?", String::as_str);
        Some(format!("true {label}"))
    })?;
    Ok(())
}
