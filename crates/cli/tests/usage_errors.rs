//! Every numeric setting of the `train` commands (and of the commands that use a model) is checked where it
//! is parsed: a value out of its range is one line on stderr naming the flag, with exit status 2, and no
//! backtrace even under `RUST_BACKTRACE=1`; the output directory is never created.

use std::process::Command;

/// The flags of the four `train` commands that take a number, each with a value outside its range; `None`
/// for the few whose every value means something (a seed, `--warmup 0`, `--eval-every 0` = once per epoch).
const TRAIN_FLAGS: &[(&str, Option<&str>)] = &[
    ("--valid-fraction", Some("1")),
    ("--min-freq", None),
    ("--max-vocab", Some("4")),
    ("--max-len", Some("0")),
    ("--max-words", Some("0")),
    ("--max-source-tokens", Some("0")),
    ("--max-target-tokens", Some("0")),
    ("--image-size", Some("0")),
    ("--hidden", Some("0")),
    ("--layers", Some("0")),
    ("--dropout", Some("1.5")),
    ("--embed-dropout", Some("1")),
    ("--weight-drop", Some("-0.1")),
    ("--teacher-forcing", Some("1.5")),
    ("--seq-len", Some("0")),
    ("--batch", Some("0")),
    ("--lr", Some("0")),
    ("--weight-decay", Some("-1")),
    ("--clip", Some("NaN")),
    ("--warmup", None),
    ("--epochs", Some("0")),
    ("--steps", Some("0")),
    ("--seed", None),
    ("--max-time", Some("-2")),
    ("--eval-every", None),
    ("--checkpoint-every", None),
    ("--patience", Some("0")),
    ("--threads", Some("0")),
    ("--expansion", Some("0")),
    ("--bound", Some("-1")),
    ("--heads", Some("0")),
];

/// `--embed` is 0 (one-hot input) or more for lm and classify, at least 1 for translate and caption.
const EMBED: &[(&str, Option<&str>)] = &[
    ("lm", None),
    ("classify", None),
    ("translate", Some("0")),
    ("caption", Some("0")),
];

fn seqlab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("SEQLAB_DEBUG")
        .output()
        .unwrap()
}

/// The numeric flags `seqlab COMMAND train --help` lists.
fn numeric_flags(command: &str) -> Vec<String> {
    let help = String::from_utf8(seqlab(&[command, "train", "--help"]).stdout).unwrap();
    help.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let flag = words.next()?;
            let value = words.next()?;
            (flag.starts_with("--") && ["<N>", "<F>", "<P>", "<B>", "<MINUTES>"].contains(&value))
                .then(|| flag.to_string())
        })
        .collect()
}

/// The arguments every run of `command train` needs, with `out` as its output.
fn base<'a>(command: &str, out: &'a str) -> Vec<&'a str> {
    let data: &'static [&'static str] = match command {
        "caption" => &["--captions", "captions.txt", "--images", "images"],
        _ => &["--data", "data.txt"],
    };
    let mut args: Vec<&str> = data.to_vec();
    args.extend(["--out", out]);
    args
}

fn assert_usage_error(args: &[&str], flag: &str, out: &std::path::Path) {
    let output = seqlab(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr:?}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(flag),
        "{args:?}: {stderr}"
    );
    assert!(
        !stderr.contains("backtrace") && !stderr.contains(".rs:"),
        "{stderr}"
    );
    assert!(!out.exists(), "{args:?} created {}", out.display());
}

#[test]
fn every_numeric_train_flag_out_of_range_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    for command in ["lm", "classify", "translate", "caption"] {
        let flags = numeric_flags(command);
        assert!(flags.len() > 15, "{command}: {flags:?}");
        for flag in &flags {
            let bad = if flag == "--embed" {
                EMBED.iter().find(|(c, _)| *c == command).unwrap().1
            } else {
                match TRAIN_FLAGS.iter().find(|(f, _)| f == flag) {
                    Some((_, bad)) => *bad,
                    None => {
                        panic!("{command} train {flag}: no range tested; add it to TRAIN_FLAGS")
                    }
                }
            };
            let Some(bad) = bad else { continue };
            let mut args = vec![command, "train"];
            args.extend(base(command, &out_arg));
            let given = format!("{flag}={bad}");
            args.push(&given);
            assert_usage_error(&args, flag, &out);
        }
    }
}

#[test]
fn numeric_flags_of_the_commands_that_use_a_model_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    for (args, flag) in [
        (
            &["lm", "generate", "--model", "m", "--temperature=-1"][..],
            "--temperature",
        ),
        (
            &["lm", "generate", "--model", "m", "--top-p", "1.5"],
            "--top-p",
        ),
        (
            &["lm", "generate", "--model", "m", "--top-k", "0"],
            "--top-k",
        ),
        (&["lm", "generate", "--model", "m", "--beam", "0"], "--beam"),
        (
            &["lm", "eval", "--model", "m", "--data", "d", "--batch", "0"],
            "--batch",
        ),
        (
            &[
                "lm",
                "eval",
                "--model",
                "m",
                "--data",
                "d",
                "--seq-len",
                "0",
            ],
            "--seq-len",
        ),
        (
            &["classify", "predict", "--model", "m", "--top", "0", "x"],
            "--top",
        ),
        (
            &["translate", "run", "--model", "m", "--beam", "0", "x"],
            "--beam",
        ),
        (
            &["translate", "run", "--model", "m", "--alpha=-1", "x"],
            "--alpha",
        ),
        (
            &["caption", "run", "--model", "m", "--beam", "0", "x.png"],
            "--beam",
        ),
        (&["data", "shapes", "--out", "s", "--count", "0"], "--count"),
    ] {
        assert_usage_error(args, flag, &out);
    }
}

/// A build without the `images` feature says how to get `seqlab images`, in one line.
#[cfg(not(feature = "images"))]
#[test]
fn images_without_the_feature_says_how_to_build_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_seqlab"))
        .args(["images", "train", "--data", "somewhere", "--out", "x"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--features images"), "{stderr}");
    assert!(!std::path::Path::new("x").exists());
}
