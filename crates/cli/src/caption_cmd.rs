//! `seqlab caption train|eval|run`: the captioning pipeline.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::Device;
use seqlab_data::{
    is_labelled_table, load_images, read_captions, CaptionedImage, Columns, OnBadImage,
};
use seqlab_models::{AttentionKind, CaptionerConfig, CnnConfig, Inject};
use seqlab_train::caption::{
    baseline_caption, evaluate_captions, html_report, CaptionEvaluation, CaptionedOutput, Decoding,
    Split,
};
use seqlab_train::{
    load_captioner, write_bytes_atomically, CaptionPipeline, CaptionTrainConfig, LoadedCaptioner,
    Pipeline,
};

use crate::train_args::{print_summary, set_stack, Loop, ModelDirArg, Stack};

/// Train an image captioner, score it, or caption images.
#[derive(clap::Subcommand, Debug)]
pub enum CaptionCommand {
    /// Train a captioner (CNN encoder + recurrent decoder) on images with captions in the Flickr8k layout
    /// (a captions.txt CSV `image,caption` and an image folder) and write a model directory.
    Train(Box<TrainArgs>),
    /// Caption the images of a captions file and score them: corpus BLEU-1..4 against every reference of
    /// each image, and exact match.
    Eval(EvalArgs),
    /// Caption image files.
    Run(RunArgs),
}

/// Arguments of `seqlab caption train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The image folder (not needed when --captions is a hub split or a parquet file).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// The captions CSV with header image,caption (several rows per image); or a hub split
    /// hf://datasets/OWNER/NAME[:SPLIT] or a .parquet file with image and caption columns (see
    /// `seqlab data list`).
    #[arg(long, visible_alias = "data", value_name = "FILE")]
    captions: PathBuf,
    /// The column holding the image (as bytes) in tables (hub splits, .parquet files) [default: the
    /// catalogue's, else image].
    #[arg(long, value_name = "NAME")]
    image_column: Option<String>,
    /// The column(s) holding the captions in tables, comma-separated [default: the catalogue's, else
    /// caption].
    #[arg(long, value_name = "NAME[,NAME...]")]
    caption_column: Option<String>,
    /// Images (with all their captions) held out for validation.
    #[arg(long, value_name = "F", default_value_t = CaptionTrainConfig::default().valid_fraction, value_parser = crate::ranges::fraction("the validation share"))]
    valid_fraction: f64,
    /// Leave out listed images that are missing, corrupt or not PNG/JPEG (counted) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    /// Keep the captions' case (by default they are lowercased).
    #[arg(long)]
    keep_case: bool,
    /// Keep only words seen at least N times; the rest become <unk>.
    #[arg(long, value_name = "N", default_value_t = CaptionTrainConfig::default().min_freq)]
    min_freq: usize,
    /// Keep at most N words, the 4 special tokens included.
    #[arg(long, value_name = "N", value_parser = crate::ranges::vocabulary("--max-vocab"))]
    max_vocab: Option<usize>,
    /// Side images are resized to, in pixels.
    #[arg(long, value_name = "N", default_value_t = CnnConfig::default().image_size, value_parser = crate::ranges::at_least_one("--image-size"))]
    image_size: usize,
    /// Output channels of the CNN's blocks (each halves the image side), comma-separated.
    #[arg(
        long,
        value_name = "N,N,...",
        value_delimiter = ',',
        default_value = "16,32,32,64"
    )]
    channels: Vec<usize>,
    /// How the image reaches the decoder: init (its initial state) or first (its first input).
    #[arg(long, value_name = "init|first", default_value = "init")]
    inject: Inject,
    /// Attention of the decoder over the cells of the CNN's last feature map: none, dot, general (Luong)
    /// or additive (Bahdanau).
    #[arg(
        long,
        value_name = "none|dot|general|additive",
        default_value = "general"
    )]
    attention: AttentionKind,
    /// Do not append each map cell's (row, column) coordinates to its features for attention.
    #[arg(long)]
    no_coordinates: bool,
    #[command(flatten)]
    stack: Stack<CaptionPipeline>,
    /// Word embedding width.
    #[arg(long, value_name = "N", default_value_t = CaptionerConfig::default().embed, value_parser = crate::ranges::at_least_one("--embed"))]
    embed: usize,
    /// Captions per batch.
    #[arg(long, value_name = "N", default_value_t = CaptionTrainConfig::default().batch, value_parser = crate::ranges::at_least_one("--batch"))]
    batch: usize,
    /// Words kept of each caption; also the longest caption generated.
    #[arg(long, value_name = "N", default_value_t = CaptionTrainConfig::default().max_words, value_parser = crate::ranges::at_least_one("--max-words"))]
    max_words: usize,
    #[command(flatten)]
    run: Loop<CaptionPipeline>,
}

