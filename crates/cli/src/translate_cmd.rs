//! `seqlab translate train|eval|run`: the translation pipeline.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::Device;
use seqlab_data::Columns;
use seqlab_models::{AttentionKind, Seq2SeqConfig};
use seqlab_train::translate::{attention_svg, Decoding};
use seqlab_train::{load_translator, Pipeline, TranslatePipeline, TranslateTrainConfig};

use crate::train_args::{print_summary, set_stack, Loop, ModelDirArg, Stack};

/// Train, evaluate or run an encoder-decoder translator with attention.
#[derive(clap::Subcommand, Debug)]
pub enum TranslateCommand {
    /// Train a translator on a source<TAB>target file and write a model directory.
    Train(Box<TrainArgs>),
    /// Corpus BLEU of free-running translations (never teacher-forced) against the references.
    Eval(EvalArgs),
    /// Translate sentences given as arguments or in a file (one per line).
    Run(RunArgs),
}

/// Arguments of `seqlab translate train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The parallel file: source<TAB>target[<TAB>anything] lines (Tatoeba / Anki layout), a .parquet file
    /// or a hub split hf://datasets/OWNER/NAME[@REVISION][:SPLIT] (see `seqlab data list`).
    #[arg(long, value_name = "FILE")]
    data: String,
    /// A validation file of the same layout; without it, the last --valid-fraction of the pairs.
    #[arg(long, value_name = "FILE")]
    valid: Option<String>,
    /// The column holding the source sentence in tables (hub splits, .parquet files; a.b is field b of
    /// struct column a) [default: the catalogue's, else source].
    #[arg(long, value_name = "NAME")]
    source_column: Option<String>,
    /// The column holding the target sentence in tables [default: the catalogue's, else target].
    #[arg(long, value_name = "NAME")]
    target_column: Option<String>,
    /// Tail of the pairs held out for validation (and for `translate eval` without --data).
    #[arg(long, value_name = "F", default_value_t = TranslateTrainConfig::default().valid_fraction, value_parser = crate::ranges::fraction("the validation share"))]
    valid_fraction: f64,
    /// Translate from the second column to the first.
    #[arg(long)]
    reverse: bool,
    /// Leave out pairs with a side of more than N words.
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--max-words"))]
    max_words: Option<usize>,
    /// Stop at a line with no tab or an empty side instead of skipping it.
    #[arg(long)]
    strict: bool,
    /// word or char (each side gets its own vocabulary).
    #[arg(long, value_name = "word|char", default_value_t = TranslateTrainConfig::default().tokenizer)]
    tokenizer: String,
    /// Lowercase both sides.
    #[arg(long)]
    lowercase: bool,
    /// Keep only tokens seen at least N times; the rest become <unk>.
    #[arg(long, value_name = "N", default_value_t = TranslateTrainConfig::default().min_freq)]
    min_freq: usize,
    /// Keep at most N tokens per side, the 4 special tokens included.
    #[arg(long, value_name = "N", value_parser = crate::ranges::vocabulary("--max-vocab"))]
    max_vocab: Option<usize>,
    /// The longest source the model reads, in tokens; longer input to eval and run is an error.
    #[arg(long, value_name = "N", default_value_t = TranslateTrainConfig::default().max_source_tokens, value_parser = crate::ranges::at_least_one("--max-source-tokens"))]
    max_source_tokens: usize,
    /// The longest target, in tokens; decoding stops there.
    #[arg(long, value_name = "N", default_value_t = TranslateTrainConfig::default().max_target_tokens, value_parser = crate::ranges::at_least_one("--max-target-tokens"))]
    max_target_tokens: usize,
    #[command(flatten)]
    stack: Stack<TranslatePipeline>,
    /// Embedding width of both sides.
    #[arg(long, value_name = "N", default_value_t = Seq2SeqConfig::default().embed, value_parser = crate::ranges::at_least_one("--embed"))]
    embed: usize,
    /// Read the source in both directions.
    #[arg(long)]
    bidirectional: bool,
    /// Attention over the source: none, dot, general (Luong) or additive (Bahdanau's score).
    #[arg(
        long,
        value_name = "none|dot|general|additive",
        default_value = "general"
    )]
    attention: AttentionKind,
    /// Feed the previous attentional output to the decoder (Luong's input feeding; slower training).
    #[arg(long)]
    input_feeding: bool,
    /// Probability of feeding the reference token at each decoder step in training (1: teacher forcing).
    #[arg(long, value_name = "P", default_value_t = TranslateTrainConfig::default().teacher_forcing, value_parser = crate::ranges::unit_interval("the teacher-forcing probability"))]
    teacher_forcing: f64,
    /// Sentence pairs per batch.
    #[arg(long, value_name = "N", default_value_t = TranslateTrainConfig::default().batch, value_parser = crate::ranges::at_least_one("--batch"))]
    batch: usize,
    #[command(flatten)]
    run: Loop<TranslatePipeline>,
}

