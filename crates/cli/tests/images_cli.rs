//! End-to-end tests of `seqlab images train|eval|predict` (cargo feature `images`), running the binary on a
//! tiny MNIST-format directory the test writes, and on Debian's Fashion-MNIST when it is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seqlab_data::{generate_shapes, ShapesConfig};
use seqlab_train::images::data::write_idx;

fn seqlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the seqlab binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "seqlab failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The one-line error of a failed run, and its exit code.
fn error(output: &Output) -> (String, i32) {
    assert!(!output.status.success(), "seqlab should have failed");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    (stderr.trim().to_string(), output.status.code().unwrap())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// 12×12 images of two classes: a bright square in the top-left quarter, or in the bottom-right one.
fn write_dir(dir: &Path, train: usize, test: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (split, n) in [("train", train), ("t10k", test)] {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let class = i % 2;
            for r in 0..12 {
                for c in 0..12 {
                    let inside = (r / 6 == class) && (c / 6 == class);
                    pixels.push(if inside {
                        220
                    } else {
                        ((r * 7 + c * 3 + i) % 40) as u8
                    });
                }
            }
            labels.push(class as u8);
        }
        write_idx(
            &dir.join(format!("{split}-images-idx3-ubyte.gz")),
            &[n, 12, 12],
            &pixels,
        )
        .unwrap();
        write_idx(
            &dir.join(format!("{split}-labels-idx1-ubyte.gz")),
            &[n],
            &labels,
        )
        .unwrap();
    }
    dir.to_path_buf()
}

