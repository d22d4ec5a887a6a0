//! `seqlab lm train|generate|eval`: the language-model pipeline.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;
use seqlab_cells::CellKind;
use seqlab_decode::Sampling;
use seqlab_models::LanguageModelConfig;
use seqlab_train::{load_lm, train_lm, Decoding, LmTrainConfig, LoopConfig, Stopped};

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
    #[arg(long, value_name = "F", default_value_t = 0.1)]
    valid_fraction: f64,
    /// char, word, or the path of a tokenizer.json.
    #[arg(long, value_name = "char|word|PATH", default_value = "char")]
    tokenizer: String,
    /// Lowercase the text (char and word tokenizers).
    #[arg(long)]
    lowercase: bool,
    /// Keep only tokens seen at least N times; the rest become <unk>.
    #[arg(long, value_name = "N", default_value_t = 1)]
    min_freq: usize,
    /// Keep at most N tokens, the 4 special tokens included.
    #[arg(long, value_name = "N")]
    max_vocab: Option<usize>,
    /// Recurrent cell: lstm, gru, rnn (tanh) or rnn_relu.
    #[arg(long, value_name = "lstm|gru|rnn", default_value = "lstm")]
    cell: CellKind,
    /// Units per recurrent layer [default: 512].
    #[arg(long, value_name = "N")]
    hidden: Option<usize>,
    /// Recurrent layers [default: 1].
    #[arg(long, value_name = "N")]
    layers: Option<usize>,
    /// Embedding width; 0 feeds one-hot vectors instead [default: 64].
    #[arg(long, value_name = "N")]
    embed: Option<usize>,
    /// Dropout between layers and before the head, in training [default: 0.2].
    #[arg(long, value_name = "P")]
    dropout: Option<f32>,
    /// DropConnect on the recurrent (hidden-to-hidden) weights, a fresh mask per batch, in training
    /// (AWD-LSTM's weight drop) [default: 0].
    #[arg(long, value_name = "P")]
    weight_drop: Option<f32>,
    /// Steps of backpropagation through time per batch.
    #[arg(long, value_name = "N", default_value_t = 100)]
    seq_len: usize,
    /// Parallel rows of the token stream.
    #[arg(long, value_name = "N", default_value_t = 64)]
    batch: usize,
    /// Peak learning rate of AdamW.
    #[arg(long, value_name = "F", default_value_t = 2e-3)]
    lr: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, value_name = "F", default_value_t = 0.01)]
    weight_decay: f64,
    /// Largest gradient norm (0: no clipping).
    #[arg(long, value_name = "F", default_value_t = 5.0)]
    clip: f64,
    /// Warm-up steps of the learning rate.
    #[arg(long, value_name = "N", default_value_t = 50)]
    warmup: usize,
    /// Learning-rate schedule after the warm-up: cosine (down to 10%) or constant.
    #[arg(long, value_name = "cosine|constant", default_value = "cosine")]
    schedule: String,
    /// Passes over the training data [default: 20].
    #[arg(long, value_name = "N", conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Optimizer steps (instead of --epochs).
    #[arg(long, value_name = "N")]
    steps: Option<usize>,
    /// The model directory to write.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Continue the run in --out from its latest checkpoint, with its saved settings and data (of the flags
    /// above and below, only --steps, --epochs, --max-time, --threads and --skip-nonfinite apply).
    #[arg(long)]
    resume: bool,
    /// Seed of the initial weights, dropout and data order.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Stop cleanly after this many minutes (a decimal number), evaluating and saving first.
    #[arg(long, value_name = "MINUTES")]
    max_time: Option<f64>,
    /// Evaluate on the validation text every N steps.
    #[arg(long, value_name = "N", default_value_t = 100)]
    eval_every: usize,
    /// Write the resumable checkpoint every N steps.
    #[arg(long, value_name = "N", default_value_t = 500)]
    checkpoint_every: usize,
    /// Stop after N evaluations without a better validation loss.
    #[arg(long, value_name = "N")]
    patience: Option<usize>,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Skip a batch whose loss or gradient is NaN or infinite, instead of stopping the run.
    #[arg(long)]
    skip_nonfinite: bool,
    /// cpu (this build's only device).
    #[arg(long, value_name = "cpu|cuda", default_value = "cpu")]
    device: String,
}

