//! The classification pipeline through the library: a tiny model learns an easy task, a resumed run ends
//! with the weights of an uninterrupted one, predictions do not depend on padding, and bad inputs are
//! one-line errors naming the file and line.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use seqlab_cells::CellKind;
use seqlab_models::{ClassifierConfig, Pooling};
use seqlab_train::checkpoint::{load_checkpoint, load_tensors};
use seqlab_train::classify::{load_classifier, train_classifier, ClassifyTrainConfig};
use seqlab_train::{load_lm, Error, LoopConfig, RunOptions, Stopped};

/// An easy task of our own: the topic is given away by its words (sports, food, weather), in sentences of
/// varied lengths so that batches are padded.
fn write_data(dir: &Path, name: &str, n: usize, offset: usize) -> PathBuf {
    let topics: [(&str, &[&str]); 3] = [
        (
            "sport",
            &["goal", "match", "team", "coach", "score", "league"],
        ),
        (
            "food",
            &["bread", "soup", "cheese", "oven", "recipe", "taste"],
        ),
        (
            "weather",
            &["rain", "wind", "storm", "sunny", "cloud", "cold"],
        ),
    ];
    let filler = ["the", "a", "today", "was", "and", "very", "with", "some"];
    let mut text = String::new();
    for i in offset..offset + n {
        let (label, words) = topics[i % 3];
        let len = 2 + (i * 7) % 9;
        let mut sentence = Vec::new();
        for j in 0..len {
            if j % 2 == 0 {
                sentence.push(words[(i + j) % words.len()]);
            } else {
                sentence.push(filler[(i * 3 + j) % filler.len()]);
            }
        }
        text.push_str(&format!("{label}\t{}\n", sentence.join(" ")));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn model(cell: CellKind, pool: Pooling, dropout: f32) -> ClassifierConfig {
    ClassifierConfig {
        embed: 8,
        hidden: 12,
        cell,
        bidirectional: true,
        pool,
        dropout,
        ..Default::default()
    }
}

fn config(data: &Path, epochs: usize) -> ClassifyTrainConfig {
    ClassifyTrainConfig {
        data: data.display().to_string(),
        batch: 8,
        valid_fraction: 0.2,
        optim: LoopConfig {
            epochs: Some(epochs),
            eval_every: 0,
            checkpoint_every: 5,
            lr: 1e-2,
            warmup: 5,
            seed: 5,
            ..Default::default()
        },
        ..Default::default()
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
fn a_tiny_classifier_learns_an_easy_task() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), "train.tsv", 150, 0);
    let test = write_data(dir.path(), "test.tsv", 60, 1000);
    let out = dir.path().join("clf");
    let report = train_classifier(
        &model(CellKind::Gru, Pooling::Max, 0.1),
        &config(&data, 8),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.summary.stopped, Stopped::Finished);
    assert_eq!(report.labels, ["food", "sport", "weather"]);
    assert_eq!((report.train_examples, report.valid_examples), (120, 30));
    // One validation per epoch (15 batches of 8), each with a lower loss than a uniform guess at the end.
    let steps: Vec<usize> = report.history.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=8).map(|e| e * 15).collect::<Vec<_>>());
    let first = &report.history[0];
    let last = report.history.last().unwrap();
    assert!(
        last.loss < first.loss && last.loss < 0.3,
        "{:?}",
        report.history
    );
    assert!(last.accuracy >= 0.95, "{:?}", report.history);
    let best = report.best.as_ref().unwrap();
    assert!(best.metrics.accuracy >= 0.95);

    let clf = load_classifier(&out, &Device::Cpu).unwrap();
    assert_eq!(clf.labels, report.labels);
    let eval = clf.evaluate_file(&test, None, None).unwrap();
    assert!(eval.metrics.accuracy >= 0.95, "{:?}", eval.metrics);
    assert_eq!(eval.metrics.examples, 60);
    let p = clf
        .predict(&[
            "rain today storm very cloud".to_string(),
            "goal with match".to_string(),
        ])
        .unwrap();
    let argmax = |row: &Vec<f32>| {
        (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap()
    };
    assert_eq!(clf.labels[argmax(&p[0])], "weather");
    assert_eq!(clf.labels[argmax(&p[1])], "sport");
    for file in [
        "config.json",
        "tokenizer.json",
        "labels.json",
        "model.safetensors",
        "metrics.csv",
    ] {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["task"], "classify");
    assert_eq!(config["train"]["eval_every"], 15);
}