#[test]
fn train_eval_and_predict_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_dir(&dir.path().join("idx"), 64, 20);
    let names = dir.path().join("names.txt");
    std::fs::write(&names, "top-left\nbottom-right\n").unwrap();
    let model = dir.path().join("model");
    let out = stdout(&seqlab(&[
        "images",
        "train",
        "--data",
        p(&data),
        "--out",
        p(&model),
        "--labels",
        p(&names),
        "--valid",
        "16",
        "--hidden",
        "12",
        "--batch",
        "8",
        "--steps",
        "40",
        "--lr",
        "0.01",
        "--warmup",
        "5",
    ]));
    assert!(
        out.contains(
            "data: 48 training images, 16 validation images, 2 classes (top-left, bottom-right)"
        ),
        "{out}"
    );
    assert!(out.contains("best validation loss"), "{out}");
    for file in [
        "config.json",
        "labels.json",
        "model.safetensors",
        "metrics.csv",
    ] {
        assert!(model.join(file).is_file(), "{file}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["task"], "images");
    assert_eq!(config["model"]["height"], 12);
    assert_eq!(config["model"]["order"], "rows");

    let eval: serde_json::Value = serde_json::from_str(&stdout(&seqlab(&[
        "images",
        "eval",
        "--model",
        p(&model),
        "--json",
    ])))
    .unwrap();
    assert_eq!(eval["examples"], 20);
    assert!(eval["accuracy"].as_f64().unwrap() > 0.9, "{eval}");
    let text = stdout(&seqlab(&["images", "eval", "--model", p(&model)]));
    assert!(text.contains("(test images)"), "{text}");

    let predicted = stdout(&seqlab(&[
        "images",
        "predict",
        "--model",
        p(&model),
        "--test",
        "0..4",
        "--top",
        "2",
    ]));
    let lines: Vec<&str> = predicted.lines().collect();
    assert_eq!(lines.len(), 4, "{predicted}");
    assert!(
        lines[0].starts_with("top-left\t") && lines[0].ends_with("\ttrue top-left"),
        "{predicted}"
    );
    assert!(lines[1].starts_with("bottom-right\t"), "{predicted}");
    assert_eq!(
        lines[0].split('\t').count(),
        5,
        "two classes with probabilities and the truth"
    );

    // Image files: made grey and resized to the model's 12×12.
    let shapes = dir.path().join("shapes");
    generate_shapes(
        &shapes,
        &ShapesConfig {
            count: 2,
            size: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(shapes.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    let mut args = vec!["images", "predict", "--model", p(&model)];
    args.extend(files.iter().map(|f| p(f)));
    let predicted = stdout(&seqlab(&args));
    assert_eq!(predicted.lines().count(), files.len(), "{predicted}");

    // A second run into the same directory is refused; --resume continues it.
    let (e, code) = error(&seqlab(&[
        "images",
        "train",
        "--data",
        p(&data),
        "--out",
        p(&model),
    ]));
    assert!(e.contains("already holds a model"), "{e}");
    assert_eq!(code, 1);
    let resumed = stdout(&seqlab(&[
        "images",
        "train",
        "--data",
        p(&data),
        "--out",
        p(&model),
        "--resume",
        "--steps",
        "44",
    ]));
    assert!(resumed.contains("best validation loss"), "{resumed}");
    let checkpoint =
        seqlab_train::checkpoint::load_checkpoint(&model, &candle_core::Device::Cpu).unwrap();
    assert_eq!(checkpoint.state.step, 44);
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_dir(&dir.path().join("idx"), 10, 4);
    let out = dir.path().join("m");
    let (e, code) = error(&seqlab(&[
        "images",
        "train",
        "--data",
        p(&dir.path().join("absent")),
        "--out",
        p(&out),
    ]));
    assert!(
        e.contains("is not a directory of MNIST-format IDX files"),
        "{e}"
    );
    assert_eq!(code, 1);
    assert!(!out.exists() || !out.join("config.json").exists());
    let (e, code) = error(&seqlab(&[
        "images",
        "train",
        "--data",
        p(&data),
        "--out",
        p(&out),
        "--order",
        "columns",
    ]));
    assert!(e.contains("--order"), "{e}");
    assert_eq!(code, 2);
    let (e, _) = error(&seqlab(&[
        "images",
        "train",
        "--data",
        p(&data),
        "--out",
        p(&out),
        "--valid",
        "10",
    ]));
    assert!(e.contains("--valid 10 leaves none to train on"), "{e}");
    let (e, _) = error(&seqlab(&["images", "eval", "--model", p(&data)]));
    assert!(e.contains("config.json"), "{e}");
    let (e, _) = error(&seqlab(&[
        "images",
        "train",
        "--data",
        "hub:cifar",
        "--out",
        p(&out),
    ]));
    assert!(e.contains("unknown hub image set 'cifar'"), "{e}");

    let model = dir.path().join("model");
    stdout(&seqlab(&[
        "images",
        "train",
        "--data",
        p(&data),
        "--out",
        p(&model),
        "--valid",
        "2",
        "--hidden",
        "4",
        "--steps",
        "2",
    ]));
    let (e, _) = error(&seqlab(&["images", "predict", "--model", p(&model)]));
    assert!(e.contains("nothing to classify"), "{e}");
    let (e, _) = error(&seqlab(&[
        "images",
        "predict",
        "--model",
        p(&model),
        "--test",
        "3..9",
    ]));
    assert!(e.contains("holds 4 test images"), "{e}");
    let not_an_image = dir.path().join("note.png");
    std::fs::write(&not_an_image, "hello").unwrap();
    let (e, _) = error(&seqlab(&[
        "images",
        "predict",
        "--model",
        p(&model),
        p(&not_an_image),
    ]));
    assert!(e.contains("note.png"), "{e}");
    let (e, _) = error(&seqlab(&[
        "classify",
        "eval",
        "--model",
        p(&model),
        "--data",
        p(&data),
    ]));
    assert!(e.contains("task \"images\""), "{e}");
}

#[test]
fn fashion_mnist_row_by_row_trains_from_the_debian_package() {
    let data = Path::new("/usr/share/datasets/fashion-mnist");
    if !data.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!(
            "skipped: {} is absent (Debian: apt-get install dataset-fashion-mnist)",
            data.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("fashion");
    // A few steps on the real files: it reads, trains, validates on the last 1000 and evaluates on the test
    // set end to end (the quality runs are in docs/images.md).
    let out = stdout(&seqlab(&[
        "images",
        "train",
        "--data",
        p(data),
        "--out",
        p(&model),
        "--valid",
        "1000",
        "--hidden",
        "32",
        "--steps",
        "30",
        "--warmup",
        "10",
        "--lr",
        "0.01",
        "--batch",
        "64",
    ]));
    assert!(
        out.contains("data: 59000 training images, 1000 validation images, 10 classes"),
        "{out}"
    );
    let eval: serde_json::Value = serde_json::from_str(&stdout(&seqlab(&[
        "images",
        "eval",
        "--model",
        p(&model),
        "--json",
    ])))
    .unwrap();
    assert_eq!(eval["examples"], 10_000);
    // Thirty steps are well above chance (0.1) on Fashion-MNIST.
    assert!(eval["accuracy"].as_f64().unwrap() > 0.3, "{eval}");
}
