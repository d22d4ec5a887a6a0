//! Many-to-many with an encoder and a decoder: an LSTM reads an English sentence, a second LSTM with
//! attention writes its Spanish translation.
//!
//! Trains on a `source<TAB>target` file (by default the Bible verses of `../shared/data/translation`, at most
//! 25 words a side, the last 5% held out), then reports corpus BLEU of greedy and beam-search translations of
//! the held-out verses, translates a few sentences and draws the attention of the first as an SVG heat map.
//!
//! Run: `cargo run --release --example translate` (2400 steps; `--steps 300` for a quick look)
//! (the model lands in `runs/translate/model`; a second run only evaluates it).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use seqlab::candle_core::Device;
use seqlab::models::{AttentionKind, Seq2SeqConfig};
use seqlab::train::translate::{attention_svg, Decoding};
use seqlab::train::{
    load_translator, train_translator, LoopConfig, RunOptions, TranslateTrainConfig,
};

#[derive(Parser, Debug)]
struct Args {
    /// The parallel file: source<TAB>target lines.
    #[arg(long, default_value = "../shared/data/translation/bible-en-es.tsv")]
    data: String,
    /// Where the model and the heat map go (the model is kept between runs: delete it to train again).
    #[arg(long, default_value = "runs/translate")]
    out: PathBuf,
    /// Attention: none, dot, general or additive.
    #[arg(long, default_value = "general")]
    attention: AttentionKind,
    /// Optimizer steps of 64 sentence pairs (2400: about 8 minutes on 2 cores).
    #[arg(long, default_value_t = 2400)]
    steps: usize,
    /// Training budget in minutes (training also stops after --steps).
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Beam width compared with greedy decoding.
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// Sentences to translate at the end.
    #[arg(long, num_args = 1.., default_values_t = [
        "And God said to Moses, I am Yahweh.".to_string(),
        "The king went up to the house of Yahweh.".to_string(),
    ])]
    sentences: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    seqlab::cells::runtime::configure();
    let model_dir = args.out.join("model");
    if !model_dir.join("config.json").is_file() {
        let model = Seq2SeqConfig {
            attention: args.attention,
            ..Seq2SeqConfig::default()
        };
        let config = TranslateTrainConfig {
            data: args.data.clone(),
            max_words: Some(25),
            max_vocab: Some(4000),
            optim: LoopConfig {
                max_time: Some(args.minutes),
                steps: Some(args.steps),
                eval_every: 200,
                ..TranslateTrainConfig::default().optim
            },
            ..TranslateTrainConfig::default()
        };
        let options = RunOptions {
            progress: true,
            ..RunOptions::default()
        };
        let report = train_translator(&model, &config, &model_dir, options)
            .with_context(|| format!("training on {}", args.data))?;
        println!(
            "trained {} steps in {:.1} min on {} pairs ({} held out); vocabulary {} / {}; {} parameters",
            report.summary.steps,
            report.summary.elapsed_s / 60.0,
            report.train_pairs,
            report.valid_pairs,
            report.vocab.0,
            report.vocab.1,
            report.parameters
        );
    }
    let translator = load_translator(&model_dir, &Device::Cpu)?;
    for decoding in [
        Decoding::GREEDY,
        Decoding::Beam {
            width: args.beam,
            alpha: 0.6,
        },
    ] {
        let eval = translator.evaluate_file(None, decoding)?;
        let b = &eval.bleu;
        let name = decoding.to_string();
        println!(
            "{name}: BLEU {:.2} ({:.1}/{:.1}/{:.1}/{:.1}, BP {:.3}) on {} held-out sentences",
            b.score,
            b.precisions[0],
            b.precisions[1],
            b.precisions[2],
            b.precisions[3],
            b.bp,
            eval.sentences
        );
    }
    let translations = translator.translate(
        &args.sentences,
        Decoding::Beam {
            width: args.beam,
            alpha: 0.6,
        },
    )?;
    for (source, t) in args.sentences.iter().zip(&translations) {
        println!("{source}\n  → {}", t.text);
    }
    if let Some((t, weights)) = translations
        .first()
        .and_then(|t| t.attention.as_ref().map(|w| (t, w)))
    {
        let path = args.out.join("attention.svg");
        std::fs::write(
            &path,
            attention_svg(&t.source_tokens, &t.target_tokens, weights),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        println!("attention of the first sentence: {}", path.display());
    }
    Ok(())
}
