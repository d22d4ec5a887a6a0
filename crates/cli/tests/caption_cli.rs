//! End-to-end tests of `seqlab data shapes` and `seqlab caption train|eval|run`, running the binary.

use std::path::Path;
use std::process::{Command, Output};

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

/// The one-line error of a failed run.
fn error(output: &Output) -> String {
    assert!(!output.status.success(), "seqlab should have failed");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn train_args<'a>(images: &'a str, captions: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "caption",
        "train",
        "--images",
        images,
        "--captions",
        captions,
        "--out",
        out,
        "--image-size",
        "16",
        "--channels",
        "4,8",
        "--hidden",
        "16",
        "--embed",
        "8",
        "--batch",
        "8",
        "--steps",
        "12",
        "--eval-every",
        "6",
        "--lr",
        "0.01",
        "--threads",
        "1",
    ]
}

#[test]
fn shapes_train_eval_and_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    let out = stdout(&seqlab(&[
        "data",
        "shapes",
        "--out",
        p(&data),
        "--count",
        "30",
        "--seed",
        "2",
        "--size",
        "16",
    ]));
    assert!(
        out.contains("30 images") && out.contains("60 captions"),
        "{out}"
    );
    let holdout = dir.path().join("holdout");
    stdout(&seqlab(&[
        "data",
        "shapes",
        "--out",
        p(&holdout),
        "--count",
        "5",
        "--size",
        "16",
        "--holdout",
    ]));
    let images = data.join("images");
    let captions = data.join("captions.txt");
    let model = dir.path().join("model");
    let out = stdout(&seqlab(&train_args(p(&images), p(&captions), p(&model))));
    assert!(out.contains("finished at step 12/12"), "{out}");
    assert!(out.contains("validation images, greedy: BLEU-1"), "{out}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["task"], "caption");
    assert_eq!(config["format"], "seqlab/1");

    // eval --json on held-out combinations, with a report.
    let report = dir.path().join("report.html");
    let out = stdout(&seqlab(&[
        "caption",
        "eval",
        "--model",
        p(&model),
        "--images",
        p(&holdout.join("images")),
        "--captions",
        p(&holdout.join("captions.txt")),
        "--json",
        "--beam",
        "2",
        "--report",
        p(&report),
    ]));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in ["bleu1", "bleu2", "bleu3", "bleu4", "exact_match"] {
        let v = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {out}"));
        assert!((0.0..=100.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(json["images"], 5);
    assert!(
        json["baseline"]["caption"].as_str().unwrap().contains("a"),
        "{out}"
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 5);

    // The model's own validation split.
    let out = stdout(&seqlab(&[
        "caption",
        "eval",
        "--model",
        p(&model),
        "--images",
        p(&images),
        "--captions",
        p(&captions),
        "--split",
        "valid",
    ]));
    assert!(out.contains("of 3 images"), "{out}");

    // run: one line per image, a caption of known words.
    let out = stdout(&seqlab(&[
        "caption",
        "run",
        "--model",
        p(&model),
        p(&images.join("shape_00000.png")),
        p(&images.join("shape_00001.png")),
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("shape_00000.png\t"), "{out}");

    // Bad inputs: one line naming the file.
    let err = error(&seqlab(&[
        "caption",
        "run",
        "--model",
        p(&model),
        p(&dir.path().join("nope.png")),
    ]));
    assert!(
        err.contains("nope.png") && err.contains("no such image"),
        "{err}"
    );
    let gif = dir.path().join("anim.gif");
    std::fs::write(&gif, b"GIF89a\x01\0\x01\0\0\0\0;").unwrap();
    let err = error(&seqlab(&["caption", "run", "--model", p(&model), p(&gif)]));
    assert!(
        err.contains("anim.gif") && err.contains("unsupported image format"),
        "{err}"
    );
    let err = error(&seqlab(&[
        "caption",
        "run",
        "--model",
        p(&model),
        "--beam",
        "0",
        p(&gif),
    ]));
    assert!(err.contains("--beam"), "{err}");
    let err = error(&seqlab(&["caption", "run", "--model", p(&images), p(&gif)]));
    assert!(err.contains("not a model directory"), "{err}");
    let err = error(&seqlab(&train_args(p(&images), p(&captions), p(&model))));
    assert!(err.contains("already holds a model"), "{err}");
}

#[test]
fn missing_corrupt_and_unsupported_training_images_stop_or_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shapes");
    stdout(&seqlab(&[
        "data",
        "shapes",
        "--out",
        p(&data),
        "--count",
        "12",
        "--size",
        "16",
    ]));
    let images = data.join("images");
    let captions = data.join("captions.txt");
    std::fs::write(
        images.join("shape_00003.png"),
        b"\x89PNG\r\n\x1a\ntruncated",
    )
    .unwrap();
    let model_a = dir.path().join("a");
    let err = error(&seqlab(&train_args(p(&images), p(&captions), p(&model_a))));
    assert!(
        err.contains("shape_00003.png") && err.contains("corrupt"),
        "{err}"
    );

    std::fs::remove_file(images.join("shape_00005.png")).unwrap();
    let model_b = dir.path().join("b");
    let mut args = train_args(p(&images), p(&captions), p(&model_b));
    args.push("--skip-bad-images");
    let out = stdout(&seqlab(&args));
    assert!(out.contains("skipped 2 image(s)"), "{out}");
    assert!(out.contains("shape_00005.png: no such image file"), "{out}");

    // A captions file with a bad header; a listed image absent at eval time.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "file,text\na.png,x\n").unwrap();
    let model_c = dir.path().join("c");
    let err = error(&seqlab(&train_args(p(&images), p(&bad), p(&model_c))));
    assert!(
        err.contains("bad.txt, line 1") && err.contains("image,caption"),
        "{err}"
    );
    let err = error(&seqlab(&[
        "caption",
        "eval",
        "--model",
        p(&model_b),
        "--images",
        p(&images),
        "--captions",
        p(&captions),
    ]));
    assert!(err.contains("shape_00003.png"), "{err}");
    let out = stdout(&seqlab(&[
        "caption",
        "eval",
        "--model",
        p(&model_b),
        "--images",
        p(&images),
        "--captions",
        p(&captions),
        "--skip-bad-images",
        "--json",
    ]));
    let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (json["images"].as_u64(), json["skipped"].as_u64()),
        (Some(10), Some(2))
    );
}
