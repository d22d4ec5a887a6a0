//! News topics: a bidirectional GRU learns the five topics of the BBC news set (business, entertainment,
//! politics, sport, tech) from each article's title and first sentence, is measured on the held-out test
//! file, and labels a few headlines of our own.
//!
//! The data is AG News' layout (`"class","title","description"`, class from 1) with the class names in
//! `bbc-news-classes.txt`; any such CSV works (`--train`, `--test`, `--labels`).
//!
//! Run: `cargo run --release --example classify_news`

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Parser;
use seqlab::models::ClassifierConfig;
use seqlab::train::classify::{load_classifier, train_classifier, ClassifyTrainConfig};
use seqlab::train::{LoopConfig, RunOptions};

const DATA: &str = "../shared/data/classification";

#[derive(Parser, Debug)]
struct Args {
    /// Training CSV.
    #[arg(long, default_value_t = format!("{DATA}/bbc-news-train.csv"))]
    train: String,
    /// Test CSV, measured once at the end.
    #[arg(long, default_value_t = format!("{DATA}/bbc-news-test.csv"))]
    test: String,
    /// Class names, one per line.
    #[arg(long, default_value_t = format!("{DATA}/bbc-news-classes.txt"))]
    labels: String,
    /// The model directory (kept between runs: delete it to train again).
    #[arg(long, default_value = "runs/classify_news")]
    out: PathBuf,
    /// Passes over the training data.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Training budget in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seed of the weights, the dropout, the validation split and the batches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    seqlab::cells::runtime::configure();
    if !Path::new(&args.train).is_file() {
        bail!(
            "{} is missing: pass --train and --test (AG News CSV) and --labels",
            args.train
        );
    }
    if !args.out.join("config.json").exists() {
        // The library's defaults are the configuration measured in docs/classification.md: lowercase words
        // seen twice or more, embedding 128, one bidirectional GRU layer of 128 units, max pooling, dropout
        // 0.5, batch 32, AdamW at 2e-2 with weight decay 0.1; 10% of each class held out to keep the best
        // epoch.
        let config = ClassifyTrainConfig {
            data: args.train.clone(),
            labels: Some(args.labels.clone()),
            optim: LoopConfig {
                max_time: Some(args.minutes),
                epochs: Some(args.epochs),
                seed: args.seed,
                ..ClassifyTrainConfig::default().optim
            },
            ..ClassifyTrainConfig::default()
        };
        let options = RunOptions {
            progress: true,
            ..Default::default()
        };
        let report = train_classifier(&ClassifierConfig::default(), &config, &args.out, options)?;
        let s = &report.summary;
        println!(
            "trained on {} examples ({} held out for validation), vocabulary {}: {} steps in {:.1} s",
            report.train_examples, report.valid_examples, report.vocab_size, s.steps, s.elapsed_s
        );
        for r in &report.history {
            println!(
                "  step {:>4}: validation loss {:.4}, accuracy {:.4}",
                r.step, r.loss, r.accuracy
            );
        }
    }

    let classifier = load_classifier(&args.out, &seqlab::candle_core::Device::Cpu)?;
    let eval = classifier.evaluate_file(Path::new(&args.test), None, None)?;
    println!("\ntest set {}:\n{}", args.test, eval.metrics.report());

    let headlines = [
        "Shares slide as the central bank raises interest rates again",
        "Striker scores twice as United beat Chelsea in the cup",
        "New smartphone chip promises longer battery life",
        "Minister faces questions over election campaign spending",
        "Oscar nominations announced for this year's best film",
    ];
    let texts: Vec<String> = headlines.iter().map(|h| h.to_string()).collect();
    for (headline, p) in headlines.iter().zip(classifier.predict(&texts)?) {
        let best = (0..p.len())
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .unwrap_or(0);
        println!("{:<14} {:.3}  {headline}", classifier.labels[best], p[best]);
    }
    Ok(())
}
