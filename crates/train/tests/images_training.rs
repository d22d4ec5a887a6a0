//! The sequential image pipeline through the library, on tiny MNIST-format directories the tests write (plain
//! and gzipped IDX files): a small model learns an easy task in every pixel order, a resumed run ends with the
//! weights of an uninterrupted one, the model directory loads and evaluates, and bad files are one-line
//! errors naming the file. The real Fashion-MNIST (Debian's `dataset-fashion-mnist`) is read when installed.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core::Device;
use seqlab_cells::CellKind;
use seqlab_models::{ImageClassifierConfig, PixelOrder, Pooling};
use seqlab_train::checkpoint::load_tensors;
use seqlab_train::images::data::{load, write_idx};
use seqlab_train::images::{load_images_model, ImagesTrainConfig};
use seqlab_train::{ImagesPipeline, LoopConfig, RunOptions, Stopped};

const SIDE: usize = 8;

/// `n` images of SIDE×SIDE on noise whose class (of 3) is what is drawn: one bright row (at one of two
/// heights), a checkerboard, or nothing. Each class has its own local pattern and its own number of bright
/// pixels, so every pixel order can tell them apart.
fn images(n: usize, offset: usize) -> (Vec<u8>, Vec<u8>) {
    let mut state = 0x2545_F491_4F6C_DD1Du64 ^ offset as u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 90) as u8
    };
    let mut pixels = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for i in offset..offset + n {
        let class = i % 3;
        let shift = (i / 3) % 2;
        for r in 0..SIDE {
            for c in 0..SIDE {
                let bar = match class {
                    0 => r / 2 == 1 + 2 * shift,
                    1 => (r + c + shift) % 2 == 0,
                    _ => false,
                };
                pixels.push(if bar { 200 + noise() / 2 } else { noise() });
            }
        }
        labels.push(class as u8);
    }
    (pixels, labels)
}

/// A directory of the four IDX files (`.gz` when `gz`): `train` training and `test` test images.
fn write_dir(dir: &Path, train: usize, test: usize, gz: bool) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let ext = if gz { ".gz" } else { "" };
    for (split, n, offset) in [("train", train, 0), ("t10k", test, 10_000)] {
        let (pixels, labels) = images(n, offset);
        write_idx(
            &dir.join(format!("{split}-images-idx3-ubyte{ext}")),
            &[n, SIDE, SIDE],
            &pixels,
        )
        .unwrap();
        write_idx(
            &dir.join(format!("{split}-labels-idx1-ubyte{ext}")),
            &[n],
            &labels,
        )
        .unwrap();
    }
    dir.to_path_buf()
}

fn model(order: PixelOrder, cell: CellKind) -> ImageClassifierConfig {
    ImageClassifierConfig {
        order,
        permutation_seed: 3,
        cell,
        hidden: 16,
        pool: if order == PixelOrder::Rows {
            Pooling::Last
        } else {
            Pooling::Mean
        },
        ..Default::default()
    }
}

fn config(data: &Path, steps: usize) -> ImagesTrainConfig {
    ImagesTrainConfig {
        data: data.display().to_string(),
        valid: 24,
        batch: 16,
        optim: LoopConfig {
            lr: 1e-2,
            warmup: 5,
            steps: Some(steps),
            eval_every: 10,
            checkpoint_every: 10,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn train(
    model: &ImageClassifierConfig,
    config: &ImagesTrainConfig,
    out: &Path,
    options: RunOptions<'_>,
) -> seqlab_train::Result<seqlab_train::images::ImagesTrainReport> {
    seqlab_train::pipeline::train::<ImagesPipeline>(model, config, out, options)
}

#[test]
fn every_order_learns_the_bars_and_the_directory_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_dir(&dir.path().join("idx"), 120, 60, true);
    for (order, cell, steps) in [
        (PixelOrder::Rows, CellKind::Lstm, 60),
        (PixelOrder::Pixels, CellKind::Gru, 120),
        (PixelOrder::Permuted, CellKind::MinGru, 200),
    ] {
        let out = dir.path().join(order.as_str());
        let report = train(
            &model(order, cell),
            &config(&data, steps),
            &out,
            RunOptions::default(),
        )
        .unwrap();
        assert_eq!((report.train_images, report.valid_images), (96, 24));
        assert_eq!(report.labels, ["0", "1", "2"]);
        let loaded = load_images_model(&out, &Device::Cpu).unwrap();
        assert_eq!(
            (loaded.config.model.height, loaded.config.model.width),
            (SIDE, SIDE)
        );
        assert_eq!(loaded.config.model.num_classes, 3);
        let test = loaded.evaluate_test(None).unwrap();
        assert_eq!(test.metrics.examples, 60);
        eprintln!(
            "{order} ({cell}): test accuracy {:.3}, loss {:.3}",
            test.metrics.accuracy, test.loss
        );
        assert!(
            test.metrics.accuracy > 0.8,
            "{order}: accuracy {}",
            test.metrics.accuracy
        );
        // Probabilities of a few test images agree with the evaluation's predictions.
        let set = loaded.test_images(0, 6).unwrap();
        let p = loaded.predict(&set.images).unwrap();
        assert_eq!(p.len(), 6);
        assert!(p
            .iter()
            .all(|row| (row.iter().sum::<f32>() - 1.0).abs() < 1e-4));
    }
}

#[test]
fn plain_and_gzipped_files_are_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let plain = load(
        &write_dir(&dir.path().join("plain"), 10, 4, false)
            .display()
            .to_string(),
    )
    .unwrap();
    let gz = load(
        &write_dir(&dir.path().join("gz"), 10, 4, true)
            .display()
            .to_string(),
    )
    .unwrap();
    assert_eq!((plain.height, plain.width, plain.classes), (SIDE, SIDE, 3));
    let values = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(values(&plain.train.images), values(&gz.train.images));
    let (pixels, labels) = images(10, 0);
    let want: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    // candle-datasets scales by multiplying with 1/255: within a rounding of p/255.
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    assert!(close(&values(&plain.train.images), &want));
    assert_eq!(
        plain.train.labels.to_vec1::<u32>().unwrap(),
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>()
    );
    // The Batcher stacks the images it is given, in order.
    let (batch, classes) = plain.train.batch(&[3, 0]).unwrap();
    assert_eq!(batch.dims(), [2, SIDE * SIDE]);
    assert_eq!(classes.to_vec1::<u32>().unwrap(), [0, 0]);
    assert!(close(
        &values(&batch)[..SIDE * SIDE],
        &want[3 * SIDE * SIDE..4 * SIDE * SIDE]
    ));
    let sizes: Vec<usize> = plain
        .test
        .batches(3)
        .map(|b| b.unwrap().0.dims()[0])
        .collect();
    assert_eq!(sizes, [3, 1]);
}

fn resume_is_exact(stop_at: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = write_dir(&dir.path().join("idx"), 72, 12, false);
    let model = ImageClassifierConfig {
        dropout: 0.2,
        layers: 2,
        ..model(PixelOrder::Rows, CellKind::Lstm)
    };
    let config = config(&data, 14);
    let whole = dir.path().join("whole");
    train(&model, &config, &whole, RunOptions::default()).unwrap();
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
    let first = train(&model, &config, &parts, options).unwrap();
    assert_eq!(first.summary.stopped, Stopped::Interrupted);
    let resume = RunOptions {
        resume: true,
        ..Default::default()
    };
    let second = train(&model, &config, &parts, resume).unwrap();
    assert_eq!(second.summary.stopped, Stopped::Finished);
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let weights = |dir: &Path| {
            let mut tensors: Vec<(String, Vec<f32>)> =
                load_tensors(&dir.join("trainer").join(file), &Device::Cpu)
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1().unwrap()))
                    .collect();
            tensors.sort_by(|a, b| a.0.cmp(&b.0));
            tensors
        };
        assert_eq!(weights(&whole), weights(&parts), "trainer/{file} differs");
    }
}

