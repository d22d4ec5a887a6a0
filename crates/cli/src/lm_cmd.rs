//! `seqlab lm train|generate|eval`: the language-model pipeline.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use seqlab_decode::Sampling;
use seqlab_models::LanguageModelConfig;
use seqlab_train::{load_lm, Decoding, LmPipeline, LmTrainConfig, Pipeline};

use crate::train_args::{print_summary, set_stack, Loop, ModelDirArg, Stack};

/// Train, sample or evaluate a recurrent language model.
#[derive(clap::Subcommand, Debug)]
pub enum LmCommand {
    /// Train a language model on text files (with no --data: a public-domain book that needs no download)
    /// and write a model directory.
    Train(Box<TrainArgs>),
    /// Generate text from a trained model, streamed as it is produced.
    Generate(GenerateArgs),
    /// Measure a model's loss, perplexity and bits per token on a text file.
    Eval(EvalArgs),
}

/// Arguments of `seqlab lm train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// UTF-8 text files, tables (.parquet, .csv, .tsv: their text column), hub files
    /// hf://datasets/OWNER/NAME[@REVISION]/FILE or hub splits hf://datasets/OWNER/NAME[:[CONFIG/]SPLIT]
    /// (see `seqlab data list`), joined in order. Without it, the default book (Around the World in 80
    /// Days, from the cargo registry).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    data: Vec<String>,
    /// A validation file or hub split; without it, the last --valid-fraction of the data.
    #[arg(long, value_name = "FILE")]
    valid: Option<String>,
    /// The column holding the text in tables and hub splits [default: the catalogue's, else text].
    #[arg(long, value_name = "NAME")]
    text_column: Option<String>,
    /// Tail of the data held out for validation when there is no --valid file.
    #[arg(long, value_name = "F", default_value_t = LmTrainConfig::default().valid_fraction, value_parser = crate::ranges::fraction("the validation share"))]
    valid_fraction: f64,
    /// char, word, or the path of a tokenizer.json.
    #[arg(long, value_name = "char|word|PATH", default_value_t = LmTrainConfig::default().tokenizer)]
    tokenizer: String,
    /// Lowercase the text (char and word tokenizers).
    #[arg(long)]
    lowercase: bool,
    /// Keep only tokens seen at least N times; the rest become <unk>.
    #[arg(long, value_name = "N", default_value_t = LmTrainConfig::default().min_freq)]
    min_freq: usize,
    /// Keep at most N tokens, the 4 special tokens included.
    #[arg(long, value_name = "N", value_parser = crate::ranges::vocabulary("--max-vocab"))]
    max_vocab: Option<usize>,
    #[command(flatten)]
    stack: Stack<LmPipeline>,
    /// Embedding width; 0 feeds one-hot vectors instead.
    #[arg(long, value_name = "N", default_value_t = LanguageModelConfig::default().embed)]
    embed: usize,
    /// DropConnect on the recurrent (hidden-to-hidden) weights, a fresh mask per batch, in training
    /// (AWD-LSTM's weight drop).
    #[arg(long, value_name = "P", default_value_t = LanguageModelConfig::default().weight_drop, value_parser = crate::ranges::probability("the weight drop"))]
    weight_drop: f32,
    /// Steps of backpropagation through time per batch.
    #[arg(long, value_name = "N", default_value_t = LmTrainConfig::default().seq_len, value_parser = crate::ranges::at_least_one("--seq-len"))]
    seq_len: usize,
    /// Parallel rows of the token stream.
    #[arg(long, value_name = "N", default_value_t = LmTrainConfig::default().batch, value_parser = crate::ranges::at_least_one("--batch"))]
    batch: usize,
    #[command(flatten)]
    run: Loop<LmPipeline>,
}

/// Arguments of `seqlab lm generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelDirArg<LmPipeline>,
    /// Text to continue; empty starts from <bos>. Characters or words the model does not know are read as
    /// <unk>.
    #[arg(long, value_name = "TEXT", default_value = "")]
    prompt: String,
    /// Tokens to generate (characters or words).
    #[arg(long, value_name = "N", default_value_t = 500)]
    length: usize,
    /// Always take the most likely token.
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p"])]
    greedy: bool,
    /// Sampling temperature: below 1 safer, above 1 wilder; 0 is greedy.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 0.8,
        allow_negative_numbers = true
    , value_parser = crate::ranges::non_negative("the temperature"))]
    temperature: f64,
    /// Sample only among the K most likely tokens.
    #[arg(long, value_name = "K", value_parser = crate::ranges::at_least_one("--top-k"))]
    top_k: Option<usize>,
    /// Sample only among the most likely tokens that make up probability P.
    #[arg(long, value_name = "P", value_parser = crate::ranges::mass("top-p"))]
    top_p: Option<f64>,
    /// Beam search with W hypotheses instead of sampling (prints the most probable continuation at the end).
    #[arg(long, value_name = "W", conflicts_with_all = ["greedy", "top_k", "top_p"], value_parser = crate::ranges::at_least_one("--beam"))]
    beam: Option<usize>,
    /// Seed of the sampling: the same seed gives the same text.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
}

