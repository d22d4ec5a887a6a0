//! The binary on bad inputs: a missing file, a directory instead of a file, an empty file, a binary file, a
//! huge line, wrong flags. Each run must exit non-zero with one line on stderr naming the input, never
//! panic, and leave no output behind.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Inputs {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("empty.txt"), "").unwrap();
        std::fs::write(p.join("blank.txt"), " \n\n\t\n").unwrap();
        // Not UTF-8: bytes of every value, as a binary file has.
        let binary: Vec<u8> = (0..4096u32).map(|i| (i * 131 % 256) as u8).collect();
        std::fs::write(p.join("binary.dat"), binary).unwrap();
        // One line of 4 MB, no line break.
        std::fs::write(p.join("huge.txt"), "x".repeat(4 << 20)).unwrap();
        std::fs::write(
            p.join("text.txt"),
            "the cat sat on the mat.\nthe dog sat on the log.\n".repeat(20),
        )
        .unwrap();
        std::fs::create_dir(p.join("folder")).unwrap();
        Inputs { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
}

/// Runs seqlab and checks the failure: non-zero exit, one line on stderr containing every needle, no panic,
/// nothing at `out`.
fn fails(args: &[&str], needles: &[&str], out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("note:"))
        .collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr:?}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{args:?}: {:?} lacks {needle:?}",
            lines[0]
        );
    }
    assert!(!out.exists(), "{args:?} left {} behind", out.display());
}

#[test]
fn training_on_bad_data_files_is_a_one_line_error_with_no_output_left() {
    let inputs = Inputs::new();
    let out = inputs.out();
    let out_arg = out.display().to_string();
    let train = |data: &str, needles: &[&str]| {
        fails(
            &[
                "lm", "train", "--data", data, "--out", &out_arg, "--hidden", "8",
            ],
            needles,
            &out,
        )
    };
    train(
        &inputs.path("missing.txt"),
        &["missing.txt", "No such file"],
    );
    train(&inputs.path("folder"), &["folder", "directory"]);
    train(&inputs.path("empty.txt"), &["empty.txt", "empty"]);
    train(&inputs.path("blank.txt"), &["blank.txt", "empty"]);
    train(&inputs.path("binary.dat"), &["binary.dat", "UTF-8"]);
    // A validation file that is binary, beside good training data.
    fails(
        &[
            "lm",
            "train",
            "--data",
            &inputs.path("text.txt"),
            "--valid",
            &inputs.path("binary.dat"),
            "--out",
            &out_arg,
        ],
        &["binary.dat", "UTF-8"],
        &out,
    );
    // The output path lies under a file.
    let under_file = format!("{}/model", inputs.path("text.txt"));
    fails(
        &[
            "lm",
            "train",
            "--data",
            &inputs.path("text.txt"),
            "--out",
            &under_file,
            "--hidden",
            "8",
            "--steps",
            "1",
        ],
        &["text.txt"],
        Path::new(&under_file),
    );
}

#[test]
fn wrong_flags_are_one_line_errors() {
    let inputs = Inputs::new();
    let out = inputs.out();
    let out_arg = out.display().to_string();
    let text = inputs.path("text.txt");
    let with = |extra: &[&str], needles: &[&str]| {
        let mut args = vec!["lm", "train", "--data", &text, "--out", &out_arg];
        args.extend_from_slice(extra);
        fails(&args, needles, &out);
    };
    with(&["--bogus"], &["--bogus"]);
    with(&["--hidden", "abc"], &["--hidden", "abc"]);
    with(&["--hidden", "0"], &["hidden"]);
    with(&["--dropout", "1.5"], &["dropout", "1.5"]);
    with(&["--weight-drop", "1.5"], &["weight drop", "1.5"]);
    with(&["--lr=-1"], &["learning rate"]);
    with(&["--max-time=-2"], &["--max-time"]);
    with(&["--cell", "transformer"], &["transformer"]);
    with(&["--batch", "100000"], &["batch"]);
    fails(&["lm", "frobnicate"], &["frobnicate"], &out);
    fails(&["lm", "generate"], &["--model"], &out);
}

#[test]
fn reading_bad_models_and_tokenizers_is_a_one_line_error() {
    let inputs = Inputs::new();
    let out = inputs.out();
    let text = inputs.path("text.txt");
    // A file, a folder with no model, a binary file and a huge line where a model or a tokenizer should be.
    for (model, needle) in [
        (inputs.path("missing"), "missing"),
        (inputs.path("folder"), "config.json"),
        (inputs.path("binary.dat"), "binary.dat"),
        (inputs.path("huge.txt"), "huge.txt"),
    ] {
        fails(
            &["lm", "eval", "--model", &model, "--data", &text],
            &[needle],
            &out,
        );
        fails(&["lm", "generate", "--model", &model], &[needle], &out);
    }
    // A tokenizer.json whose decoder section is broken: the tokenizers crate panics on it (fuzzing found it).
    std::fs::write(
        inputs.dir.path().join("broken_decoder.json"),
        r#"{"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
            "post_processor": null, "decoder": {", "x": 1}, "model": {"type": "WordLevel", "vocab": {}}}"#,
    )
    .unwrap();
    for tokenizer in [
        "broken_decoder.json",
        "binary.dat",
        "huge.txt",
        "empty.txt",
        "folder",
        "missing.json",
    ] {
        fails(
            &[
                "tokenizer",
                "encode",
                "--tokenizer",
                &inputs.path(tokenizer),
                "hello",
            ],
            &[tokenizer],
            &out,
        );
    }
    // A model folder whose config.json is a huge line, or binary.
    let model = inputs.dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for bad in ["huge.txt", "binary.dat"] {
        std::fs::copy(inputs.path(bad), model.join("config.json")).unwrap();
        fails(
            &[
                "lm",
                "eval",
                "--model",
                &model.display().to_string(),
                "--data",
                &text,
            ],
            &["config.json"],
            &out,
        );
    }
}