/// How `eval` and `run` decode.
#[derive(clap::Args, Debug)]
pub struct DecodeArgs {
    /// Beam search with W hypotheses (1 is greedy); without it, greedy decoding.
    #[arg(long, value_name = "W", value_parser = crate::ranges::at_least_one("--beam"))]
    beam: Option<usize>,
    /// Length-penalty exponent of beam search (GNMT's alpha; 0 ranks by raw log-probability).
    #[arg(long, value_name = "F", default_value_t = 0.6, value_parser = crate::ranges::non_negative("the length penalty alpha"))]
    alpha: f64,
}

impl DecodeArgs {
    fn decoding(&self) -> anyhow::Result<Decoding> {
        match self.beam {
            None => Ok(Decoding::GREEDY),
            Some(0) => bail!("--beam must be at least 1"),
            Some(width) => Ok(Decoding::Beam {
                width,
                alpha: self.alpha,
            }),
        }
    }
}

/// Arguments of `seqlab translate eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelDirArg<TranslatePipeline>,
    /// A source<TAB>target file, a .parquet file or a hub split; without it, the held-out pairs of the
    /// model's training data.
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// The column holding the source sentence in tables [default: as in training, else the catalogue's,
    /// else source].
    #[arg(long, value_name = "NAME")]
    source_column: Option<String>,
    /// The column holding the target sentence in tables [default: as in training, else the catalogue's,
    /// else target].
    #[arg(long, value_name = "NAME")]
    target_column: Option<String>,
    #[command(flatten)]
    decode: DecodeArgs,
    /// Print one JSON object: {"bleu", "bp", "precisions", "sys_len", "ref_len", "sentences", "decoding"}.
    #[arg(long)]
    json: bool,
    /// Write the translations to FILE, one per line (for `seqlab bleu`).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Arguments of `seqlab translate run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelDirArg<TranslatePipeline>,
    /// Sentences to translate.
    #[arg(value_name = "TEXT", conflicts_with = "input")]
    text: Vec<String>,
    /// A UTF-8 file of sentences, one per line.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    #[command(flatten)]
    decode: DecodeArgs,
    /// Write the attention of the first sentence as an SVG heat map to FILE (source tokens along the top,
    /// target tokens down the side); sentence k > 1 goes to FILE-k.svg.
    #[arg(long, value_name = "FILE")]
    plot_attention: Option<PathBuf>,
}