/// Arguments of `seqlab lm generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A model directory written by `seqlab lm train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
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
    )]
    temperature: f64,
    /// Sample only among the K most likely tokens.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Sample only among the most likely tokens that make up probability P.
    #[arg(long, value_name = "P")]
    top_p: Option<f64>,
    /// Beam search with W hypotheses instead of sampling (prints the most probable continuation at the end).
    #[arg(long, value_name = "W", conflicts_with_all = ["greedy", "top_k", "top_p"])]
    beam: Option<usize>,
    /// Seed of the sampling: the same seed gives the same text.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
}

/// Arguments of `seqlab lm eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A model directory written by `seqlab lm train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The UTF-8 text file to measure.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Print one JSON object: {"loss", "perplexity", "bits_per_token", "tokens"}.
    #[arg(long)]
    json: bool,
    /// Parallel rows [default: one per 2,000 tokens, at most the model's training batch].
    #[arg(long, value_name = "N")]
    batch: Option<usize>,
    /// Steps per batch [default: the model's training sequence length].
    #[arg(long, value_name = "N")]
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
    crate::train_flags::start(args.threads, &args.device)?;
    let schedule = crate::train_flags::schedule(&args.schedule)?;
    let defaults = LanguageModelConfig::default();
    let model = LanguageModelConfig {
        vocab_size: 0,
        embed: args.embed.unwrap_or(defaults.embed),
        cell: args.cell,
        hidden: args.hidden.unwrap_or(defaults.hidden),
        layers: args.layers.unwrap_or(defaults.layers),
        dropout: args.dropout.unwrap_or(defaults.dropout),
        weight_drop: args.weight_drop.unwrap_or(defaults.weight_drop),
    };
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
        optim: LoopConfig {
            lr: args.lr,
            weight_decay: args.weight_decay,
            clip: args.clip,
            schedule,
            warmup: args.warmup,
            epochs: args.epochs,
            steps: args.steps,
            eval_every: args.eval_every,
            checkpoint_every: args.checkpoint_every,
            patience: args.patience,
            seed: args.seed,
            on_nonfinite: crate::train_flags::on_nonfinite(args.skip_nonfinite),
        },
    };
    let options = crate::train_flags::run_options(args.resume, args.max_time)?;
    let report = train_lm(&model, &config, &args.out, options)?;
    let s = &report.summary;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "data: {} ({} training tokens, {} validation tokens, vocabulary {})",
        report.data, report.train_tokens, report.valid_tokens, report.vocab_size
    )?;
    let how = match s.stopped {
        Stopped::Finished => "finished",
        Stopped::TimeBudget => "stopped at --max-time",
        Stopped::EarlyStopping => "stopped early (no better validation loss)",
        Stopped::Interrupted => "interrupted",
    };
    writeln!(
        out,
        "{how} at step {}/{} after {:.1} min ({:.0} tokens/s); {} parameters",
        s.steps,
        s.total_steps,
        s.elapsed_s / 60.0,
        s.tokens_per_s,
        report.parameters
    )?;
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
        args.out.display(),
        args.out.display()
    )?;
    Ok(())
}

fn generate_text(args: GenerateArgs) -> anyhow::Result<()> {
    let lm = load_lm(&args.model, &Device::Cpu)?;
    let decoding = match args.beam {
        Some(width) => Decoding::Beam { width },
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
    let lm = load_lm(&args.model, &Device::Cpu)?;
    let text = seqlab_tokenize::read_text(&args.data)?;
    let result = lm
        .evaluate_text(&text, args.batch, args.seq_len)
        .with_context(|| {
            format!(
                "cannot evaluate {} on {}",
                args.model.display(),
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
