//! The translation pipeline end to end on a toy task (reverse a sentence and translate each word to its
//! capitalised twin): training reaches a high corpus BLEU of free-running decodes, beam search is at least as
//! good as greedy, an interrupted run resumes to the same weights, and bad input gives clear errors.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::Device;
use seqlab_models::{AttentionKind, Seq2SeqConfig};
use seqlab_train::translate::Decoding;
use seqlab_train::{
    load_translator, train_translator, LoopConfig, RunOptions, TranslateTrainConfig,
};

const WORDS: [&str; 8] = ["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen"];

/// `n` pairs "w1 w2 ... wk<TAB>Wk ... W2 W1" with `min` to `max` words from a fixed pseudo-random stream.
fn reverse_pairs(n: usize, seed: u64, min: usize, max: usize) -> String {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut text = String::new();
    for _ in 0..n {
        let len = min + next() % (max - min + 1);
        let words: Vec<&str> = (0..len).map(|_| WORDS[next() % WORDS.len()]).collect();
        let target: Vec<String> = words.iter().rev().map(|w| w.to_uppercase()).collect();
        text.push_str(&format!(
            "{}\t{}\tsource {}\n",
            words.join(" "),
            target.join(" "),
            next() % 100
        ));
    }
    text
}

fn write_data(dir: &Path, n: usize, min: usize, max: usize) -> PathBuf {
    let path = dir.join("pairs.tsv");
    std::fs::write(&path, reverse_pairs(n, 7, min, max)).unwrap();
    path
}

fn model(attention: AttentionKind) -> Seq2SeqConfig {
    Seq2SeqConfig {
        embed: 16,
        hidden: 32,
        attention,
        dropout: 0.0,
        ..Default::default()
    }
}

fn config(data: &Path, steps: usize) -> TranslateTrainConfig {
    TranslateTrainConfig {
        data: data.display().to_string(),
        valid_fraction: 0.1,
        min_freq: 1,
        batch: 32,
        optim: LoopConfig {
            steps: Some(steps),
            eval_every: 50,
            checkpoint_every: 50,
            lr: 1e-2,
            warmup: 20,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn reversal_trains_to_high_bleu_and_beam_is_at_least_greedy() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), 3000, 2, 6);
    let out = dir.path().join("model");
    let config = TranslateTrainConfig {
        valid_fraction: 0.02,
        ..config(&data, 400)
    };
    let report = train_translator(
        &model(AttentionKind::General),
        &config,
        &out,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!((report.train_pairs, report.valid_pairs), (2940, 60));
    for file in [
        "config.json",
        "tokenizer.source.json",
        "tokenizer.target.json",
        "model.safetensors",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let translator = load_translator(&out, &Device::Cpu).unwrap();
    let greedy = translator.evaluate_file(None, Decoding::GREEDY).unwrap();
    let beam = translator
        .evaluate_file(
            None,
            Decoding::Beam {
                width: 4,
                alpha: 0.6,
            },
        )
        .unwrap();
    assert_eq!(greedy.sentences, 60);
    assert!(
        greedy.bleu.score > 80.0,
        "greedy BLEU {}",
        greedy.bleu.score
    );
    assert!(
        beam.bleu.score >= greedy.bleu.score - 1.0,
        "beam {} < greedy {}",
        beam.bleu.score,
        greedy.bleu.score
    );

    let translations = translator
        .translate(&["cat dog hen".to_string()], Decoding::GREEDY)
        .unwrap();
    assert_eq!(translations[0].text, "HEN DOG CAT");
    assert_eq!(translations[0].source_tokens, ["cat", "dog", "hen"]);
    assert_eq!(
        translations[0].target_tokens,
        ["HEN", "DOG", "CAT", "<eos>"]
    );
    let attention = translations[0].attention.as_ref().unwrap();
    assert_eq!(attention.len(), 4);
    // One distribution over the three source tokens per output token.
    for row in attention {
        assert_eq!(row.len(), 3);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
    }

    // A source longer than the model reads is refused with the sentence's number.
    let long = vec!["cat ".repeat(150)];
    let error = translator
        .translate(&long, Decoding::GREEDY)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("sentence 1 has 150 source tokens, more than the 100"),
        "{error}"
    );
}

#[test]
fn without_attention_the_same_budget_learns_less() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), 600, 8, 14);
    let bleu = |attention| {
        let out = dir.path().join(format!("model-{attention}"));
        train_translator(
            &model(attention),
            &config(&data, 150),
            &out,
            RunOptions::default(),
        )
        .unwrap();
        let translator = load_translator(&out, &Device::Cpu).unwrap();
        translator
            .evaluate_file(None, Decoding::GREEDY)
            .unwrap()
            .bleu
            .score
    };
    let (with, without) = (bleu(AttentionKind::Additive), bleu(AttentionKind::None));
    assert!(with > without, "attention {with} vs none {without}");
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), 600, 2, 6);
    let full = dir.path().join("full");
    let cfg = config(&data, 60);
    let model = Seq2SeqConfig {
        dropout: 0.1,
        ..model(AttentionKind::Dot)
    };
    train_translator(&model, &cfg, &full, RunOptions::default()).unwrap();
    let parts = dir.path().join("parts");
    let mut stop = |step: usize| {
        if step == 50 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let options = RunOptions {
        on_step: Some(&mut stop),
        ..Default::default()
    };
    let first = train_translator(&model, &cfg, &parts, options).unwrap();
    assert_eq!(first.summary.steps, 50);
    let resumed = RunOptions {
        resume: true,
        ..Default::default()
    };
    let second = train_translator(&model, &cfg, &parts, resumed).unwrap();
    assert_eq!(second.summary.steps, 60);
    let weights = |dir: &Path| {
        candle_core::safetensors::load(dir.join("trainer/model.safetensors"), &Device::Cpu).unwrap()
    };
    let (a, b) = (weights(&full), weights(&parts));
    assert_eq!(a.len(), b.len());
    for (name, tensor) in &a {
        let x: Vec<f32> = tensor.flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = b[name].flatten_all().unwrap().to_vec1().unwrap();
        assert!(x == y, "{name} differs after resuming");
    }
    // Training again into the same directory without --resume is refused.
    let error = train_translator(&model, &cfg, &parts, RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("already holds a model"), "{error}");
}

#[test]
fn bad_lines_are_skipped_with_a_count_or_refused_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.tsv");
    let mut text = reverse_pairs(100, 3, 2, 6);
    text.push_str("no tab on this line\n\tempty source\nempty target\t \n");
    std::fs::write(&data, text).unwrap();
    let out = dir.path().join("model");
    let report = train_translator(
        &model(AttentionKind::None),
        &config(&data, 2),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.malformed, 3);
    assert_eq!(report.train_pairs + report.valid_pairs, 100);
    let strict = TranslateTrainConfig {
        strict: true,
        ..config(&data, 2)
    };
    let error = train_translator(
        &model(AttentionKind::None),
        &strict,
        &dir.path().join("strict"),
        RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("bad.tsv, line 101: no tab"), "{error}");
}