/// Arguments of `seqlab lm eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelDirArg<LmPipeline>,
    /// The UTF-8 text file to measure.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Print one JSON object: {"loss", "perplexity", "bits_per_token", "tokens"}.
    #[arg(long)]
    json: bool,
    /// Parallel rows [default: one per 2,000 tokens, at most the model's training batch].
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--batch"))]
    batch: Option<usize>,
    /// Steps per batch [default: the model's training sequence length].
    #[arg(long, value_name = "N", value_parser = crate::ranges::at_least_one("--seq-len"))]
    seq_len: Option<usize>,
}

/// Runs a `seqlab lm` command.
pub fn run(cmd: LmCommand) -> anyhow::Result<()> {
    match cmd {
        LmCommand::Train(args) => train(*args),
        LmCommand::Generate(args) => generate_text(args),
        LmCommand::Eval(args) => eval(args),
    }
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    // --threads first: before anything starts a worker thread.
    args.run.start()?;
    let mut model = LanguageModelConfig {
        vocab_size: 0,
        embed: args.embed,
        weight_drop: args.weight_drop,
        ..LanguageModelConfig::default()
    };
    set_stack!(args.stack, model);
    let config = LmTrainConfig {
        data: args.data,
        valid: args.valid,
        text_column: args.text_column,
        valid_fraction: args.valid_fraction,
        tokenizer: args.tokenizer,
        lowercase: args.lowercase,
        min_freq: args.min_freq,
        max_vocab: args.max_vocab,
        batch: args.batch,
        seq_len: args.seq_len,
        optim: args.run.config()?,
    };
    let report = args.run.train(&model, &config)?;
    let out_dir = &args.run.out;
    let s = &report.summary;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "data: {} ({} training tokens, {} validation tokens, vocabulary {})",
        report.data, report.train_tokens, report.valid_tokens, report.vocab_size
    )?;
    print_summary(&mut out, s, report.parameters, LmPipeline::UNIT)?;
    if let Some((loss, step)) = s.best_valid {
        writeln!(
            out,
            "best validation loss {loss:.4} nats/token (perplexity {:.2}, {:.3} bits/token) at step {step}",
            loss.exp(),
            loss / std::f64::consts::LN_2
        )?;
    }
    if let Some(unigram) = report.unigram_valid_loss {
        writeln!(
            out,
            "baseline: a unigram model of the training text has validation loss {unigram:.4} (perplexity {:.2})",
            unigram.exp()
        )?;
    }
    writeln!(
        out,
        "model directory: {} (sample it: seqlab lm generate --model {})",
        out_dir.display(),
        out_dir.display()
    )?;
    Ok(())
}

fn generate_text(args: GenerateArgs) -> anyhow::Result<()> {
    let lm = load_lm(&args.model.model, &Device::Cpu)?;
    let decoding = match args.beam {
        Some(width) => Decoding::beam(width),
        None if args.greedy => Decoding::Sample {
            sampling: Sampling::Greedy,
            seed: args.seed,
        },
        None => Decoding::Sample {
            sampling: Sampling::Sample {
                temperature: args.temperature,
                top_k: args.top_k,
                top_p: args.top_p,
            },
            seed: args.seed,
        },
    };
    let mut out = std::io::stdout().lock();
    write!(out, "{}", args.prompt)?;
    out.flush()?;
    let mut write_error = None;
    let generated = lm.generate(&args.prompt, args.length, &decoding, |text| {
        if write_error.is_none() {
            if let Err(e) = write!(out, "{text}").and_then(|()| out.flush()) {
                write_error = Some(e);
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("cannot write to standard output");
    }
    writeln!(out)?;
    if generated.unknown_in_prompt > 0 {
        eprintln!(
            "note: {} token(s) of the prompt are not in the model's vocabulary; they were read as <unk>",
            generated.unknown_in_prompt
        );
    }
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let lm = load_lm(&args.model.model, &Device::Cpu)?;
    let text = seqlab_tokenize::read_text(&args.data)?;
    let result = lm
        .evaluate_text(&text, args.batch, args.seq_len)
        .with_context(|| {
            format!(
                "cannot evaluate {} on {}",
                args.model.model.display(),
                args.data.display()
            )
        })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::json!({
            "loss": result.loss,
            "perplexity": result.perplexity(),
            "bits_per_token": result.bits_per_token(),
            "tokens": result.tokens,
        });
        writeln!(out, "{json}")?;
    } else {
        writeln!(
            out,
            "loss {:.4} nats/token, perplexity {:.3}, {:.4} bits/token over {} tokens of {}",
            result.loss,
            result.perplexity(),
            result.bits_per_token(),
            result.tokens,
            args.data.display()
        )?;
    }
    Ok(())
}