/// Arguments of `seqlab caption eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelDirArg<CaptionPipeline>,
    /// The image folder (not needed when --captions is a hub split or a parquet file).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// The captions CSV (image,caption): the references; or a hub split hf://datasets/OWNER/NAME[:SPLIT]
    /// or a .parquet file with image and caption columns.
    #[arg(long, visible_alias = "data", value_name = "FILE")]
    captions: PathBuf,
    /// The column holding the image (as bytes) in tables [default: as in training, else the catalogue's,
    /// else image].
    #[arg(long, value_name = "NAME")]
    image_column: Option<String>,
    /// The column(s) holding the captions in tables, comma-separated [default: as in training, else the
    /// catalogue's, else caption].
    #[arg(long, value_name = "NAME[,NAME...]")]
    caption_column: Option<String>,
    /// Which images of the file: all, or the train / valid images of the model's own split (valid: the
    /// held-out images when --captions is the training file).
    #[arg(long, value_name = "all|train|valid", default_value = "all")]
    split: Split,
    /// Beam search with W hypotheses instead of greedy decoding.
    #[arg(long, value_name = "W", value_parser = crate::ranges::at_least_one("--beam"))]
    beam: Option<usize>,
    /// Leave out images that are missing, corrupt or not PNG/JPEG (counted) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    /// Print one JSON object: {"bleu1".."bleu4", "exact_match", "bp", "images", "skipped", "baseline"}.
    #[arg(long)]
    json: bool,
    /// Also write an HTML page of the images beside their captions and references.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// Arguments of `seqlab caption run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelDirArg<CaptionPipeline>,
    /// PNG or JPEG files to caption.
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<PathBuf>,
    /// Beam search with W hypotheses instead of greedy decoding.
    #[arg(long, value_name = "W", value_parser = crate::ranges::at_least_one("--beam"))]
    beam: Option<usize>,
    /// Also write an HTML page of the images beside their captions.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// Runs a `seqlab caption` command.
pub fn run(cmd: CaptionCommand) -> anyhow::Result<()> {
    match cmd {
        CaptionCommand::Train(args) => train(*args),
        CaptionCommand::Eval(args) => eval(args),
        CaptionCommand::Run(args) => run_images(args),
    }
}

fn decoding(beam: Option<usize>) -> anyhow::Result<Decoding> {
    match beam {
        Some(0) => bail!("--beam must be at least 1"),
        Some(width) => Ok(Decoding::beam(width)),
        None => Ok(Decoding::GREEDY),
    }
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    // --threads first: before anything starts a worker thread.
    args.run.start()?;
    let mut model = CaptionerConfig {
        encoder: CnnConfig {
            image_size: args.image_size,
            channels: args.channels.clone(),
            ..CnnConfig::default()
        },
        inject: args.inject,
        attention: args.attention,
        coordinates: !args.no_coordinates && args.attention != AttentionKind::None,
        vocab_size: 0,
        embed: args.embed,
        ..CaptionerConfig::default()
    };
    set_stack!(args.stack, model);
    let config = CaptionTrainConfig {
        images: args
            .images
            .as_deref()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default(),
        captions: args.captions.display().to_string(),
        image_column: args.image_column,
        caption_column: args.caption_column,
        valid_fraction: args.valid_fraction,
        skip_bad_images: args.skip_bad_images,
        lowercase: !args.keep_case,
        min_freq: args.min_freq,
        max_vocab: args.max_vocab,
        batch: args.batch,
        max_words: args.max_words,
        optim: args.run.config()?,
    };
    let report = args.run.train(&model, &config)?;
    let out_dir = &args.run.out;
    let s = &report.summary;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "data: {} training images ({} captions), {} validation images, vocabulary {}",
        report.train_images, report.train_captions, report.valid_images, report.vocab_size
    )?;
    for (path, reason) in &report.skipped {
        writeln!(out, "skipped {}: {reason}", path.display())?;
    }
    if !report.skipped.is_empty() {
        writeln!(
            out,
            "skipped {} image(s) (--skip-bad-images)",
            report.skipped.len()
        )?;
    }
    print_summary(&mut out, s, report.parameters, CaptionPipeline::UNIT)?;
    if let Some((loss, step)) = s.best_valid {
        writeln!(
            out,
            "best validation loss {loss:.4} nats/word (perplexity {:.2}) at step {step}",
            loss.exp()
        )?;
    }
    if report.valid_images > 0 {
        let captioner = load_captioner(out_dir, &Device::Cpu)?;
        let scored = score(
            &captioner,
            Path::new(&config.images),
            Path::new(&config.captions),
            &Columns::new(),
            Split::Valid,
            Decoding::GREEDY,
            false,
        )?;
        writeln!(
            out,
            "validation images, greedy: {}",
            summary_line(&scored.evaluation)
        )?;
        if let Some((caption, base)) = &scored.baseline {
            writeln!(
                out,
                "baseline \"{caption}\" for every image: {}",
                summary_line(base)
            )?;
        }
    }
    writeln!(
        out,
        "model directory: {} (caption images: seqlab caption run --model {} IMAGE...)",
        out_dir.display(),
        out_dir.display()
    )?;
    Ok(())
}

