//! The lesson: a character-level LSTM reads a book one character at a time (one-hot input, as in the
//! lesson), then writes text greedily and at temperatures 0.3, 0.8, 1.0 and 1.3.
//!
//! Greedy decoding always takes the most likely character and soon loops; a low temperature is safe and
//! repetitive, 1.0 is the model's own distribution, a high one invents words.
//!
//! Run: `cargo run --release --example char_generation -- --minutes 2`
//! (no `--data`: *Around the World in 80 Days*, from the cargo registry; the model lands in
//! `runs/char_generation`, and a second run only samples it).

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use seqlab::decode::Sampling;
use seqlab::models::LanguageModelConfig;
use seqlab::train::{load_lm, train_lm, Decoding, LmTrainConfig, LoopConfig, RunOptions};

#[derive(Parser, Debug)]
struct Args {
    /// Text files to learn; the default book when none is given.
    #[arg(long, num_args = 1..)]
    data: Vec<String>,
    /// The model directory (kept between runs: delete it to train again).
    #[arg(long, default_value = "runs/char_generation")]
    out: PathBuf,
    /// Training budget in minutes (training also stops after --epochs).
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// Passes over the text.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// LSTM units.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Embedding width; 0 is one-hot input, as in the lesson.
    #[arg(long, default_value_t = 0)]
    embed: usize,
    /// The text every sample starts from.
    #[arg(long, default_value = "The ")]
    prompt: String,
    /// Characters per sample.
    #[arg(long, default_value_t = 200)]
    length: usize,
    /// Seed of training and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    seqlab::cells::runtime::keep_freed_memory();
    if !args.out.join("config.json").exists() {
        let model = LanguageModelConfig {
            embed: args.embed,
            hidden: args.hidden,
            dropout: 0.1,
            ..Default::default()
        };
        let config = LmTrainConfig {
            data: args.data.clone(),
            tokenizer: "char".into(),
            optim: LoopConfig {
                max_time: Some(args.minutes),
                epochs: Some(args.epochs),
                seed: args.seed,
                ..Default::default()
            },
            ..Default::default()
        };
        let options = RunOptions {
            progress: true,
            ..Default::default()
        };
        let report = train_lm(&model, &config, &args.out, options)?;
        let (loss, step) = report.summary.best_valid.unwrap_or((f64::NAN, 0));
        println!(
            "trained on {}: {} steps, {:.0} characters/s; best validation loss {loss:.3} nats/char at step {step} \
             (a unigram model: {:.3})",
            report.data,
            report.summary.steps,
            report.summary.tokens_per_s,
            report.unigram_valid_loss.unwrap_or(f64::NAN)
        );
    }
    let lm = load_lm(&args.out, &candle_core::Device::Cpu)?;
    let rules = [
        ("greedy", Sampling::Greedy),
        ("temperature 0.3", Sampling::temperature(0.3)),
        ("temperature 0.8", Sampling::temperature(0.8)),
        ("temperature 1.0", Sampling::temperature(1.0)),
        ("temperature 1.3", Sampling::temperature(1.3)),
    ];
    for (name, sampling) in rules {
        let decoding = Decoding::Sample {
            sampling,
            seed: args.seed,
        };
        let generated = lm.generate(&args.prompt, args.length, &decoding, |_| {})?;
        println!("\n--- {name} ---\n{}{}", args.prompt, generated.text);
    }
    Ok(())
}