/// Trains in one go, and interrupted after `stop_at` steps then resumed; both must end with the same
/// weights and optimizer moments.
fn resume_is_exact(balanced: bool, stop_at: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), "train.tsv", 90, 0);
    let model = model(CellKind::Lstm, Pooling::Last, 0.3);
    let mut config = config(&data, 3);
    config.balanced = balanced;
    let whole = dir.path().join("whole");
    train_classifier(&model, &config, &whole, RunOptions::default()).unwrap();

    let parts = dir.path().join("parts");
    let mut interrupt = |step: usize| {
        if step == stop_at {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let options = RunOptions {
        on_step: Some(&mut interrupt),
        ..Default::default()
    };
    let first = train_classifier(&model, &config, &parts, options).unwrap();
    assert_eq!(first.summary.stopped, Stopped::Interrupted);
    let resume = RunOptions {
        resume: true,
        ..Default::default()
    };
    let second = train_classifier(&model, &config, &parts, resume).unwrap();
    assert_eq!(second.summary.stopped, Stopped::Finished);
    let a = load_checkpoint(&whole, &Device::Cpu).unwrap();
    let b = load_checkpoint(&parts, &Device::Cpu).unwrap();
    assert_eq!(a.state.step, b.state.step);
    for file in ["model.safetensors", "optimizer.safetensors"] {
        assert_eq!(
            weights(&whole.join("trainer").join(file)),
            weights(&parts.join("trainer").join(file)),
            "trainer/{file} differs"
        );
    }
}

#[test]
fn resume_mid_epoch_ends_with_the_same_weights() {
    resume_is_exact(false, 7); // 9 batches per epoch
}

#[test]
fn resume_at_an_epoch_boundary_with_balanced_loss_ends_with_the_same_weights() {
    resume_is_exact(true, 9);
}

#[test]
fn a_directory_of_another_task_is_refused_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_data(dir.path(), "train.tsv", 30, 0);
    let out = dir.path().join("clf");
    train_classifier(
        &model(CellKind::Gru, Pooling::Mean, 0.0),
        &config(&data, 1),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    let err = load_lm(&out, &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::WrongTask { .. }));
    assert!(
        err.to_string().contains("task \"classify\", not \"lm\""),
        "{err}"
    );
    let lm_dir = dir.path().join("lm");
    std::fs::create_dir(&lm_dir).unwrap();
    std::fs::write(
        lm_dir.join("config.json"),
        r#"{"format": "seqlab/1", "task": "lm", "model": {}, "train": {}}"#,
    )
    .unwrap();
    let err = load_classifier(&lm_dir, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("task \"lm\", not \"classify\""), "{err}");
    assert!(!err.contains('\n'));
}

#[test]
fn bad_rows_are_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "\"1\",\"a title\",\"a text\"\n\"2\",\"an open quote,\"x\"\n",
    )
    .unwrap();
    let mut config = config(&csv, 1);
    config.valid_fraction = 0.0;
    let err = train_classifier(
        &model(CellKind::Gru, Pooling::Max, 0.0),
        &config,
        &dir.path().join("a"),
        RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bad.csv, line 2"), "{err}");

    std::fs::write(&csv, "1,title,text\n2,,\n").unwrap();
    let err = train_classifier(
        &model(CellKind::Gru, Pooling::Max, 0.0),
        &config,
        &dir.path().join("b"),
        RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(err, format!("{}, line 2: the text is empty", csv.display()));

    // An unknown label at evaluation.
    let data = write_data(dir.path(), "train.tsv", 30, 0);
    let out = dir.path().join("clf");
    train_classifier(
        &model(CellKind::Gru, Pooling::Max, 0.0),
        &config_for(&data),
        &out,
        RunOptions::default(),
    )
    .unwrap();
    let test = dir.path().join("test.tsv");
    std::fs::write(&test, "sport\ta goal\npolitics\tthe vote\n").unwrap();
    let clf = load_classifier(&out, &Device::Cpu).unwrap();
    let err = clf
        .evaluate_file(&test, None, None)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "{}, line 2: bad label \"politics\": the known labels are food, sport, weather",
            test.display()
        )
    );
}

fn config_for(data: &Path) -> ClassifyTrainConfig {
    config(data, 1)
}