fn summary_line(e: &CaptionEvaluation) -> String {
    format!(
        "BLEU-1 {:.1}, BLEU-2 {:.1}, BLEU-3 {:.1}, BLEU-4 {:.1}, exact match {:.1}% of {} images",
        e.bleu[0],
        e.bleu[1],
        e.bleu[2],
        e.bleu[3],
        100.0 * e.exact_match,
        e.images
    )
}

/// Captions and scores of one evaluation.
struct Scored {
    outputs: Vec<CaptionedOutput>,
    paths: Vec<PathBuf>,
    evaluation: CaptionEvaluation,
    skipped: Vec<(PathBuf, String)>,
    baseline: Option<(String, CaptionEvaluation)>,
}

/// Captions the images of `split` of a captions file and scores them; the baseline comes from the model's
/// own training captions when that file is still readable. A table is read by `columns` where they name a
/// column, else by the training run's.
fn score(
    captioner: &LoadedCaptioner,
    images: &Path,
    captions: &Path,
    columns: &Columns,
    split: Split,
    decoding: Decoding,
    skip_bad: bool,
) -> anyhow::Result<Scored> {
    let train = &captioner.config.train;
    // A hub split or parquet file reads as the captions.txt and images/ written out from it.
    let (captions_file, images_dir) = train.caption_files_of(
        &captions.display().to_string(),
        &images.display().to_string(),
        columns,
    )?;
    let (captions, images) = (captions_file.as_path(), images_dir.as_path());
    let all = read_captions(captions)?;
    let selected = split.select(&all, train)?;
    if selected.is_empty() {
        bail!("{} has no images in split {split:?}", captions.display());
    }
    let on_bad = if skip_bad {
        OnBadImage::Skip
    } else {
        OnBadImage::Fail
    };
    let loaded = load_images(images, &selected, &captioner.image_options(), on_bad)?;
    if loaded.items.is_empty() {
        bail!("no readable image in {}", images.display());
    }
    let generated = captioner.caption(&loaded.pixels, decoding, train.max_words)?;
    let outputs: Vec<CaptionedOutput> = loaded
        .items
        .iter()
        .zip(generated)
        .map(|(item, caption)| CaptionedOutput {
            image: item.image.clone(),
            caption,
            references: item.captions.clone(),
        })
        .collect();
    let evaluation = evaluate_captions(&outputs, train.lowercase);
    let baseline = training_captions(train).map(|train_captions| {
        let caption = baseline_caption(&train_captions, train.lowercase);
        let base: Vec<CaptionedOutput> = outputs
            .iter()
            .map(|o| CaptionedOutput {
                caption: caption.clone(),
                ..o.clone()
            })
            .collect();
        (caption, evaluate_captions(&base, train.lowercase))
    });
    Ok(Scored {
        paths: loaded.items.iter().map(|i| images.join(&i.image)).collect(),
        outputs,
        evaluation,
        skipped: loaded.skipped,
        baseline,
    })
}