/// Runs a `seqlab translate` command.
pub fn run(cmd: TranslateCommand) -> anyhow::Result<()> {
    match cmd {
        TranslateCommand::Train(args) => train(*args),
        TranslateCommand::Eval(args) => eval(args),
        TranslateCommand::Run(args) => translate(args),
    }
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    // --threads first: before anything starts a worker thread.
    args.run.start()?;
    let mut model = Seq2SeqConfig {
        source_vocab: 0,
        target_vocab: 0,
        embed: args.embed,
        bidirectional: args.bidirectional,
        attention: args.attention,
        input_feeding: args.input_feeding,
        ..Seq2SeqConfig::default()
    };
    set_stack!(args.stack, model);
    let config = TranslateTrainConfig {
        data: args.data,
        valid: args.valid,
        valid_fraction: args.valid_fraction,
        source_column: args.source_column,
        target_column: args.target_column,
        reverse: args.reverse,
        max_words: args.max_words,
        strict: args.strict,
        tokenizer: args.tokenizer,
        lowercase: args.lowercase,
        min_freq: args.min_freq,
        max_vocab: args.max_vocab,
        max_source_tokens: args.max_source_tokens,
        max_target_tokens: args.max_target_tokens,
        batch: args.batch,
        teacher_forcing: args.teacher_forcing,
        optim: args.run.config()?,
    };
    let report = args.run.train(&model, &config)?;
    let out_dir = &args.run.out;
    let s = &report.summary;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "data: {} training pairs, {} validation pairs; {} malformed lines skipped, {} pairs too long left out; \
         vocabulary {} source / {} target",
        report.train_pairs, report.valid_pairs, report.malformed, report.too_long, report.vocab.0, report.vocab.1
    )?;
    print_summary(&mut out, s, report.parameters, TranslatePipeline::UNIT)?;
    if let Some((loss, step)) = s.best_valid {
        writeln!(
            out,
            "best validation loss {loss:.4} nats/token (perplexity {:.2}) at step {step}",
            loss.exp()
        )?;
    }
    writeln!(
        out,
        "model directory: {} (measure it: seqlab translate eval --model {})",
        out_dir.display(),
        out_dir.display()
    )?;
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let decoding = args.decode.decoding()?;
    let translator = load_translator(&args.model.model, &Device::Cpu)?;
    let columns = Columns::new()
        .with("source", args.source_column)
        .with("target", args.target_column);
    let result = translator.evaluate_file_with_columns(args.data.as_deref(), decoding, &columns)?;
    if let Some(path) = &args.output {
        let text: String = result.hypotheses.iter().map(|h| format!("{h}\n")).collect();
        seqlab_train::write_bytes_atomically(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let bleu = &result.bleu;
    let decoding_name = decoding.to_string();
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::json!({
            "bleu": bleu.score,
            "bp": bleu.bp,
            "precisions": bleu.precisions,
            "sys_len": bleu.sys_len,
            "ref_len": bleu.ref_len,
            "sentences": result.sentences,
            "decoding": decoding_name,
        });
        writeln!(out, "{json}")?;
    } else {
        let precisions: Vec<String> = bleu.precisions.iter().map(|p| format!("{p:.1}")).collect();
        writeln!(
            out,
            "BLEU = {:.2} {} (BP = {:.3} hyp_len = {} ref_len = {}) on {} sentences, {decoding_name}",
            bleu.score,
            precisions.join("/"),
            bleu.bp,
            bleu.sys_len,
            bleu.ref_len,
            result.sentences
        )?;
    }
    Ok(())
}

fn read_sentences(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = seqlab_tokenize::read_text(path)?;
    Ok(text.lines().map(str::to_string).collect())
}

fn translate(args: RunArgs) -> anyhow::Result<()> {
    let decoding = args.decode.decoding()?;
    let sentences = match &args.input {
        Some(path) => read_sentences(path)?,
        None if args.text.is_empty() => {
            bail!("give sentences to translate as arguments or with --input FILE")
        }
        None => args.text.clone(),
    };
    let translator = load_translator(&args.model.model, &Device::Cpu)?;
    let translations = translator.translate(&sentences, decoding)?;
    let mut out = std::io::stdout().lock();
    for t in &translations {
        writeln!(out, "{}", t.text)?;
    }
    if let Some(path) = &args.plot_attention {
        for (k, t) in translations.iter().enumerate() {
            let Some(weights) = &t.attention else {
                bail!(
                    "{} has no attention (it was trained with --attention none); there is nothing to plot",
                    args.model.model.display()
                );
            };
            let file = if k == 0 {
                path.clone()
            } else {
                let stem = path.with_extension("");
                PathBuf::from(format!("{}-{}.svg", stem.display(), k + 1))
            };
            let svg = attention_svg(&t.source_tokens, &t.target_tokens, weights);
            seqlab_train::write_bytes_atomically(&file, svg.as_bytes())
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
    }
    Ok(())
}