#[test]
fn resume_mid_epoch_ends_with_the_same_weights() {
    resume_is_exact(5); // 3 batches per epoch of 48 images
}

#[test]
fn resume_at_an_epoch_boundary_ends_with_the_same_weights() {
    resume_is_exact(6);
}

#[test]
fn bad_directories_are_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_dir(&dir.path().join("idx"), 12, 6, false);
    let error = |source: &Path| {
        let e = load(&source.display().to_string()).unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    let missing = dir.path().join("nothing");
    assert!(error(&missing).contains("is not a directory of MNIST-format IDX files"));

    let labels = data.join("t10k-labels-idx1-ubyte");
    let saved = std::fs::read(&labels).unwrap();
    std::fs::remove_file(&labels).unwrap();
    let e = error(&data);
    assert!(
        e.contains("has no t10k-labels-idx1-ubyte (nor t10k-labels-idx1-ubyte.gz)"),
        "{e}"
    );

    std::fs::write(&labels, &saved[..saved.len() - 1]).unwrap();
    let e = error(&data);
    assert!(
        e.contains("t10k-labels-idx1-ubyte is not an IDX file"),
        "{e}"
    );
    assert!(e.contains("promises 6 bytes"), "{e}");

    let mut swapped = saved.clone();
    swapped[3] = 3; // magic 2051: an image file where labels belong
    std::fs::write(&labels, &swapped).unwrap();
    let e = error(&data);
    assert!(
        e.contains("magic number 2051 where a label file has 2049"),
        "{e}"
    );

    write_idx(&labels, &[5], &[0, 1, 2, 0, 1]).unwrap();
    let e = error(&data);
    assert!(e.contains("holds 6 images but"), "{e}");
    assert!(e.contains("holds 5 labels"), "{e}");

    std::fs::write(data.join("t10k-labels-idx1-ubyte.gz"), b"not gzip").unwrap();
    std::fs::remove_file(&labels).unwrap();
    let e = error(&data);
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz is not a gzip file"),
        "{e}"
    );

    assert!(error(Path::new("hub:cifar")).contains("unknown hub image set 'cifar'"));
}

#[test]
fn a_validation_share_larger_than_the_data_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_dir(&dir.path().join("idx"), 12, 6, false);
    let out = dir.path().join("model");
    let config = ImagesTrainConfig {
        valid: 12,
        ..config(&data, 5)
    };
    let e = train(
        &model(PixelOrder::Rows, CellKind::Lstm),
        &config,
        &out,
        RunOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("holds 12 training images: --valid 12 leaves none"),
        "{e}"
    );
    assert!(!out.join("config.json").exists());
}

#[test]
fn the_real_fashion_mnist_reads_when_debian_installed_it() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!(
            "skipped: {} is absent (Debian: apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let splits = load(&dir.display().to_string()).unwrap();
    assert_eq!((splits.height, splits.width, splits.classes), (28, 28, 10));
    assert_eq!((splits.train.len(), splits.test.len()), (60_000, 10_000));
    let counts = |set: &seqlab_train::images::data::ImageSet| {
        let mut counts = [0usize; 10];
        for l in set.labels.to_vec1::<u32>().unwrap() {
            counts[l as usize] += 1;
        }
        counts
    };
    // Fashion-MNIST is balanced: 6000 and 1000 images of each class.
    assert_eq!(counts(&splits.train), [6000; 10]);
    assert_eq!(counts(&splits.test), [1000; 10]);
}
