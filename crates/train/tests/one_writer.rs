//! One run per model directory: a second writer is refused at once while the first runs, the first's model
//! then loads and resumes exactly, and a reader loads a whole model at every moment of a run.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use candle_core::Device;
use seqlab_models::LanguageModelConfig;
use seqlab_train::checkpoint::load_tensors;
use seqlab_train::lock::LOCK_FILE;
use seqlab_train::{load_lm, train_lm, Error, LmTrainConfig, LoopConfig, RunOptions};

fn text(dir: &Path) -> String {
    let path = dir.join("text.txt");
    std::fs::write(
        &path,
        "the cat sat on the mat. a dog ran to the log.\n".repeat(40),
    )
    .unwrap();
    path.display().to_string()
}

fn model() -> LanguageModelConfig {
    LanguageModelConfig {
        embed: 8,
        hidden: 16,
        dropout: 0.1,
        ..Default::default()
    }
}

fn config(data: &str, steps: usize) -> LmTrainConfig {
    LmTrainConfig {
        data: vec![data.to_string()],
        batch: 4,
        seq_len: 12,
        optim: LoopConfig {
            steps: Some(steps),
            eval_every: 3,
            checkpoint_every: 4,
            lr: 1e-2,
            warmup: 2,
            seed: 5,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn weights(dir: &Path) -> HashMap<String, Vec<f32>> {
    load_tensors(&dir.join("trainer/model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// Trains into `out` on a thread for a run of `steps` steps, pausing at step `pause` until the returned
/// sender says go on, and interrupted (cleanly, as `--max-time` stops) after step `stop`.
fn paused_run(
    data: String,
    out: PathBuf,
    steps: usize,
    pause: usize,
    stop: usize,
) -> (
    std::thread::JoinHandle<seqlab_train::Result<()>>,
    mpsc::Receiver<()>,
    mpsc::Sender<()>,
) {
    let (at_pause, paused) = mpsc::channel();
    let (resume, go_on) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        let mut on_step = |step: usize| {
            if step == pause {
                at_pause.send(()).unwrap();
                go_on.recv().unwrap();
            }
            if step == stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let options = RunOptions {
            on_step: Some(&mut on_step),
            ..RunOptions::default()
        };
        train_lm(&model(), &config(&data, steps), &out, options).map(|_| ())
    });
    (handle, paused, resume)
}

#[test]
fn a_second_writer_is_refused_and_the_first_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(dir.path());
    let out = dir.path().join("lm");
    let (first, paused, resume) = paused_run(data.clone(), out.clone(), 12, 5, 8);
    paused.recv().unwrap();

    // While the first run holds the directory, a second training and a resume are refused at once.
    for resume_flag in [false, true] {
        let options = RunOptions {
            resume: resume_flag,
            ..RunOptions::default()
        };
        let error = train_lm(&model(), &config(&data, 12), &out, options).unwrap_err();
        assert!(matches!(error, Error::InUse { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(&out.display().to_string())
                && message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
    }
    // A reader loads the model meanwhile.
    load_lm(&out, &Device::Cpu).unwrap();
    resume.send(()).unwrap();
    first.join().unwrap().unwrap();

    // The first run (interrupted after step 8 of 12) loads, and resumes to the end exactly as an
    // uninterrupted run of 12 steps ends.
    load_lm(&out, &Device::Cpu).unwrap();
    let options = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    train_lm(&model(), &config(&data, 12), &out, options).unwrap();
    let straight = dir.path().join("straight");
    train_lm(
        &model(),
        &config(&data, 12),
        &straight,
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(weights(&out), weights(&straight));
}

#[test]
fn a_reader_always_loads_a_whole_model_while_a_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(dir.path());
    let out = dir.path().join("lm");
    let run = {
        let (data, out) = (data.clone(), out.clone());
        std::thread::spawn(move || {
            let mut config = config(&data, 40);
            config.optim.eval_every = 1;
            config.optim.checkpoint_every = 1;
            train_lm(&model(), &config, &out, RunOptions::default()).unwrap()
        })
    };
    let mut loads = 0;
    while !run.is_finished() {
        // Once config.json is there, everything it refers to is, at every moment.
        if out.join("config.json").exists() {
            load_lm(&out, &Device::Cpu).unwrap();
            loads += 1;
        }
    }
    run.join().unwrap();
    assert!(loads > 0, "the run ended before a reader could look");
    load_lm(&out, &Device::Cpu).unwrap();
}

#[test]
fn a_refused_new_run_leaves_no_directory_and_a_finished_run_leaves_only_its_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = text(dir.path());
    let out = dir.path().join("lm");
    // Refused before anything is written (a sequence longer than the text): no directory.
    let mut bad = config(&data, 4);
    bad.seq_len = 100_000;
    train_lm(&model(), &bad, &out, RunOptions::default()).unwrap_err();
    assert!(!out.exists());
    // A finished run released its lock: the next run on the directory takes it.
    train_lm(&model(), &config(&data, 4), &out, RunOptions::default()).unwrap();
    assert!(out.join(LOCK_FILE).is_file());
    let options = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    train_lm(&model(), &config(&data, 6), &out, options).unwrap();
}
