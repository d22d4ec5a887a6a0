//! The captioning pipeline on a tiny synthetic shapes set: the loss falls, resume is exact (batch-norm
//! running statistics included), and the model directory loads and captions images.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::Device;
use seqlab_cells::CellKind;
use seqlab_data::{generate_shapes, ShapesConfig, ShapesSplit};
use seqlab_models::{AttentionKind, CaptionerConfig, CnnConfig, Inject};
use seqlab_train::caption::{read_caption_config, Decoding};
use seqlab_train::checkpoint::load_tensors;
use seqlab_train::metrics::read_metrics;
use seqlab_train::{load_captioner, train_captioner, CaptionTrainConfig, LoopConfig, RunOptions};

fn shapes(dir: &Path, count: usize) -> PathBuf {
    let out = dir.join("shapes");
    let config = ShapesConfig {
        count,
        size: 16,
        seed: 3,
        split: ShapesSplit::Train,
    };
    generate_shapes(&out, &config).unwrap();
    out
}

/// A tiny captioner; with an attention, over the map's cells with their coordinates.
fn model(inject: Inject, attention: AttentionKind) -> CaptionerConfig {
    CaptionerConfig {
        encoder: CnnConfig {
            image_size: 16,
            channels: vec![4, 8],
            ..CnnConfig::default()
        },
        inject,
        attention,
        coordinates: attention != AttentionKind::None,
        vocab_size: 0,
        embed: 8,
        cell: CellKind::Lstm,
        hidden: 16,
        layers: 1,
        dropout: 0.1,
        ..CaptionerConfig::default()
    }
}

fn config(data: &Path, steps: usize) -> CaptionTrainConfig {
    CaptionTrainConfig {
        images: data.join("images").display().to_string(),
        captions: data.join("captions.txt").display().to_string(),
        valid_fraction: 0.2,
        batch: 8,
        optim: LoopConfig {
            steps: Some(steps),
            eval_every: 10,
            checkpoint_every: 10,
            lr: 1e-2,
            warmup: 5,
            seed: 7,
            ..LoopConfig::default()
        },
        ..CaptionTrainConfig::default()
    }
}

fn weights(path: &Path) -> HashMap<String, Vec<f32>> {
    load_tensors(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn a_tiny_captioner_learns_the_shapes_and_its_directory_captions_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path(), 40);
    for (inject, attention) in [
        (Inject::Init, AttentionKind::None),
        (Inject::First, AttentionKind::None),
        (Inject::Init, AttentionKind::General),
    ] {
        let out = dir.path().join(format!("model-{inject:?}-{attention}"));
        let report = train_captioner(
            &model(inject, attention),
            &config(&data, 60),
            &out,
            RunOptions::default(),
        )
        .unwrap();
        assert_eq!(report.summary.steps, 60);
        assert_eq!((report.train_images, report.valid_images), (32, 8));
        let rows = read_metrics(&out.join("metrics.csv")).unwrap();
        let train: Vec<f64> = rows
            .iter()
            .filter(|r| r.split == "train")
            .map(|r| r.loss)
            .collect();
        let valid: Vec<f64> = rows
            .iter()
            .filter(|r| r.split == "valid")
            .map(|r| r.loss)
            .collect();
        // The words are few (19 with the specials): ln 19 ≈ 2.9 at the start.
        assert!(train[0] > 1.5, "{inject:?}: {train:?}");
        assert!(
            *train.last().unwrap() < 0.7 * train[0],
            "{inject:?}: {train:?}"
        );
        assert!(valid.last().unwrap() < &valid[0], "{inject:?}: {valid:?}");

        // The running statistics are saved with the weights and have moved.
        let saved = weights(&out.join("model.safetensors"));
        let var = &saved["encoder.blocks.0.bn.running_var"];
        assert!(var.iter().all(|&v| v != 1.0), "{var:?}");
        assert!(
            saved.contains_key("decoder.embedding.weight") && saved.contains_key("project.weight")
        );
        assert_eq!(
            saved.contains_key("decoder.attention.key.weight"),
            attention != AttentionKind::None
        );

        let config = read_caption_config(&out).unwrap();
        assert_eq!(config.task, "caption");
        let captioner = load_captioner(&out, &Device::Cpu).unwrap();
        let pixels = [
            captioner
                .load_image(&data.join("images/shape_00000.png"))
                .unwrap(),
            captioner
                .load_image(&data.join("images/shape_00001.png"))
                .unwrap(),
        ];
        let greedy = captioner.caption(&pixels, Decoding::GREEDY, 12).unwrap();
        let beam1 = captioner.caption(&pixels, Decoding::beam(1), 12).unwrap();
        let beam3 = captioner.caption(&pixels, Decoding::beam(3), 12).unwrap();
        assert_eq!(greedy, beam1);
        assert_eq!(beam3.len(), 2);
        for caption in &greedy {
            assert!(caption.starts_with("a "), "{caption}");
            assert!(caption.split(' ').count() <= 12, "{caption}");
        }
    }
}

#[test]
fn resume_after_an_interruption_ends_with_the_same_weights_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path(), 24);
    let whole = dir.path().join("whole");
    train_captioner(
        &model(Inject::Init, AttentionKind::General),
        &config(&data, 14),
        &whole,
        RunOptions::default(),
    )
    .unwrap();

    let parts = dir.path().join("parts");
    let mut stop = |step: usize| {
        if step == 7 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let first = train_captioner(
        &model(Inject::Init, AttentionKind::General),
        &config(&data, 14),
        &parts,
        RunOptions {
            on_step: Some(&mut stop),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(first.summary.steps, 7);
    // A resumed run reads its settings from the directory: another model shape is ignored.
    let resumed = train_captioner(
        &model(Inject::First, AttentionKind::None),
        &config(&data, 14),
        &parts,
        RunOptions {
            resume: true,
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(resumed.summary.steps, 14);
    let a = weights(&whole.join("trainer/model.safetensors"));
    let b = weights(&parts.join("trainer/model.safetensors"));
    assert_eq!(a.len(), b.len());
    for (name, values) in &a {
        assert_eq!(values, &b[name], "{name}");
    }
    assert!(a.contains_key("encoder.blocks.1.bn.running_mean"));

    // Training over a model is refused; so is a data set that changed.
    let err = train_captioner(
        &model(Inject::Init, AttentionKind::General),
        &config(&data, 14),
        &whole,
        RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("already holds a model"), "{err}");
}

#[test]
fn a_listed_image_that_is_missing_stops_training_or_is_skipped_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = shapes(dir.path(), 12);
    std::fs::remove_file(data.join("images/shape_00004.png")).unwrap();
    let err = train_captioner(
        &model(Inject::Init, AttentionKind::General),
        &config(&data, 2),
        &dir.path().join("m1"),
        RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("shape_00004.png") && err.contains("no such image"),
        "{err}"
    );
    let skipping = CaptionTrainConfig {
        skip_bad_images: true,
        ..config(&data, 2)
    };
    let report = train_captioner(
        &model(Inject::Init, AttentionKind::General),
        &skipping,
        &dir.path().join("m2"),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.train_images + report.valid_images, 11);
}
