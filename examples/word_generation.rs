//! The lab: a word-level language model learns a book (*Alice's Adventures in Wonderland* when
//! `../shared/data` is there, else the default book), is compared with the unigram baseline, and writes
//! text from a prompt.
//!
//! Words are tokens here: the vocabulary is every word seen at least `--min-freq` times (rarer ones become
//! `<unk>`, which generation never produces), and the tokenizer puts spaces back by typographic rules.
//!
//! Run: `cargo run --release --example word_generation -- --minutes 3`

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Parser;
use seqlab::decode::Sampling;
use seqlab::models::LanguageModelConfig;
use seqlab::train::{load_lm, train_lm, Decoding, LmTrainConfig, LoopConfig, RunOptions};

const ALICE: &str = "../shared/data/text/alice29.txt";

#[derive(Parser, Debug)]
struct Args {
    /// Text files to learn; Alice (or the default book) when none is given.
    #[arg(long, num_args = 1..)]
    data: Vec<String>,
    /// The model directory (kept between runs: delete it to train again).
    #[arg(long, default_value = "runs/word_generation")]
    out: PathBuf,
    /// Training budget in minutes (training also stops after --epochs).
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    /// Passes over the text.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Keep words seen at least this often.
    #[arg(long, default_value_t = 2)]
    min_freq: usize,
    /// The text every sample starts from.
    #[arg(long, default_value = "Alice was")]
    prompt: String,
    /// Words per sample.
    #[arg(long, default_value_t = 60)]
    length: usize,
    /// Seed of training and sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    seqlab::cells::runtime::keep_freed_memory();
    let data = if args.data.is_empty() && Path::new(ALICE).is_file() {
        vec![ALICE.to_string()]
    } else {
        args.data.clone()
    };
    if !args.out.join("config.json").exists() {
        // Words carry more information than characters: a wider embedding, shorter sequences, more dropout
        // (a book has few words to learn from).
        let model = LanguageModelConfig {
            embed: 128,
            hidden: 256,
            dropout: 0.3,
            ..Default::default()
        };
        let config = LmTrainConfig {
            data,
            tokenizer: "word".into(),
            min_freq: args.min_freq,
            batch: 32,
            seq_len: 35,
            optim: LoopConfig {
                max_time: Some(args.minutes),
                epochs: Some(args.epochs),
                eval_every: 50,
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
        let unigram = report.unigram_valid_loss.unwrap_or(f64::NAN);
        println!(
            "trained on {} ({} words, vocabulary {}): {} steps",
            report.data, report.train_tokens, report.vocab_size, report.summary.steps
        );
        println!(
            "validation perplexity {:.1} at step {step}; a unigram model (word frequencies alone): {:.1}",
            loss.exp(),
            unigram.exp()
        );
    }
    let lm = load_lm(&args.out, &candle_core::Device::Cpu)?;
    for (name, sampling) in [
        ("greedy", Sampling::Greedy),
        ("temperature 0.8", Sampling::temperature(0.8)),
        (
            "temperature 1.0, top-p 0.9",
            Sampling::Sample {
                temperature: 1.0,
                top_k: None,
                top_p: Some(0.9),
            },
        ),
    ] {
        let decoding = Decoding::Sample {
            sampling,
            seed: args.seed,
        };
        let generated = lm.generate(&args.prompt, args.length, &decoding, |_| {})?;
        println!("\n--- {name} ---\n{}{}", args.prompt, generated.text);
    }
    Ok(())
}