/// The captions of the model's training images, when its training file is still readable.
fn training_captions(train: &CaptionTrainConfig) -> Option<Vec<String>> {
    let (file, _) = train.caption_files().ok()?;
    let all: Vec<CaptionedImage> = read_captions(&file).ok()?;
    let train_images = Split::Train.select(&all, train).ok()?;
    Some(train_images.into_iter().flat_map(|i| i.captions).collect())
}

fn write_report(
    path: &Path,
    title: &str,
    summary: &[String],
    paths: &[PathBuf],
    outputs: &[CaptionedOutput],
) -> anyhow::Result<()> {
    let html = html_report(title, summary, paths, outputs);
    write_bytes_atomically(path, html.as_bytes())
        .with_context(|| format!("cannot write the report {}", path.display()))
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let decoding = decoding(args.beam)?;
    let captions = args.captions.display().to_string();
    let images = match &args.images {
        Some(images) => images.clone(),
        None if is_labelled_table(&captions) => PathBuf::new(),
        None => bail!("--images DIR is needed with the captions file {captions} (only a hub split or a .parquet file holds its images)"),
    };
    let columns = Columns::new()
        .with("image", args.image_column)
        .with("caption", args.caption_column);
    let captioner = load_captioner(&args.model.model, &Device::Cpu)?;
    let scored = score(
        &captioner,
        &images,
        &args.captions,
        &columns,
        args.split,
        decoding,
        args.skip_bad_images,
    )?;
    let e = &scored.evaluation;
    if let Some(path) = &args.report {
        let mut summary = vec![format!("{}: {}", args.captions.display(), summary_line(e))];
        if let Some((caption, base)) = &scored.baseline {
            summary.push(format!("baseline \"{caption}\": {}", summary_line(base)));
        }
        write_report(
            path,
            &format!("seqlab captions: {}", args.model.model.display()),
            &summary,
            &scored.paths,
            &scored.outputs,
        )?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut json = serde_json::json!({
            "bleu1": e.bleu[0],
            "bleu2": e.bleu[1],
            "bleu3": e.bleu[2],
            "bleu4": e.bleu[3],
            "exact_match": e.exact_match,
            "bp": e.bp,
            "images": e.images,
            "skipped": scored.skipped.len(),
            "beam": args.beam.unwrap_or(1),
        });
        if let Some((caption, base)) = &scored.baseline {
            json["baseline"] = serde_json::json!({
                "caption": caption,
                "bleu1": base.bleu[0],
                "bleu2": base.bleu[1],
                "bleu3": base.bleu[2],
                "bleu4": base.bleu[3],
                "exact_match": base.exact_match,
            });
        }
        writeln!(out, "{json}")?;
        return Ok(());
    }
    for (path, reason) in &scored.skipped {
        writeln!(out, "skipped {}: {reason}", path.display())?;
    }
    for o in scored.outputs.iter().take(10) {
        writeln!(
            out,
            "{}: {}   (reference: {})",
            o.image,
            o.caption,
            o.references.first().map_or("", String::as_str)
        )?;
    }
    writeln!(out, "{}", summary_line(e))?;
    if let Some((caption, base)) = &scored.baseline {
        writeln!(
            out,
            "baseline \"{caption}\" for every image: {}",
            summary_line(base)
        )?;
    }
    if let Some(path) = &args.report {
        writeln!(out, "report: {}", path.display())?;
    }
    Ok(())
}

fn run_images(args: RunArgs) -> anyhow::Result<()> {
    let decoding = decoding(args.beam)?;
    let captioner = load_captioner(&args.model.model, &Device::Cpu)?;
    let mut pixels = Vec::with_capacity(args.images.len());
    for path in &args.images {
        pixels.push(captioner.load_image(path)?);
    }
    let captions = captioner.caption(&pixels, decoding, captioner.config.train.max_words)?;
    let mut out = std::io::stdout().lock();
    for (path, caption) in args.images.iter().zip(&captions) {
        writeln!(out, "{}\t{caption}", path.display())?;
    }
    if let Some(report) = &args.report {
        let outputs: Vec<CaptionedOutput> = args
            .images
            .iter()
            .zip(captions)
            .map(|(path, caption)| CaptionedOutput {
                image: path.display().to_string(),
                caption,
                references: Vec::new(),
            })
            .collect();
        write_report(
            report,
            &format!("seqlab captions: {}", args.model.model.display()),
            &[],
            &args.images,
            &outputs,
        )?;
    }
    Ok(())
}
