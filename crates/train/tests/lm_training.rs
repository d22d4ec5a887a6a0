//! The language-model pipeline through the library: training lowers the loss, a seed fixes the run, an
//! interrupted and resumed run ends with the same weights, and bad model directories are one-line errors.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use candle_core::{Device, Tensor};
use seqlab_cells::CellKind;
use seqlab_models::LanguageModelConfig;
use seqlab_train::checkpoint::{load_checkpoint, load_tensors};
use seqlab_train::metrics::read_metrics;
use seqlab_train::{load_lm, train_lm, Error, LmTrainConfig, LoopConfig, RunOptions, Stopped};

/// A small text of our own with enough structure for a tiny model to learn within a few dozen steps.
fn write_text(dir: &Path) -> String {
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(
            [
                "the cat sat on the mat. ",
                "a dog ran to the log. ",
                "the bird sang in the tree.\n",
            ][i % 3],
        );
    }
    let path = dir.join("text.txt");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn model(cell: CellKind, dropout: f32) -> LanguageModelConfig {
    LanguageModelConfig {
        embed: 8,
        hidden: 16,
        cell,
        layers: 1,
        dropout,
        ..Default::default()
    }
}

fn config(data: String, steps: usize) -> LmTrainConfig {
    LmTrainConfig {
        data: vec![data],
        batch: 4,
        seq_len: 12,
        optim: LoopConfig {
            steps: Some(steps),
            eval_every: 7,
            checkpoint_every: 5,
            lr: 1e-2,
            warmup: 5,
            seed: 11,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An `on_step` callback that interrupts the run after step `stop_at`.
fn interrupt_at(stop_at: usize) -> impl FnMut(usize) -> ControlFlow<()> {
    move |step| {
        if step == stop_at {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn weights(path: &Path) -> HashMap<String, Vec<f32>> {
    load_tensors(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(name, t): (String, Tensor)| {
            (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect()
}

#[test]
fn a_tiny_model_learns_the_text() {
    for cell in [CellKind::Gru, CellKind::Xlstm] {
        learns_the_text(cell);
    }
}

fn learns_the_text(cell: CellKind) {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("lm");
    let report = train_lm(
        &LanguageModelConfig {
            layers: 2,
            ..model(cell, 0.0)
        },
        &config(data, 60),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.summary.stopped, Stopped::Finished);
    let rows = read_metrics(&out.join("metrics.csv")).unwrap();
    let valid: Vec<f64> = rows
        .iter()
        .filter(|r| r.split == "valid")
        .map(|r| r.loss)
        .collect();
    let uniform = (report.vocab_size as f64).ln();
    assert!(valid[0] < uniform + 0.5, "{valid:?}");
    let last = *valid.last().unwrap();
    assert!(
        last < valid[0] - 0.5 && last < 0.7 * uniform,
        "{cell}: the validation loss did not fall well below the uniform guess {uniform}: {valid:?}"
    );
    let (best, _) = report.summary.best_valid.unwrap();
    // model.safetensors holds the best checkpoint: evaluating it on the validation text gives the best loss.
    let lm = load_lm(&out, &Device::Cpu).unwrap();
    assert_eq!(lm.config.model.vocab_size, report.vocab_size);
    assert!((best - valid.iter().cloned().fold(f64::INFINITY, f64::min)).abs() < 1e-5);
    for file in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "metrics.csv",
        "loss.svg",
        "trainer/state.json",
    ] {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
}

#[test]
fn the_same_seed_gives_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let run = |name: &str, seed: u64| {
        let out = dir.path().join(name);
        let mut config = config(data.clone(), 8);
        config.optim.seed = seed;
        train_lm(
            &model(CellKind::Lstm, 0.3),
            &config,
            &out,
            RunOptions::default(),
        )
        .unwrap();
        weights(&out.join("trainer/model.safetensors"))
    };
    let a = run("a", 1);
    assert_eq!(a, run("b", 1));
    assert_ne!(a, run("c", 2));
}

/// Trains 30 steps in one go, and the same run interrupted after `stop_at(batches_per_epoch)` steps and
/// resumed, and checks that both end with the same weights, optimizer moments and validation losses. With
/// two layers the dropout between them is on too (its masks are seeded like every other draw).
fn resume_is_exact(cell: CellKind, layers: usize, stop_at: impl Fn(usize) -> usize) {
    let steps = 30;
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let model = LanguageModelConfig {
        layers,
        ..model(cell, 0.25)
    };
    let config = config(data, steps);

    let whole = dir.path().join("whole");
    train_lm(&model, &config, &whole, RunOptions::default()).unwrap();
    let a = load_checkpoint(&whole, &Device::Cpu).unwrap();
    assert_eq!(a.state.epoch, 1, "the run should cross one epoch boundary");
    let stop_at = stop_at(steps - a.state.batch_in_epoch);

    let parts = dir.path().join("parts");
    let mut interrupt = interrupt_at(stop_at);
    let options = RunOptions {
        on_step: Some(&mut interrupt),
        ..Default::default()
    };
    let first = train_lm(&model, &config, &parts, options).unwrap();
    assert_eq!(first.summary.stopped, Stopped::Interrupted);
    assert_eq!(first.summary.steps, stop_at);
    let resume = RunOptions {
        resume: true,
        ..Default::default()
    };
    let second = train_lm(&model, &config, &parts, resume).unwrap();
    assert_eq!(second.summary.steps, steps);
    assert_eq!(second.summary.stopped, Stopped::Finished);

    let b = load_checkpoint(&parts, &Device::Cpu).unwrap();
    assert_eq!((a.state.step, a.state.epoch), (b.state.step, b.state.epoch));
    for file in ["model.safetensors", "optimizer.safetensors"] {
        assert_eq!(
            weights(&whole.join("trainer").join(file)),
            weights(&parts.join("trainer").join(file)),
            "trainer/{file} differs"
        );
    }
    // The same validation losses at the same steps (the interruption adds an evaluation at `stop_at`).
    let valid = |dir: &Path| -> Vec<(usize, f64)> {
        read_metrics(&dir.join("metrics.csv"))
            .unwrap()
            .into_iter()
            .filter(|r| r.split == "valid" && (r.step != stop_at || r.step % 7 == 0))
            .map(|r| (r.step, r.loss))
            .collect()
    };
    assert_eq!(valid(&whole), valid(&parts));
}

#[test]
fn resume_after_an_interruption_mid_epoch_ends_with_the_same_weights() {
    // Step 13 lies inside the first epoch: the recurrent state carried into step 14 comes from the
    // checkpoint, and the resumed run crosses into the second epoch (a new data offset) itself.
    resume_is_exact(CellKind::Lstm, 1, |_| 13);
}

#[test]
fn resume_at_an_epoch_boundary_ends_with_the_same_weights() {
    resume_is_exact(CellKind::Gru, 2, |batches_per_epoch| batches_per_epoch);
}

#[test]
fn an_xlstm_run_resumes_exactly_mid_epoch() {
    // Blocks m, s: the carried state holds both kinds' memories (the mLSTM's matrix memory, the sLSTM's
    // normaliser and stabiliser, both convolution windows).
    resume_is_exact(CellKind::Xlstm, 2, |_| 13);
}

#[test]
fn resume_without_a_checkpoint_and_training_over_a_model_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("lm");
    let error = train_lm(
        &model(CellKind::Rnn, 0.0),
        &config(data.clone(), 3),
        &out,
        RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("not a model directory"),
        "{error}"
    );
    train_lm(
        &model(CellKind::Rnn, 0.0),
        &config(data.clone(), 3),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    let error = train_lm(
        &model(CellKind::Rnn, 0.0),
        &config(data, 3),
        &out,
        RunOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(error, Error::OutputExists { .. }), "{error:?}");
    assert!(error.to_string().contains("--resume"), "{error}");
}

#[test]
fn bad_model_directories_are_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("lm");
    train_lm(
        &model(CellKind::Lstm, 0.0),
        &config(data, 2),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    let config_path = out.join("config.json");
    let original = std::fs::read_to_string(&config_path).unwrap();
    let expect = |needles: &[&str]| {
        let error = load_lm(&out, &Device::Cpu).unwrap_err().to_string();
        assert!(!error.contains('\n'), "{error}");
        for needle in needles {
            assert!(error.contains(needle), "{error:?} lacks {needle:?}");
        }
    };
    std::fs::write(
        &config_path,
        original.replace("\"task\": \"lm\"", "\"task\": \"classify\""),
    )
    .unwrap();
    expect(&["config.json", "classify"]);
    std::fs::write(&config_path, original.replace("seqlab/1", "seqlab/9")).unwrap();
    expect(&["config.json", "seqlab/9"]);
    std::fs::write(&config_path, "{not json").unwrap();
    expect(&["config.json", "not a valid"]);
    std::fs::write(
        &config_path,
        original.replace("\"vocab_size\": ", "\"vocab_size\": 1"),
    )
    .unwrap();
    expect(&["tokenizer.json", "tokens"]);
    std::fs::write(&config_path, &original).unwrap();
    // A weights file with a misshaped head.weight, then one without head.bias.
    let mut tensors = load_tensors(&out.join("model.safetensors"), &Device::Cpu).unwrap();
    let good_head = tensors["head.weight"].clone();
    tensors.insert(
        "head.weight".to_string(),
        Tensor::zeros((3, 5), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, out.join("model.safetensors")).unwrap();
    expect(&["model.safetensors", "head.weight", "shape"]);
    tensors.insert("head.weight".to_string(), good_head);
    tensors.remove("head.bias");
    candle_core::safetensors::save(&tensors, out.join("model.safetensors")).unwrap();
    expect(&["model.safetensors", "head.bias"]);
    std::fs::remove_file(out.join("model.safetensors")).unwrap();
    expect(&["model.safetensors"]);
    expect_missing_dir(&dir.path().join("nowhere"));
}

fn expect_missing_dir(path: &Path) {
    let error = load_lm(path, &Device::Cpu).unwrap_err().to_string();
    assert!(
        error.contains("nowhere") && error.contains("not a model directory"),
        "{error}"
    );
}

#[test]
fn resume_after_the_data_file_changed_is_an_error_naming_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("lm");
    train_lm(
        &model(CellKind::Gru, 0.0),
        &config(data.clone(), 3),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    std::fs::write(
        &data,
        "another text entirely, with other words.\n".repeat(30),
    )
    .unwrap();
    let error = train_lm(
        &model(CellKind::Gru, 0.0),
        &config(data, 6),
        &out,
        RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::ResumeMismatch(_)), "{error:?}");
    assert!(message.contains("training data differs"), "{message}");
    assert!(message.contains(&out.display().to_string()), "{message}");
}

/// The settings of a run that its time budget alone ends: `minutes`, no step or epoch limit.
fn budget_config(data: String, minutes: f64) -> LmTrainConfig {
    let mut config = config(data, 1);
    config.optim.steps = None;
    config.optim.max_time = Some(minutes);
    config.optim.eval_every = 20;
    config.optim.checkpoint_every = 20;
    config
}

/// The cosine schedule's learning rate at `progress` of the decay (peak 1e-2, floor 10%).
fn cosine_at(progress: f64) -> f64 {
    let (peak, floor) = (1e-2, 1e-3);
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos())
}

/// Every `train` row after the warm-up has the learning rate of its elapsed fraction of the budget: the
/// step's rate is computed as it starts, so at most a step's time before the row's time (printed to 10 ms).
fn assert_follows_the_budget(rows: &[seqlab_train::metrics::MetricsRow], budget_s: f64) {
    let train: Vec<_> = rows
        .iter()
        .filter(|r| r.split == "train" && r.step > 5)
        .collect();
    assert!(train.len() >= 3, "too few evaluations: {rows:?}");
    for row in &train {
        let p = row.elapsed_s / budget_s;
        let (low, high) = (cosine_at(p + 0.01), cosine_at(p - 0.1));
        assert!(
            row.lr >= low * 0.995 && row.lr <= high * 1.005,
            "step {} at {:.2} s of {budget_s} s: lr {} outside [{low}, {high}]",
            row.step,
            row.elapsed_s,
            row.lr
        );
    }
    for pair in train.windows(2) {
        assert!(pair[1].lr <= pair[0].lr, "the rate rose: {pair:?}");
    }
}

#[test]
fn a_time_budget_anneals_the_learning_rate_over_the_time_and_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("lm");
    let minutes = 0.04; // 2.4 s
    let report = train_lm(
        &model(CellKind::Lstm, 0.0),
        &budget_config(data, minutes),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    let s = &report.summary;
    assert_eq!(s.stopped, Stopped::TimeBudget);
    assert_eq!(s.total_steps, None, "the budget alone sets the length");
    assert!(s.steps > 40, "{s:?}");
    assert!(s.elapsed_s >= 2.4 && s.elapsed_s < 4.0, "{s:?}");
    let rows = read_metrics(&out.join("metrics.csv")).unwrap();
    assert_follows_the_budget(&rows, 2.4);
    // The last step ran at the floor: its progress was within a step of the budget's end.
    let last = rows.iter().rev().find(|r| r.split == "train").unwrap();
    assert_eq!(last.step, s.steps);
    assert!(last.lr < 1e-3 * 1.02, "{last:?}");
}

#[test]
fn a_resumed_run_keeps_its_time_budget_and_a_spent_one_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_text(dir.path());
    let out = dir.path().join("lm");
    let model = model(CellKind::Gru, 0.0);
    let config = budget_config(data, 0.04);
    let mut interrupt = interrupt_at(30);
    let options = RunOptions {
        on_step: Some(&mut interrupt),
        ..Default::default()
    };
    let first = train_lm(&model, &config, &out, options).unwrap();
    assert_eq!(first.summary.stopped, Stopped::Interrupted);
    let resume = || RunOptions {
        resume: true,
        ..Default::default()
    };
    // The resumed invocation trains for what is left of the 2.4 s, not 2.4 s more.
    let second = train_lm(&model, &config, &out, resume()).unwrap();
    assert_eq!(second.summary.stopped, Stopped::TimeBudget);
    assert!(second.summary.steps > 30);
    let total = second.summary.elapsed_s;
    assert!((2.4..4.0).contains(&total), "{:?}", second.summary);
    let rows = read_metrics(&out.join("metrics.csv")).unwrap();
    assert_follows_the_budget(&rows, 2.4);
    // Spent: resuming again takes no step.
    let third = train_lm(&model, &config, &out, resume()).unwrap();
    assert_eq!(third.summary.stopped, Stopped::TimeBudget);
    assert_eq!(third.summary.steps, second.summary.steps);
    // A larger budget extends the run to the new total.
    let mut longer = config.clone();
    longer.optim.max_time = Some(0.06);
    let fourth = train_lm(&model, &longer, &out, resume()).unwrap();
    assert_eq!(fourth.summary.stopped, Stopped::TimeBudget);
    assert!(fourth.summary.steps > third.summary.steps);
    assert!(
        (3.6..5.2).contains(&fourth.summary.elapsed_s),
        "{:?}",
        fourth.summary
    );
}
